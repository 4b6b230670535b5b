use thiserror::Error;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("pushgateway {url}: {msg}")]
    Push { url: String, msg: String },
}

pub type MetricsResult<T> = Result<T, MetricsError>;
