//! Where a backfill's partitions (and the scheduler's runs) run. By default each runs here, in this process
//! ([`Executor::run`](crate::Executor::run)); a [`PartitionRunner`] runs them elsewhere, e.g. as
//! jobs on a cluster engine (`krxflow-cluster`), each job running the same DAG for one day
//! over the same lake. The backfill around it stays here: the plan, the order
//! (`depends_on_past`), how many run at once, the record in `_krxflow/backfills`.

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_dag::ValidatedDag;
use tokio_util::sync::CancellationToken;

use crate::backfill::PartitionOutcome;
use crate::runner::Reprocess;

#[async_trait]
pub trait PartitionRunner: Send + Sync + std::fmt::Debug {
    /// Runs `dag` for `ds` (recorded with `trigger`: `backfill`, `schedule`) and says how it
    /// ended. When `cancel` fires, a partition still running is stopped and says `Cancelled`.
    async fn run_partition(
        &self,
        dag: &ValidatedDag,
        ds: NaiveDate,
        reprocess: Reprocess,
        trigger: &str,
        cancel: &CancellationToken,
    ) -> PartitionOutcome;
}
