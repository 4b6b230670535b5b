//! A model card in the artifact store: its content hash when it is registered, and its bytes
//! checked against that hash when a forecast reads it back (`linear.*`, `lstm.*`).

use krxflow_core::{OpError, OpResult, TaskContext};
use sha2::{Digest, Sha256};

/// SHA-256 of `bytes`, lowercase hex: what `model_registry.content_hash` holds.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bytes of `file` in the run's artifact store, refused (permanent) when missing or when
/// they do not hash to `hash`, the registered one (`what` names the model in the message).
pub async fn read_checked(
    ctx: &TaskContext,
    file: &str,
    hash: &str,
    what: &str,
) -> OpResult<Vec<u8>> {
    let store = ctx
        .store
        .clone()
        .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
    let bytes = store.get(file).await?.ok_or_else(|| {
        OpError::permanent(format!(
            "model_registry names `{file}` but the artifact is missing"
        ))
    })?;
    if sha256_hex(&bytes) != hash {
        return Err(OpError::permanent(format!(
            "{file} of {what} does not match its registered hash (corrupt or replaced)"
        )));
    }
    Ok(bytes)
}
