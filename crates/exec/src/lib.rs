//! The krxflow executor.
//!
//! Runs one DAG run (one partition `ds`): tasks run concurrently up to `max_parallel` as soon as
//! their upstream tasks are done; each attempt gets its inputs read from the lake as of `ds`,
//! its outputs committed (one Delta commit per output) only after it succeeded; failures are
//! retried by the task's policy; downstream of a failure becomes `upstream_failed` while
//! unrelated branches finish. Every attempt is recorded in `_krxflow/task_runs`, every output
//! in `_krxflow/lineage`, every run in `_krxflow/runs`.

mod attempt;
pub mod backfill;
mod batch;
pub mod checks;
pub mod error;
mod faults;
pub mod history;
pub mod lineage;
pub mod observe;
pub mod partition;
pub mod records;
pub mod runner;
mod stale;
pub mod state;
mod store;

pub use backfill::{
    BackfillOptions, BackfillProgress, BackfillReport, PartitionOutcome, PartitionStatus,
    PlannedPartition,
};
pub use batch::{BatchReport, ReplayRun, SettledTask};
pub use error::{ExecError, ExecResult};
pub use observe::{Fanout, MetricsObserver};
pub use partition::{PartitionRun, PartitionRunner};
pub use records::{AttemptRecord, LineageRecord, RunRecord, engine_tables};
pub use runner::{Executor, Reprocess, RunObserver, RunOptions, RunReport, TaskReport, new_run_id};
pub use state::{AttemptState, RunState, TaskState};
