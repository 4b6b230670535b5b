//! What a missing ONNX model means to the operators that run one (`forecast.chronos`,
//! `sentiment.finbert`): the task is `skipped` with how to export the model, and the ensemble
//! falls back; any other model error fails the task.

use std::path::Path;

use krxflow_core::{OpError, OpResult};
use krxflow_models::ModelError;

/// Ready when `folder` exists; otherwise `skipped`, naming the export script of `model`.
pub(crate) fn model_folder(folder: &str, model: &str, script: &str) -> OpResult<()> {
    if Path::new(folder).is_dir() {
        return Ok(());
    }
    Err(OpError::skipped(format!(
        "model folder `{folder}` not found: export {model} with \
         crates/models/export/{script} (README \"Models\")"
    )))
}

/// Skip on a missing model or runtime; anything else fails the task.
pub(crate) fn model_error(e: ModelError) -> OpError {
    match e {
        ModelError::RuntimeMissing(m) => OpError::skipped(m),
        ModelError::ModelMissing(m) => OpError::skipped(format!(
            "model not found: {m}; export one with crates/models/export (README \"Models\")"
        )),
        other => OpError::permanent(other.to_string()),
    }
}
