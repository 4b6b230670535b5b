//! The engine's run history read back from the lake: every run's state rows and every task
//! attempt and check result (`krxflow runs`, `krxflow graph --date`), and the latest run of
//! some DAGs on a day (the scheduler's `wait_for`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use krxflow_lake::{Lake, LakeError, ReadOptions};

use crate::Executor;
use crate::error::ExecResult;
use crate::records::{
    AttemptRecord, RUNS, RunRecord, TASK_RUNS, attempts_from_batches, days, latest_runs,
    runs_from_batches,
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

/// Every check result (none before the first check ran).
pub async fn all_checks(lake: &Lake) -> ExecResult<Vec<crate::checks::CheckRecord>> {
    match lake
        .read(crate::checks::CHECKS, ReadOptions::default())
        .await
    {
        Ok(read) => Ok(crate::checks::checks_from_batches(&read.batches)),
        Err(LakeError::NoSuchTable(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The latest run (by start) of each of `dags` for `ds`, for those that have one.
pub async fn latest_runs_on(
    exec: &Executor,
    dags: &[String],
    ds: NaiveDate,
) -> ExecResult<BTreeMap<String, RunRecord>> {
    let names = dags.iter().map(|d| lit(d.as_str())).collect();
    let batches = exec
        .read_engine_where(
            RUNS,
            col("ds")
                .eq(lit(ScalarValue::Date32(Some(days(ds)))))
                .and(col("dag").in_list(names, false)),
        )
        .await?;
    let mut out: BTreeMap<String, RunRecord> = BTreeMap::new();
    for r in latest_runs(runs_from_batches(&batches)).into_values() {
        if out.get(&r.dag).is_none_or(|prev| r.started > prev.started) {
            out.insert(r.dag.clone(), r);
        }
    }
    Ok(out)
}
