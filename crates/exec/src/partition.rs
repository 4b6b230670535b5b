//! Where a backfill's partitions (and the scheduler's runs) run. By default each runs here, in this process
//! ([`Executor::run`](crate::Executor::run)); a [`PartitionRunner`] runs them elsewhere, e.g. as
//! jobs on a cluster engine (`krxflow-cluster`), each job running the same DAG for one day
//! over the same lake. The backfill around it stays here: the plan, the order
//! (`depends_on_past`), how many run at once, the record in `_krxflow/backfills`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_dag::ValidatedDag;
use tokio_util::sync::CancellationToken;

use crate::backfill::PartitionOutcome;
use crate::runner::Reprocess;

/// No task to run again.
static NO_RERUN: BTreeSet<String> = BTreeSet::new();

/// One partition to run: the day, what to reprocess, what started it, and the tasks to run
/// again although they already succeeded (`--rerun`, with what depends on them).
#[derive(Debug, Clone, Copy)]
pub struct PartitionRun<'a> {
    pub ds: NaiveDate,
    pub reprocess: Reprocess,
    /// `backfill` or `schedule`, as recorded in `_krxflow/runs`.
    pub trigger: &'a str,
    pub rerun: &'a BTreeSet<String>,
}

impl<'a> PartitionRun<'a> {
    /// `ds` with nothing forced to run again.
    pub fn new(ds: NaiveDate, reprocess: Reprocess, trigger: &'a str) -> Self {
        Self {
            ds,
            reprocess,
            trigger,
            rerun: &NO_RERUN,
        }
    }
}

#[async_trait]
pub trait PartitionRunner: Send + Sync + std::fmt::Debug {
    /// Runs `dag` for `run.ds` and says how it ended. When `cancel` fires, a partition still
    /// running is stopped and says `Cancelled`.
    async fn run_partition(
        &self,
        dag: &ValidatedDag,
        run: PartitionRun<'_>,
        cancel: &CancellationToken,
    ) -> PartitionOutcome;
}
