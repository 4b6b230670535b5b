//! Where operators keep model artifacts: a narrow byte store under the lake root (the lake
//! implements it on its object store; tests can use a folder).

use async_trait::async_trait;

use crate::OpResult;

/// Paths are relative, `/`-separated, without `..` (e.g. `models/lexical/ab12/model.json`).
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Writes (or replaces) the object at `path`.
    async fn put(&self, path: &str, bytes: Vec<u8>) -> OpResult<()>;
    /// The object at `path`, or `None` when absent.
    async fn get(&self, path: &str) -> OpResult<Option<Vec<u8>>>;
}

/// Whether `path` is a safe relative artifact path.
pub fn valid_artifact_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}
