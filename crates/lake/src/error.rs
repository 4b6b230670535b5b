use thiserror::Error;

pub type LakeResult<T> = Result<T, LakeError>;

#[derive(Debug, Error)]
pub enum LakeError {
    #[error("invalid lake location `{0}`: {1}")]
    BadLocation(String, String),
    #[error("table `{0}` does not exist in the lake")]
    NoSuchTable(String),
    /// A time-travel read (`table@vN`) past the table's latest version, or below 0.
    #[error("table `{table}` has no version {version}: its versions are 0..={latest}")]
    NoSuchVersion {
        table: String,
        version: i64,
        latest: i64,
    },
    #[error("table `{table}`: {message}")]
    InvalidData { table: String, message: String },
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] deltalake::parquet::errors::ParquetError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A remote lake that does not answer its first listing ([`crate::Lake::probe`]).
    #[error("cannot reach the lake at `{location}`: {why}")]
    Unreachable {
        location: String,
        why: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A task a read ran on panicked or was cancelled (a bug, or the process stopping).
    #[error("a read's task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("sql: {0}")]
    Sql(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl LakeError {
    /// Whether retrying the operation could help (I/O and store errors, commit conflicts).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io(_) | Self::ObjectStore(_) => true,
            Self::Delta(
                deltalake::DeltaTableError::ObjectStore { .. }
                | deltalake::DeltaTableError::Io { .. }
                | deltalake::DeltaTableError::VersionAlreadyExists(_)
                | deltalake::DeltaTableError::Transaction { .. },
            ) => true,
            Self::Delta(_) | Self::DataFusion(_) | Self::Arrow(_) | Self::Parquet(_) => {
                caused_by_failed_io(self)
            }
            _ => false,
        }
    }
}

/// Whether a store call that failed on the way (see [`crate::store::retryable`]) or an I/O
/// error other than a definite answer (not found, permission denied, already exists) is among
/// the causes of `e`: a scan, a log replay or a checkpoint read that met one inside Delta or
/// DataFusion can succeed when tried again. The first store error met decides.
///
/// Two layers keep the store error only as text: the Delta kernel's `ObjectStore` variant has
/// no source, and DataFusion's Parquet reader formats it into its message. For those, an
/// object store's `Generic` error (the only kind [`crate::store::retryable`] retries) is
/// recognised by how object_store displays it, behind the prefix each layer adds.
fn caused_by_failed_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = e.source();
    while let Some(err) = cause {
        let text = err.to_string().to_lowercase();
        if text.contains("object store: generic ") || text.contains("object store error: generic ")
        {
            return true;
        }
        if let Some(store) = err.downcast_ref::<object_store::Error>() {
            return crate::store::retryable(store);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{AlreadyExists, NotFound, PermissionDenied};
            return !matches!(io.kind(), NotFound | PermissionDenied | AlreadyExists);
        }
        cause = err.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;
    use datafusion::parquet::errors::ParquetError;

    fn generic() -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        }
    }

    #[test]
    fn a_store_call_that_failed_on_the_way_inside_a_scan_is_transient() {
        // Kept as a source.
        let e = LakeError::DataFusion(DataFusionError::ObjectStore(Box::new(generic())));
        assert!(e.is_transient());
        // Flattened into a message by DataFusion's Parquet reader.
        let e = LakeError::DataFusion(DataFusionError::ParquetError(Box::new(
            ParquetError::General(format!(
                "Failed to fetch metadata for file x.parquet: Object Store error: {}",
                generic()
            )),
        )));
        assert!(e.is_transient());
    }

    #[test]
    fn definite_answers_inside_a_scan_are_not_transient() {
        let not_found = object_store::Error::NotFound {
            path: "x.parquet".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        let e = LakeError::DataFusion(DataFusionError::ObjectStore(Box::new(not_found)));
        assert!(!e.is_transient(), "a vacuumed file does not come back");
        let e = LakeError::DataFusion(DataFusionError::Plan("no such column".into()));
        assert!(!e.is_transient());
    }
}
