//! Error classes an operator can return. The executor decides what to do with each:
//! `Transient` is retried by the task's policy, `Permanent` is not, `Skipped` marks the task
//! skipped with its reason (downstream operators decide how to fall back).

use thiserror::Error;

pub type OpResult<T> = Result<T, OpError>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OpError {
    /// A failure that may go away on retry (I/O, rate limit, a busy store).
    #[error("transient: {0}")]
    Transient(String),
    /// Bad input or configuration: retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The operator chose not to run (e.g. model absent); not a failure.
    #[error("skipped: {0}")]
    Skipped(String),
    /// The run was cancelled (Ctrl-C, shutdown) while the task ran.
    #[error("cancelled")]
    Cancelled,
}

impl OpError {
    pub fn transient(msg: impl std::fmt::Display) -> Self {
        Self::Transient(msg.to_string())
    }
    pub fn permanent(msg: impl std::fmt::Display) -> Self {
        Self::Permanent(msg.to_string())
    }
    pub fn skipped(msg: impl std::fmt::Display) -> Self {
        Self::Skipped(msg.to_string())
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl From<arrow::error::ArrowError> for OpError {
    fn from(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::IoError(..) => Self::Transient(e.to_string()),
            other => Self::Permanent(other.to_string()),
        }
    }
}

/// A `with:` parameter that does not fit an operator's parameter type.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("param `{field}`: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending field inside `with:` (empty for the whole block).
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
