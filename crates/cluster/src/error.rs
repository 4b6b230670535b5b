use thiserror::Error;

pub type ClusterResult<T> = Result<T, ClusterError>;

#[derive(Debug, Error)]
pub enum ClusterError {
    /// The cluster could not be reached (connection refused, timeout, TLS).
    #[error("cannot reach the Ray cluster at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The thread that talks to the cluster died (a bug).
    #[error("the Ray client thread failed: {0}")]
    Client(String),
    /// The cluster answered with an error status or a body that is not what its API says.
    #[error("the Ray cluster at {url} answered {what}")]
    Answer { url: String, what: String },
}
