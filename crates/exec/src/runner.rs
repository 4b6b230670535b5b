//! One DAG run: the scheduling loop that launches each task once its upstream tasks are final,
//! settles the others, and records the run; the executor and its options.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use krxflow_core::{Calendar, Observation};
use krxflow_dag::{PlannedTask, ValidatedDag};
use krxflow_lake::Lake;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::attempt::fingerprint;
use crate::attempt::{AttemptEnv, TaskOutcome};
use crate::error::ExecResult;
use crate::records::{self, AttemptRecord, RunRecord};
use crate::state::{RunState, TaskState};
use crate::store::RecordStore;

/// Which tasks of a partition run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reprocess {
    /// Run tasks whose fingerprint has not succeeded yet (the default). Incremental
    /// operators start from their output's watermark.
    #[default]
    Missing,
    /// Like `missing` at task level; at partition level (backfill) only failed partitions.
    Failed,
    /// Run every task, as a full refresh: no watermarks are given to incremental operators.
    All,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ds: NaiveDate,
    pub reprocess: Reprocess,
    /// `manual`, `schedule` or `backfill`.
    pub trigger: String,
    pub run_id: Option<String>,
    /// Fingerprints already known to have succeeded for this ds (a backfill scanned them for
    /// the whole range); `None` reads them from `task_runs`.
    pub known_succeeded: Option<HashSet<String>>,
    /// Tasks a range batch already ran for this run ([`Executor::run_range_batch`]): settled
    /// with what the batch did, not run again.
    pub settled: BTreeMap<String, crate::batch::SettledTask>,
    /// Tasks that run again although their fingerprint already succeeded (`krxflow run
    /// --rerun`); what depends on them runs again too, since its upstream is no longer up to
    /// date.
    pub rerun: BTreeSet<String>,
}

impl RunOptions {
    pub fn new(ds: NaiveDate) -> Self {
        Self {
            ds,
            reprocess: Reprocess::Missing,
            trigger: "manual".into(),
            run_id: None,
            known_succeeded: None,
            settled: BTreeMap::new(),
            rerun: BTreeSet::new(),
        }
    }
}

/// A new run id for `dag` on `ds`: `<dag>-<ds>-<8 random hex digits>`.
pub fn new_run_id(dag: &str, ds: NaiveDate) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{dag}-{ds}-{}", &u[..8])
}

/// Hooks for metrics and progress reporting. Every method has a no-op default.
pub trait RunObserver: Send + Sync {
    fn task_started(&self, _dag: &str, _task: &str) {}
    fn attempt_finished(&self, _record: &AttemptRecord) {}
    fn task_finished(&self, _dag: &str, _report: &TaskReport) {}
    fn output_written(&self, _dag: &str, _table: &str, _rows: usize) {}
    fn run_finished(&self, _report: &RunReport) {}
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskReport {
    pub task: String,
    pub state: TaskState,
    pub attempts: u32,
    pub error: Option<String>,
    pub rows_in: i64,
    pub rows_out: i64,
    pub duration_ms: u64,
    pub outputs: Vec<String>,
    pub counters: BTreeMap<String, i64>,
    /// The last attempt's typed observations, for the observers (e.g. the metrics).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// The task's `outputs:` (port → table), to resolve an [`Observation::Rejected`] port.
    #[serde(skip)]
    pub output_tables: BTreeMap<String, String>,
    /// Its `checks:` results, when it ran them (its outputs were committed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::checks::CheckRecord>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub dag: String,
    pub ds: NaiveDate,
    pub state: RunState,
    pub tasks: Vec<TaskReport>,
    pub started: chrono::DateTime<Utc>,
    pub ended: chrono::DateTime<Utc>,
}

impl RunReport {
    pub fn task(&self, name: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.task == name)
    }
}

/// Runs DAG runs against a lake.
#[derive(Clone)]
pub struct Executor {
    lake: Lake,
    calendar: Arc<dyn Calendar>,
    pub(crate) max_parallel: usize,
    pub(crate) cancel: CancellationToken,
    pub(crate) observer: Option<Arc<dyn RunObserver>>,
    /// Task slots shared by every run of this executor and its clones (global parallelism).
    task_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Engine records: appended to the engine tables, directly or through a buffer.
    pub(crate) records: RecordStore,
}

impl Executor {
    pub fn new(lake: Lake, calendar: Arc<dyn Calendar>) -> Self {
        Self {
            lake: lake.clone(),
            calendar,
            max_parallel: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            cancel: CancellationToken::new(),
            observer: None,
            task_slots: None,
            records: RecordStore::new(lake),
        }
    }
    pub fn with_max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }
    /// The same executor (shared record lock, task slots, cancel token) for a DAG with another
    /// calendar.
    pub fn with_calendar(mut self, calendar: Arc<dyn Calendar>) -> Self {
        self.calendar = calendar;
        self
    }
    /// Buffers engine records (runs, task_runs, lineage, backfills) and commits them one
    /// Delta commit per table once `max_rows` rows are waiting or the oldest is `max_age`
    /// old; [`Executor::flush_records`] commits the rest.
    pub fn with_buffered_records(mut self, max_rows: usize, max_age: std::time::Duration) -> Self {
        self.records = self.records.with_buffered_records(max_rows, max_age);
        self
    }

    /// Commits buffered engine records (no-op without a buffer).
    pub async fn flush_records(&self) -> ExecResult<()> {
        self.records.flush_records().await
    }

    /// Bounds the tasks running at once across every run sharing these slots.
    pub fn with_task_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.task_slots = Some(slots);
        self
    }
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
    pub(crate) fn calendar(&self) -> &dyn Calendar {
        self.calendar.as_ref()
    }
    pub fn lake(&self) -> &Lake {
        &self.lake
    }
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Reads engine-table rows matching `filter` (empty when the table does not exist yet).
    pub async fn read_engine_where(
        &self,
        table: &str,
        filter: datafusion::prelude::Expr,
    ) -> ExecResult<Vec<arrow::array::RecordBatch>> {
        self.records.read_engine_where(table, filter).await
    }

    /// Appends `batch` to the engine table `table` (through the buffer when there is one).
    pub(crate) async fn append_engine(
        &self,
        table: &str,
        batch: arrow::array::RecordBatch,
    ) -> ExecResult<()> {
        self.records.append_engine(table, batch).await
    }

    /// Runs the DAG for `opts.ds`. Returns the report; task failures are in the report, not
    /// an error (errors are for the engine itself: e.g. the lake is unreachable).
    pub async fn run(&self, dag: Arc<ValidatedDag>, opts: RunOptions) -> ExecResult<RunReport> {
        let Some(records) = self.records.for_one_run() else {
            return self.run_inner(dag, opts).await;
        };
        let mut local = self.clone();
        local.records = records;
        let result = local.run_inner(dag, opts).await;
        let records = local.records.take_run_records();
        self.records.buffer_or_write(records).await?;
        result
    }

    async fn run_inner(&self, dag: Arc<ValidatedDag>, opts: RunOptions) -> ExecResult<RunReport> {
        let dag_name = dag.spec.name.clone();
        let ds = opts.ds;
        let run_id = opts
            .run_id
            .clone()
            .unwrap_or_else(|| new_run_id(&dag_name, ds));
        let started = Utc::now();
        self.records
            .record_run(RunRecord {
                run_id: run_id.clone(),
                dag: dag_name.clone(),
                ds,
                state: RunState::Running.to_string(),
                trigger: opts.trigger.clone(),
                started,
                ended: None,
                tasks_total: dag.tasks.len() as i32,
                tasks_failed: 0,
            })
            .await?;

        let done_before = if opts.reprocess == Reprocess::All {
            HashSet::new()
        } else if let Some(known) = &opts.known_succeeded {
            // Found done when the command started: what it has changed since is newer.
            self.records.with_session_changes(|changes| {
                crate::stale::standing(known.clone(), &dag, ds, |task| {
                    changes.overtaking(&dag_name, task, ds, self.calendar.as_ref(), |_| -1)
                })
            })
        } else {
            let (done, overtaken) = self.successes(&dag, ds).await?;
            crate::stale::without(done, &dag, ds, &overtaken)
        };

        let mut states: HashMap<String, TaskState> = HashMap::new();
        let mut reports: HashMap<String, TaskReport> = HashMap::new();
        let mut running: JoinSet<(String, TaskOutcome)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        // With fewer slots than ready tasks, the one most tasks wait on starts first.
        let launch_order = dag.launch_order();

        loop {
            // Launch (or settle) every task whose upstream is final.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for &idx in &launch_order {
                    let task = &dag.tasks[idx];
                    let name = &task.spec.name;
                    if states.contains_key(name) || in_flight.contains(name) {
                        continue;
                    }
                    let ups: Vec<Option<TaskState>> = task
                        .upstream
                        .iter()
                        .map(|u| states.get(u).copied())
                        .collect();
                    if ups.iter().any(Option::is_none) {
                        continue;
                    }
                    let ups: Vec<TaskState> = ups.into_iter().flatten().collect();
                    if let Some(done) = opts.settled.get(name) {
                        // Run by the range batch, which recorded its attempt and lineage.
                        let report = TaskReport {
                            task: name.clone(),
                            state: done.state,
                            attempts: 1,
                            error: done.error.clone(),
                            rows_in: done.rows_in,
                            rows_out: done.rows_out,
                            duration_ms: done.duration_ms,
                            outputs: done.outputs.clone(),
                            counters: done.counters.clone(),
                            observations: done.observations.clone(),
                            output_tables: task.spec.outputs.clone(),
                            checks: Vec::new(),
                        };
                        if let Some(o) = &self.observer {
                            o.task_finished(&dag_name, &report);
                        }
                        states.insert(name.clone(), done.state);
                        reports.insert(name.clone(), report);
                        progressed = true;
                        continue;
                    }
                    let settled =
                        if ups.contains(&TaskState::Cancelled) || self.cancel.is_cancelled() {
                            Some(TaskState::Cancelled)
                        } else if ups.iter().any(|s| !s.lets_downstream_run()) {
                            Some(TaskState::UpstreamFailed)
                        } else if ups.iter().all(|s| *s == TaskState::UpToDate)
                            && !opts.rerun.contains(name)
                            && done_before.contains(&fingerprint(&dag_name, task, ds))
                        {
                            Some(TaskState::UpToDate)
                        } else {
                            None
                        };
                    if let Some(state) = settled {
                        states.insert(name.clone(), state);
                        let report = TaskReport {
                            task: name.clone(),
                            state,
                            attempts: 0,
                            error: match state {
                                TaskState::UpstreamFailed => Some(format!(
                                    "upstream failed: {}",
                                    task.upstream
                                        .iter()
                                        .filter(|u| states
                                            .get(*u)
                                            .is_some_and(|s| !s.lets_downstream_run()))
                                        .cloned()
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )),
                                _ => None,
                            },
                            rows_in: 0,
                            rows_out: 0,
                            duration_ms: 0,
                            outputs: Vec::new(),
                            counters: BTreeMap::new(),
                            observations: Vec::new(),
                            output_tables: task.spec.outputs.clone(),
                            checks: Vec::new(),
                        };
                        if state != TaskState::UpToDate {
                            self.record_settled(&run_id, &dag_name, task, ds, state, &report)
                                .await?;
                        }
                        if let Some(o) = &self.observer {
                            o.task_finished(&dag_name, &report);
                        }
                        reports.insert(name.clone(), report);
                        progressed = true;
                        continue;
                    }
                    if in_flight.len() >= self.max_parallel {
                        continue;
                    }
                    in_flight.insert(name.clone());
                    let env = AttemptEnv {
                        lake: self.lake.clone(),
                        calendar: self.calendar.clone(),
                        cancel: self.cancel.clone(),
                        dag: dag.clone(),
                        idx,
                        ds,
                        run_id: run_id.clone(),
                        full_refresh: opts.reprocess == Reprocess::All,
                    };
                    let task_name = name.clone();
                    if let Some(o) = &self.observer {
                        o.task_started(&dag_name, &task_name);
                    }
                    let slots = self.task_slots.clone();
                    running.spawn(async move {
                        let _slot = match slots {
                            Some(s) => s.acquire_owned().await.ok(),
                            None => None,
                        };
                        let outcome = env.run_task().await;
                        (task_name, outcome)
                    });
                    progressed = true;
                }
            }
            if running.is_empty() {
                break;
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (name, outcome) = match joined {
                Ok(x) => x,
                Err(e) => {
                    // A panicking operator: find which task it was by elimination is not
                    // possible from a JoinError, so fail the run loudly.
                    return Err(crate::error::ExecError::Invalid(format!(
                        "a task panicked: {e}"
                    )));
                }
            };
            in_flight.remove(&name);
            self.flush(&outcome).await?;
            let report = TaskReport {
                task: name.clone(),
                state: outcome.state,
                attempts: outcome.attempts.iter().filter(|a| a.attempt > 0).count() as u32,
                error: outcome.error.clone(),
                rows_in: outcome.attempts.last().map(|a| a.rows_in).unwrap_or(0),
                rows_out: outcome.attempts.last().map(|a| a.rows_out).unwrap_or(0),
                duration_ms: outcome.duration.as_millis() as u64,
                outputs: outcome.outputs.clone(),
                counters: outcome.counters.clone(),
                observations: outcome.observations.clone(),
                output_tables: dag
                    .tasks
                    .iter()
                    .find(|t| t.spec.name == name)
                    .map(|t| t.spec.outputs.clone())
                    .unwrap_or_default(),
                checks: outcome.checks.clone(),
            };
            if let Some(o) = &self.observer {
                for a in &outcome.attempts {
                    o.attempt_finished(a);
                }
                for l in &outcome.lineage {
                    o.output_written(&dag_name, &l.output_table, l.rows_written as usize);
                }
                o.task_finished(&dag_name, &report);
            }
            states.insert(name.clone(), outcome.state);
            reports.insert(name, report);
        }

        let tasks: Vec<TaskReport> = dag
            .tasks
            .iter()
            .filter_map(|t| reports.remove(&t.spec.name))
            .collect();
        let failed = tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed))
            .count();
        let state = if tasks.iter().any(|t| t.state == TaskState::Cancelled) {
            RunState::Cancelled
        } else if failed > 0 {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        let ended = Utc::now();
        self.records
            .record_run(RunRecord {
                run_id: run_id.clone(),
                dag: dag_name.clone(),
                ds,
                state: state.to_string(),
                trigger: opts.trigger.clone(),
                started,
                ended: Some(ended),
                tasks_total: tasks.len() as i32,
                tasks_failed: failed as i32,
            })
            .await?;
        let report = RunReport {
            run_id,
            dag: dag_name,
            ds,
            state,
            tasks,
            started,
            ended,
        };
        if let Some(o) = &self.observer {
            o.run_finished(&report);
        }
        Ok(report)
    }

    async fn record_settled(
        &self,
        run_id: &str,
        dag: &str,
        task: &PlannedTask,
        ds: NaiveDate,
        state: TaskState,
        report: &TaskReport,
    ) -> ExecResult<()> {
        let now = Utc::now();
        let rec = AttemptRecord {
            attempt: 0,
            state: state.to_string(),
            error: report.error.clone(),
            ..AttemptRecord::of_task(run_id, dag, task, ds, now, now)
        };
        self.records
            .append_engine(records::TASK_RUNS, records::task_runs_batch(&[rec])?)
            .await
    }

    async fn flush(&self, outcome: &TaskOutcome) -> ExecResult<()> {
        self.records
            .append_engine(
                records::TASK_RUNS,
                records::task_runs_batch(&outcome.attempts)?,
            )
            .await?;
        self.records.note_changes(&outcome.lineage);
        self.records
            .append_engine(records::LINEAGE, records::lineage_batch(&outcome.lineage)?)
            .await?;
        self.records
            .append_engine(
                crate::checks::CHECKS,
                crate::checks::checks_batch(&outcome.checks)?,
            )
            .await
    }
}
