//! Why the daemon could not start or keep running; every variant keeps its cause.

use std::path::PathBuf;

use krxflow_lake::{LakeError, LeaseInfo};
use krxflow_metrics::MetricsError;
use krxflow_schedule::ScheduleError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The DAG folder does not exist or is not a folder.
    #[error("--dags {}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    /// Another scheduler holds this lake's lease and `wait` is off.
    #[error(
        "another scheduler holds this lake ({}: pid {} on {}, lease until {}); \
         stop it, or pass --wait to take over when it stops",
        .0.owner, .0.pid, .0.host, .0.expires
    )]
    LeaseHeld(LeaseInfo),
    /// The HTTP address cannot be bound.
    #[error(transparent)]
    Listen(MetricsError),
    #[error(transparent)]
    Calendar(#[from] ScheduleError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// Caused by the caller's configuration or the lake's other user, not by a fault.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::NotAFolder(_) | Self::LeaseHeld(_) | Self::Listen(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lease_names_its_holder_and_is_a_usage_error() {
        let at = "2024-12-16T07:00:00Z".parse().unwrap();
        let e = DaemonError::LeaseHeld(LeaseInfo {
            owner: "serve-1-2".into(),
            host: "h".into(),
            pid: 1,
            acquired: at,
            expires: at,
            generation: 1,
        });
        assert_eq!(
            e.to_string(),
            "another scheduler holds this lake (serve-1-2: pid 1 on h, lease until \
             2024-12-16 07:00:00 UTC); stop it, or pass --wait to take over when it stops"
        );
        assert!(e.is_usage());
        let io = DaemonError::Io {
            what: "listening address",
            source: std::io::Error::other("gone"),
        };
        assert!(!io.is_usage());
        assert_eq!(
            std::error::Error::source(&io).map(|s| s.to_string()),
            Some("gone".to_string())
        );
    }
}
