//! States of attempts, tasks and runs, as recorded in the engine tables.

use std::fmt;

/// Outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Succeeded,
    /// Failed with a transient error (retried while the policy allows).
    FailedTransient,
    /// Failed with a permanent error (never retried).
    Failed,
    TimedOut,
    Skipped,
    Cancelled,
}

/// Final state of a task in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Succeeded,
    Failed,
    /// Not run because an upstream task failed.
    UpstreamFailed,
    /// The operator reported `skipped: <why>`.
    Skipped,
    /// Not run: the same fingerprint already succeeded and nothing upstream changed.
    UpToDate,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let s = serde_json::to_value(self).ok();
                f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
            }
        }
    )*};
}
display_as_serde!(AttemptState, TaskState, RunState);

impl TaskState {
    /// Whether downstream tasks may run after this one.
    pub fn lets_downstream_run(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped | Self::UpToDate)
    }
}
