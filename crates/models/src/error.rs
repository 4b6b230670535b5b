use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("training failed: {0}")]
    Training(String),
    #[error("model artifact: {0}")]
    Artifact(String),
    /// A native runtime (ONNX Runtime, LightGBM) could not be found or loaded (operators
    /// report `skipped`).
    #[error("{0}")]
    RuntimeMissing(String),
    /// A model file or folder is missing (operators report `skipped`).
    #[error("model not found: {0}")]
    ModelMissing(String),
    #[error("inference failed: {0}")]
    Inference(String),
    /// AutoETS could not fit or forecast a series.
    #[error("ETS: {0}")]
    Ets(#[source] crate::ets::EtsError),
}

pub type ModelResult<T> = Result<T, ModelError>;
