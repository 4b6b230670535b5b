//! Backfills: one DAG run per trading day of a range, planned from the engine tables so that a
//! backfill is resumable (run the same command again after a crash: partitions already done
//! are skipped, none is duplicated) and recorded in `_krxflow/backfills`.
//!
//! A partition is
//! * `done` when every task's rerun fingerprint already succeeded for it,
//! * `failed` when its latest run failed (and it is not done),
//! * `missing` otherwise (never run, interrupted, or the DAG changed).
//!
//! A backfill with `--rerun TASK...` runs those tasks again (and what depends on them) on every
//! partition although they already succeeded, so fingerprints cannot tell what it has done.
//! It has an id of its own (`dag:from:to:rerun=a,b`) and its rows in `_krxflow/backfills` mark
//! when it started: a partition is `done` for it when every rerun task succeeded there since
//! then. The same command after a crash or a failure resumes it; once it has succeeded, the
//! same command is a new rerun of the whole range.
//!
//! `--reprocess missing` runs the partitions that are not done, `failed` only the failed ones,
//! `all` every partition (as a full refresh). The earliest partition to run runs alone, then the
//! others up to `parallel` at a time (the earliest's cold start must not depend on timing),
//! except when a task says `depends_on_past: true`: then strictly one after another in date
//! order, and a failed partition stops the later ones (they would read a hole).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use krxflow_core::Calendar;
use krxflow_dag::ValidatedDag;

use crate::attempt::fingerprint;
use crate::error::ExecResult;
use crate::partition::PartitionRun;
use crate::records::{self, attempts_from_batches, days, runs_from_batches};
use crate::runner::{Executor, Reprocess, RunOptions};
use crate::state::{RunState, TaskState};

// The backfills table is declared with the other engine tables (`records`); its old paths stay.
pub use crate::records::{BACKFILLS, backfills_schema, backfills_table};

/// What the engine tables say about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionStatus {
    Done,
    Failed,
    Missing,
    /// Ran, but a success no longer stands: what it read changed since (`crate::stale`).
    Stale,
}

/// A partition's planned action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedPartition {
    pub ds: NaiveDate,
    pub status: PartitionStatus,
    pub run: bool,
}

/// Final state of one partition of a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionOutcome {
    Succeeded,
    Failed,
    /// Already done (or not selected by `--reprocess failed`).
    Skipped,
    /// Not run because an earlier partition failed and the DAG depends on its past.
    Blocked,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub reprocess: Reprocess,
    pub parallel: usize,
    /// Where the partitions run: `None` here, in this process.
    pub runner: Option<Arc<dyn crate::partition::PartitionRunner>>,
    /// Tasks run again on every partition although they already succeeded, with what depends
    /// on them (`krxflow backfill --rerun`); empty for a plain backfill.
    pub rerun: BTreeSet<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillReport {
    pub backfill_id: String,
    pub dag: String,
    pub partitions: Vec<(NaiveDate, PartitionOutcome)>,
}

impl BackfillReport {
    pub fn count(&self, o: PartitionOutcome) -> usize {
        self.partitions.iter().filter(|(_, x)| *x == o).count()
    }
}

/// Progress callbacks (the CLI draws a progress bar).
pub trait BackfillProgress: Send + Sync {
    fn planned(&self, _total: usize, _to_run: usize) {}
    fn partition_done(&self, _ds: NaiveDate, _outcome: PartitionOutcome) {}
}

impl BackfillProgress for () {}

/// Engine-record batching during backfills.
const RECORD_FLUSH_ROWS: usize = 512;
const RECORD_FLUSH_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The id of a backfill: the same command resumes the same backfill. A rerun's id names its
/// tasks: it is a different backfill from the plain one over the same range.
pub fn backfill_id(dag: &str, from: NaiveDate, to: NaiveDate, rerun: &BTreeSet<String>) -> String {
    if rerun.is_empty() {
        format!("{dag}:{from}:{to}")
    } else {
        let tasks: Vec<&str> = rerun.iter().map(String::as_str).collect();
        format!("{dag}:{from}:{to}:rerun={}", tasks.join(","))
    }
}

/// What a rerun backfill has done: the tasks it reruns (with their downstream) and when the
/// backfill started (`None`: it starts now, nothing is done yet).
#[derive(Debug, Clone)]
pub(crate) struct RerunScope {
    tasks: BTreeSet<String>,
    since: Option<DateTime<Utc>>,
}

/// The start of a backfill still to finish: its first `running` row after its last
/// `succeeded` one, from its rows in `_krxflow/backfills` (`(state, updated)`, any order).
fn unfinished_since(mut rows: Vec<(String, DateTime<Utc>)>) -> Option<DateTime<Utc>> {
    rows.sort_by_key(|(_, at)| *at);
    let mut since = None;
    for (state, at) in rows {
        match state.as_str() {
            "succeeded" => since = None,
            "running" if since.is_none() => since = Some(at),
            _ => {}
        }
    }
    since
}

impl Executor {
    /// Status of each of `days` for `dag`, from one scan of the run tables.
    pub async fn partition_status(
        &self,
        dag: &ValidatedDag,
        days_: &[NaiveDate],
    ) -> ExecResult<BTreeMap<NaiveDate, PartitionStatus>> {
        Ok(self
            .partition_scan(dag, days_, None, self.calendar())
            .await?
            .0)
    }

    /// Partition states and, per partition, the fingerprints that already succeeded: two
    /// scans of the engine tables for the whole range (not two per partition). With a rerun
    /// scope, a partition's state is what the rerun has done there since it started.
    pub(crate) async fn partition_scan(
        &self,
        dag: &ValidatedDag,
        days_: &[NaiveDate],
        rerun: Option<&RerunScope>,
        calendar: &dyn Calendar,
    ) -> ExecResult<(
        BTreeMap<NaiveDate, PartitionStatus>,
        HashMap<NaiveDate, HashSet<String>>,
    )> {
        let (Some(first), Some(last)) = (days_.first(), days_.last()) else {
            return Ok(Default::default());
        };
        let name = dag.spec.name.as_str();
        let in_range = |c: &str| {
            col(c)
                .gt_eq(lit(ScalarValue::Date32(Some(days(*first)))))
                .and(col(c).lt_eq(lit(ScalarValue::Date32(Some(days(*last))))))
        };
        let attempts = self
            .read_engine_where(
                records::TASK_RUNS,
                col("dag")
                    .eq(lit(name))
                    .and(col("state").eq(lit("succeeded")))
                    .and(in_range("ds")),
            )
            .await?;
        // What counts: everything for a plain backfill; for a rerun, what happened since it
        // started (nothing, before it has).
        let counts = |at: DateTime<Utc>| rerun.is_none_or(|r| r.since.is_some_and(|s| at >= s));
        let mut done_fps: HashMap<NaiveDate, HashSet<String>> = HashMap::new();
        let mut rerun_done: HashMap<NaiveDate, HashSet<String>> = HashMap::new();
        for a in attempts_from_batches(&attempts) {
            if rerun.is_some() && counts(a.started) {
                rerun_done.entry(a.ds).or_default().insert(a.task);
            }
            done_fps.entry(a.ds).or_default().insert(a.fingerprint);
        }
        // A success another task's later change overtook is not done (crate::stale).
        let mut stale = HashSet::new();
        if !done_fps.is_empty() {
            let ledger = self.records.ledger(dag, *first, *last).await?;
            for (ds, fps) in done_fps.iter_mut() {
                let found = fps.len();
                *fps = crate::stale::standing(std::mem::take(fps), dag, *ds, |task| {
                    ledger.stale(name, task, *ds, calendar)
                });
                if fps.len() < found {
                    stale.insert(*ds);
                }
            }
        }
        let runs = self
            .read_engine_where(records::RUNS, col("dag").eq(lit(name)).and(in_range("ds")))
            .await?;
        // Latest run record per ds (by start, then end; a final row follows its `running` row).
        type Stamp = (DateTime<Utc>, Option<DateTime<Utc>>, String);
        let mut latest: HashMap<NaiveDate, Stamp> = HashMap::new();
        for r in runs_from_batches(&runs) {
            if !counts(r.started) {
                continue;
            }
            let key = (r.started, r.ended);
            match latest.get(&r.ds) {
                Some((s, e, _)) if (*s, *e) >= key => {}
                _ => {
                    latest.insert(r.ds, (r.started, r.ended, r.state));
                }
            }
        }
        let mut out = BTreeMap::new();
        for ds in days_ {
            let all_done = match rerun {
                Some(r) => rerun_done
                    .get(ds)
                    .is_some_and(|done| r.tasks.iter().all(|t| done.contains(t))),
                None => done_fps.get(ds).is_some_and(|f| {
                    dag.tasks
                        .iter()
                        .all(|t| f.contains(&fingerprint(name, t, *ds)))
                }),
            };
            let status = if all_done {
                PartitionStatus::Done
            } else if latest.get(ds).is_some_and(|(_, _, s)| s == "failed") {
                PartitionStatus::Failed
            } else if stale.contains(ds) {
                PartitionStatus::Stale
            } else {
                PartitionStatus::Missing
            };
            out.insert(*ds, status);
        }
        Ok((out, done_fps))
    }

    /// The tasks of `dag` whose success for `ds` no longer stands, each with why (what
    /// `krxflow graph --date` shows as `stale`), by this executor's calendar.
    pub async fn stale_tasks(
        &self,
        dag: &ValidatedDag,
        ds: NaiveDate,
    ) -> ExecResult<BTreeMap<String, String>> {
        Ok(self.successes(dag, ds).await?.1)
    }

    /// The fingerprints that succeeded for `dag` on `ds`, and the tasks among them whose
    /// success no longer stands, with why: one read of the task runs, and one of the lineage
    /// when any succeeded.
    pub(crate) async fn successes(
        &self,
        dag: &ValidatedDag,
        ds: NaiveDate,
    ) -> ExecResult<(HashSet<String>, BTreeMap<String, String>)> {
        let name = dag.spec.name.as_str();
        let done = self.records.succeeded_fingerprints(name, ds).await?;
        if done.is_empty() {
            return Ok((done, BTreeMap::new()));
        }
        let ledger = self.records.ledger(dag, ds, ds).await?;
        let overtaken = crate::stale::overtaken(&done, dag, ds, |task| {
            ledger.stale(name, task, ds, self.calendar())
        });
        Ok((done, overtaken))
    }

    /// Which partitions a backfill would run (`rerun`: the tasks of `--rerun`, if any).
    pub async fn plan_backfill(
        &self,
        dag: &ValidatedDag,
        days_: &[NaiveDate],
        reprocess: Reprocess,
        rerun: &BTreeSet<String>,
    ) -> ExecResult<Vec<PlannedPartition>> {
        let scope = self.rerun_scope(dag, days_, rerun).await?;
        let (status, _) = self
            .partition_scan(dag, days_, scope.as_ref(), self.calendar())
            .await?;
        Ok(Self::plan_of(status, reprocess))
    }

    /// The id of the backfill of `dag` over `days_` (first to last).
    fn backfill_id_of(dag: &ValidatedDag, days_: &[NaiveDate], rerun: &BTreeSet<String>) -> String {
        let (from, to) = match (days_.first(), days_.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => (NaiveDate::default(), NaiveDate::default()),
        };
        backfill_id(&dag.spec.name, from, to, rerun)
    }

    /// For a rerun backfill, the tasks it reruns with their downstream and when it started
    /// (from its own rows in `_krxflow/backfills`); `None` for a plain backfill.
    async fn rerun_scope(
        &self,
        dag: &ValidatedDag,
        days_: &[NaiveDate],
        rerun: &BTreeSet<String>,
    ) -> ExecResult<Option<RerunScope>> {
        if rerun.is_empty() {
            return Ok(None);
        }
        let tasks = dag.with_downstream(rerun);
        let id = Self::backfill_id_of(dag, days_, rerun);
        let batches = self
            .read_engine_where(BACKFILLS, col("backfill_id").eq(lit(id.as_str())))
            .await?;
        let mut rows = Vec::new();
        for b in &batches {
            let c = records::Cols(b);
            for i in 0..b.num_rows() {
                if let (Some(state), Some(at)) = (c.str("state", i), c.ts("updated", i)) {
                    rows.push((state.to_string(), at));
                }
            }
        }
        Ok(Some(RerunScope {
            tasks,
            since: unfinished_since(rows),
        }))
    }

    fn plan_of(
        status: BTreeMap<NaiveDate, PartitionStatus>,
        reprocess: Reprocess,
    ) -> Vec<PlannedPartition> {
        status
            .into_iter()
            .map(|(ds, status)| PlannedPartition {
                ds,
                status,
                run: match reprocess {
                    Reprocess::All => true,
                    Reprocess::Missing => status != PartitionStatus::Done,
                    Reprocess::Failed => status == PartitionStatus::Failed,
                },
            })
            .collect()
    }

    async fn record_backfill(
        &self,
        id: &str,
        dag: &str,
        days_: &[NaiveDate],
        opts: &BackfillOptions,
        state: &str,
        outcomes: &[(NaiveDate, PartitionOutcome)],
    ) -> ExecResult<()> {
        let (Some(from), Some(to)) = (days_.first(), days_.last()) else {
            return Ok(());
        };
        let n = |o: PartitionOutcome| outcomes.iter().filter(|(_, x)| *x == o).count() as i32;
        let reprocess = serde_json::to_value(opts.reprocess)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let batch = RecordBatch::try_new(
            backfills_schema(),
            vec![
                Arc::new(StringArray::from(vec![id])),
                Arc::new(StringArray::from(vec![dag])),
                Arc::new(Date32Array::from(vec![days(*from)])),
                Arc::new(Date32Array::from(vec![days(*to)])),
                Arc::new(StringArray::from(vec![reprocess])),
                Arc::new(Int32Array::from(vec![opts.parallel as i32])),
                Arc::new(StringArray::from(vec![state])),
                Arc::new(Int32Array::from(vec![days_.len() as i32])),
                Arc::new(Int32Array::from(vec![n(PartitionOutcome::Succeeded)])),
                Arc::new(Int32Array::from(vec![n(PartitionOutcome::Failed)])),
                Arc::new(Int32Array::from(vec![n(PartitionOutcome::Skipped)])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros()])
                        .with_timezone("UTC"),
                ),
            ],
        )?;
        self.append_engine(BACKFILLS, batch).await
    }

    /// Runs a backfill over `days_` (trading days, ascending).
    pub async fn backfill(
        &self,
        dag: Arc<ValidatedDag>,
        days_: &[NaiveDate],
        opts: BackfillOptions,
        progress: &dyn BackfillProgress,
    ) -> ExecResult<BackfillReport> {
        let id = Self::backfill_id_of(&dag, days_, &opts.rerun);
        let scope = self.rerun_scope(&dag, days_, &opts.rerun).await?;
        let (status, done_fps) = self
            .partition_scan(&dag, days_, scope.as_ref(), self.calendar())
            .await?;
        let done_fps = Arc::new(done_fps);
        let plan = Self::plan_of(status, opts.reprocess);
        // Engine records are committed in batches (every RECORD_FLUSH_ROWS rows or
        // RECORD_FLUSH_AGE): one Delta commit per table instead of four per partition. A crash
        // loses at most the unflushed tail; those partitions run again on resume (outputs are
        // idempotent), so nothing is duplicated or missing.
        let buffered = self
            .clone()
            .with_buffered_records(RECORD_FLUSH_ROWS, RECORD_FLUSH_AGE);
        let result = buffered
            .backfill_planned(dag, days_, opts, progress, id, plan, done_fps)
            .await;
        let flushed = buffered.flush_records().await;
        let report = result?;
        flushed?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn backfill_planned(
        &self,
        dag: Arc<ValidatedDag>,
        days_: &[NaiveDate],
        opts: BackfillOptions,
        progress: &dyn BackfillProgress,
        id: String,
        plan: Vec<PlannedPartition>,
        done_fps: Arc<HashMap<NaiveDate, HashSet<String>>>,
    ) -> ExecResult<BackfillReport> {
        let name = dag.spec.name.clone();
        let to_run: Vec<NaiveDate> = plan.iter().filter(|p| p.run).map(|p| p.ds).collect();
        progress.planned(plan.len(), to_run.len());
        let mut outcomes: BTreeMap<NaiveDate, PartitionOutcome> = plan
            .iter()
            .filter(|p| !p.run)
            .map(|p| (p.ds, PartitionOutcome::Skipped))
            .collect();
        for (ds, o) in &outcomes {
            progress.partition_done(*ds, *o);
        }
        self.record_backfill(&id, &name, days_, &opts, "running", &[])
            .await?;

        let sequential = dag.tasks.iter().any(|t| t.spec.depends_on_past);
        let parallel = if sequential { 1 } else { opts.parallel.max(1) };
        let run_reprocess = match opts.reprocess {
            Reprocess::All => Reprocess::All,
            _ => Reprocess::Missing,
        };
        let rerun = Arc::new(opts.rerun.clone());
        let run_one = |ds: NaiveDate| {
            let dag = dag.clone();
            let exec = self.clone();
            let known = done_fps.get(&ds).cloned().unwrap_or_default();
            let runner = opts.runner.clone();
            let rerun = rerun.clone();
            async move {
                // Cancelled before it started: it does not start.
                if exec.cancel.is_cancelled() {
                    return (ds, PartitionOutcome::Cancelled);
                }
                if let Some(runner) = runner {
                    let mut run = PartitionRun::new(ds, run_reprocess, "backfill");
                    run.rerun = &rerun;
                    let outcome = runner.run_partition(&dag, run, &exec.cancel).await;
                    return (ds, outcome);
                }
                let mut o = RunOptions::new(ds);
                o.reprocess = run_reprocess;
                o.known_succeeded = Some(known);
                o.trigger = "backfill".into();
                o.rerun = (*rerun).clone();
                let name = dag.spec.name.clone();
                let outcome = match exec.run(dag, o).await {
                    Ok(r) => match r.state {
                        RunState::Succeeded => PartitionOutcome::Succeeded,
                        RunState::Cancelled => PartitionOutcome::Cancelled,
                        _ => {
                            // Said as the cluster runner says it: why, not only that.
                            for t in r.tasks.iter().filter(|t| t.state == TaskState::Failed) {
                                let why = t.error.as_deref().unwrap_or("no error recorded");
                                let s = if t.attempts == 1 { "" } else { "s" };
                                tracing::error!(
                                    "{name} {ds}: task {} failed after {} attempt{s}: {why}",
                                    t.task,
                                    t.attempts
                                );
                            }
                            PartitionOutcome::Failed
                        }
                    },
                    Err(e) => {
                        tracing::error!("{name} {ds}: the run failed in the engine: {e}");
                        PartitionOutcome::Failed
                    }
                };
                (ds, outcome)
            }
        };
        // The earliest partition runs alone, then the rest `parallel` at a time. It creates
        // the tables and writes a cold start's history (an incremental ingest's lookback
        // window); had a later day committed first, the earliest would have found that day's
        // watermark and written only its overlap, so the lake's rows would depend on which
        // partition happened to finish first.
        let first = futures::stream::iter(to_run.first().copied())
            .map(&run_one)
            .buffered(1);
        let rest = futures::stream::iter(to_run.iter().skip(1).copied())
            .map(&run_one)
            .buffered(parallel);
        let mut stream = first.chain(rest);
        let mut blocked = false;
        while let Some((ds, outcome)) = stream.next().await {
            outcomes.insert(ds, outcome);
            progress.partition_done(ds, outcome);
            if sequential && outcome != PartitionOutcome::Succeeded {
                blocked = true;
                break;
            }
            // On cancel the stream is drained, not dropped: running partitions see the token
            // and end as cancelled (a cluster's jobs are stopped and awaited), the rest return
            // at once without starting.
        }
        drop(stream);
        for ds in &to_run {
            if !outcomes.contains_key(ds) {
                let o = if blocked {
                    PartitionOutcome::Blocked
                } else {
                    PartitionOutcome::Cancelled
                };
                outcomes.insert(*ds, o);
                progress.partition_done(*ds, o);
            }
        }
        let partitions: Vec<(NaiveDate, PartitionOutcome)> = outcomes.into_iter().collect();
        let failed = partitions
            .iter()
            .any(|(_, o)| !matches!(o, PartitionOutcome::Succeeded | PartitionOutcome::Skipped));
        let state = if failed { "failed" } else { "succeeded" };
        self.record_backfill(&id, &name, days_, &opts, state, &partitions)
            .await?;
        Ok(BackfillReport {
            backfill_id: id,
            dag: name,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2024, 12, 16)
            .and_then(|d| d.and_hms_opt(10, minute, 0))
            .map(|t| t.and_utc())
            .unwrap()
    }

    #[test]
    fn a_backfill_is_unfinished_from_its_first_start_after_its_last_success() {
        let rows = |r: &[(&str, u32)]| r.iter().map(|(s, m)| (s.to_string(), at(*m))).collect();
        assert_eq!(unfinished_since(rows(&[])), None, "never started");
        assert_eq!(
            unfinished_since(rows(&[("running", 1)])),
            Some(at(1)),
            "crashed"
        );
        // Failed, then resumed and crashed: still the first start.
        assert_eq!(
            unfinished_since(rows(&[("running", 3), ("failed", 2), ("running", 1)])),
            Some(at(1))
        );
        assert_eq!(
            unfinished_since(rows(&[("running", 1), ("succeeded", 2)])),
            None,
            "finished"
        );
        assert_eq!(
            unfinished_since(rows(&[("running", 1), ("succeeded", 2), ("running", 3)])),
            Some(at(3)),
            "a new one started after the last finished"
        );
    }

    #[test]
    fn a_reruns_id_names_its_tasks() {
        let d = |day| chrono::NaiveDate::from_ymd_opt(2024, 12, day).unwrap();
        assert_eq!(
            backfill_id("x", d(9), d(13), &BTreeSet::new()),
            "x:2024-12-09:2024-12-13"
        );
        let tasks = BTreeSet::from(["b".to_string(), "a".to_string()]);
        assert_eq!(
            backfill_id("x", d(9), d(13), &tasks),
            "x:2024-12-09:2024-12-13:rerun=a,b"
        );
    }
}
