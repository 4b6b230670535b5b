use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("training failed: {0}")]
    Training(String),
    #[error("model artifact: {0}")]
    Artifact(String),
}

pub type ModelResult<T> = Result<T, ModelError>;
