use thiserror::Error;

pub type LakeResult<T> = Result<T, LakeError>;

#[derive(Debug, Error)]
pub enum LakeError {
    #[error("invalid lake location `{0}`: {1}")]
    BadLocation(String, String),
    #[error("table `{0}` does not exist in the lake")]
    NoSuchTable(String),
    #[error("table `{table}`: {message}")]
    InvalidData { table: String, message: String },
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("sql: {0}")]
    Sql(String),
}

impl LakeError {
    /// Whether retrying the operation could help (I/O and store errors, commit conflicts).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::ObjectStore(_) => true,
            Self::Delta(e) => matches!(
                e,
                deltalake::DeltaTableError::ObjectStore { .. }
                    | deltalake::DeltaTableError::Io { .. }
                    | deltalake::DeltaTableError::VersionAlreadyExists(_)
                    | deltalake::DeltaTableError::Transaction { .. }
            ),
            _ => false,
        }
    }
}

impl LakeError {
    /// Whether a commit lost a race with a concurrent writer: planning the write again against
    /// the table's new version resolves it.
    pub fn is_commit_conflict(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError as T;
        match self {
            Self::Delta(deltalake::DeltaTableError::VersionAlreadyExists(_)) => true,
            Self::Delta(deltalake::DeltaTableError::Transaction { source }) => matches!(
                source,
                T::CommitConflict(_) | T::MaxCommitAttempts(_) | T::VersionAlreadyExists(_)
            ),
            _ => false,
        }
    }
}

impl From<LakeError> for krxflow_core::OpError {
    fn from(e: LakeError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}
