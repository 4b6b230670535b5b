//! The engine's run history read back from the lake: every run's state rows and every task
//! attempt (`krxflow runs`, `krxflow graph --date`).

use krxflow_lake::{Lake, LakeError, ReadOptions};

use crate::error::ExecResult;
use crate::records::{
    AttemptRecord, RUNS, RunRecord, TASK_RUNS, attempts_from_batches, runs_from_batches,
};

/// Every run state row (none before the first run).
pub async fn all_runs(lake: &Lake) -> ExecResult<Vec<RunRecord>> {
    match lake.read(RUNS, ReadOptions::default()).await {
        Ok(read) => Ok(runs_from_batches(&read.batches)),
        Err(LakeError::NoSuchTable(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Every task attempt (none before the first run).
pub async fn all_attempts(lake: &Lake) -> ExecResult<Vec<AttemptRecord>> {
    match lake.read(TASK_RUNS, ReadOptions::default()).await {
        Ok(read) => Ok(attempts_from_batches(&read.batches)),
        Err(LakeError::NoSuchTable(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
