//! The evaluation's errors; each keeps its cause.

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The lake's table lacks a column the evaluation reads, or it has another type.
    #[error("table `{table}`: column `{column}`: {reason}")]
    Column {
        table: &'static str,
        column: &'static str,
        reason: String,
    },
    #[error("nothing to evaluate: {0}")]
    Empty(String),
    #[error("chart `{chart}`: {reason}")]
    Chart { chart: String, reason: String },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("writing metrics.json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type EvalResult<T> = Result<T, EvalError>;
