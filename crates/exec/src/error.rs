use thiserror::Error;

pub type ExecResult<T> = Result<T, ExecError>;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Lake(#[from] krxflow_lake::LakeError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Invalid(String),
}
