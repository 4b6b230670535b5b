//! One DAG run: scheduling, attempts with retries, commits and records.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use datafusion::prelude::{SessionContext, col, lit};
use krxflow_core::{Calendar, InputBatches, OpError, ReadScope, TaskContext, TaskCounters};
use krxflow_dag::{PlannedTask, ValidatedDag};
use krxflow_lake::{Lake, ReadOptions};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::ExecResult;
use crate::records::{
    self, AttemptRecord, InputRead, LineageRecord, RunRecord, attempts_from_batches, days,
    engine_tables,
};
use crate::state::{AttemptState, RunState, TaskState};

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
}

impl RunOptions {
    pub fn new(ds: NaiveDate) -> Self {
        Self {
            ds,
            reprocess: Reprocess::Missing,
            trigger: "manual".into(),
            run_id: None,
            known_succeeded: None,
        }
    }
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
    max_parallel: usize,
    pub(crate) cancel: CancellationToken,
    observer: Option<Arc<dyn RunObserver>>,
    /// When set, engine records are buffered and committed in batches.
    record_buffer: Option<Arc<RecordBuffer>>,
    /// With a buffer: the records of the one run this clone executes, handed to the buffer
    /// only when the run is over, so a batch never holds half a run (a crash then loses whole
    /// runs, which re-run, never leaves tasks recorded without their run's end).
    run_local: Option<Arc<std::sync::Mutex<Vec<EngineRecord>>>>,
    /// Task slots shared by every run of this executor and its clones (global parallelism).
    task_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Serialises writes to the engine tables within this process.
    records_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Rows for one engine table.
type EngineRecord = (String, arrow::array::RecordBatch);

/// Engine records waiting for a batched commit.
struct RecordBuffer {
    max_rows: usize,
    max_age: std::time::Duration,
    pending: tokio::sync::Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    tables: BTreeMap<String, Vec<arrow::array::RecordBatch>>,
    rows: usize,
    since: Option<std::time::Instant>,
}

/// Rerun fingerprint: (dag, task, ds, operator version, params hash).
pub fn fingerprint(dag: &str, task: &PlannedTask, ds: NaiveDate) -> String {
    let s = format!(
        "{dag}\u{1f}{}\u{1f}{ds}\u{1f}{}\u{1f}{}",
        task.spec.name,
        task.op.version(),
        task.params_hash
    );
    hex_prefix(&Sha256::digest(s.as_bytes()))
}

fn hex_prefix(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

struct TaskOutcome {
    state: TaskState,
    attempts: Vec<AttemptRecord>,
    lineage: Vec<LineageRecord>,
    error: Option<String>,
    counters: BTreeMap<String, i64>,
    outputs: Vec<String>,
    duration: Duration,
}

impl Executor {
    pub fn new(lake: Lake, calendar: Arc<dyn Calendar>) -> Self {
        Self {
            lake,
            calendar,
            max_parallel: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            cancel: CancellationToken::new(),
            observer: None,
            task_slots: None,
            record_buffer: None,
            run_local: None,
            records_lock: Arc::new(tokio::sync::Mutex::new(())),
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
        self.record_buffer = Some(Arc::new(RecordBuffer {
            max_rows,
            max_age,
            pending: tokio::sync::Mutex::new(Pending::default()),
        }));
        self
    }

    /// Commits buffered engine records (no-op without a buffer).
    pub async fn flush_records(&self) -> ExecResult<()> {
        let Some(buf) = &self.record_buffer else {
            return Ok(());
        };
        let mut p = buf.pending.lock().await;
        self.commit_pending(&mut p).await
    }

    async fn commit_pending(&self, p: &mut Pending) -> ExecResult<()> {
        let mut tables: Vec<_> = std::mem::take(&mut p.tables).into_iter().collect();
        p.rows = 0;
        p.since = None;
        // `task_runs` last: partitions count as done by their succeeded task fingerprints, so
        // a crash between these commits must leave them looking not done (they re-run,
        // idempotently) rather than done without their run records.
        tables.sort_by_key(|(t, _)| t == records::TASK_RUNS);
        for (table, batches) in tables {
            self.write_engine(&table, batches).await?;
        }
        Ok(())
    }

    async fn write_engine(
        &self,
        table: &str,
        batches: Vec<arrow::array::RecordBatch>,
    ) -> ExecResult<()> {
        let Some(def) = engine_tables().into_iter().find(|d| d.name == table) else {
            return Ok(());
        };
        let _guard = self.records_lock.lock().await;
        self.lake
            .write(
                &def,
                batches,
                krxflow_core::WriteMode::Append,
                None,
                BTreeMap::new(),
            )
            .await?;
        Ok(())
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
    pub fn lake(&self) -> &Lake {
        &self.lake
    }
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Fingerprints that already succeeded for this DAG and partition.
    async fn succeeded_fingerprints(
        &self,
        dag: &str,
        ds: NaiveDate,
    ) -> ExecResult<HashSet<String>> {
        let batches = self
            .read_engine_where(
                records::TASK_RUNS,
                col("dag")
                    .eq(lit(dag))
                    .and(col("ds").eq(lit(datafusion::scalar::ScalarValue::Date32(Some(days(ds))))))
                    .and(col("state").eq(lit("succeeded"))),
            )
            .await?;
        Ok(attempts_from_batches(&batches)
            .into_iter()
            .map(|a| a.fingerprint)
            .collect())
    }

    /// Reads engine-table rows matching `filter` (empty when the table does not exist yet).
    pub async fn read_engine_where(
        &self,
        table: &str,
        filter: datafusion::prelude::Expr,
    ) -> ExecResult<Vec<arrow::array::RecordBatch>> {
        let Some(t) = self.lake.load(table, None).await? else {
            return Ok(Vec::new());
        };
        let ctx = SessionContext::new();
        t.update_datafusion_session(&ctx.state())
            .map_err(krxflow_lake::LakeError::from)?;
        let provider = t
            .table_provider()
            .await
            .map_err(krxflow_lake::LakeError::from)?;
        let df = ctx
            .read_table(provider)
            .map_err(krxflow_lake::LakeError::from)?
            .filter(filter)
            .map_err(krxflow_lake::LakeError::from)?;
        let batches = df.collect().await.map_err(krxflow_lake::LakeError::from)?;
        let def = engine_tables()
            .into_iter()
            .find(|d| d.name == table)
            .map(|d| d.schema);
        match def {
            Some(schema) => Ok(batches
                .iter()
                .map(|b| krxflow_lake::schema::conform(b, &schema))
                .collect::<Result<Vec<_>, _>>()?),
            None => Ok(batches),
        }
    }

    pub(crate) async fn append_engine(
        &self,
        table: &str,
        batch: arrow::array::RecordBatch,
    ) -> ExecResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(local) = &self.run_local {
            local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((table.to_string(), batch));
            return Ok(());
        }
        self.buffer_or_write(vec![(table.to_string(), batch)]).await
    }

    /// Adds whole records to the buffer (committing when it is full or old), or writes them
    /// now without a buffer.
    async fn buffer_or_write(
        &self,
        records: Vec<(String, arrow::array::RecordBatch)>,
    ) -> ExecResult<()> {
        let Some(buf) = &self.record_buffer else {
            for (table, batch) in records {
                self.write_engine(&table, vec![batch]).await?;
            }
            return Ok(());
        };
        let mut p = buf.pending.lock().await;
        for (table, batch) in records {
            p.rows += batch.num_rows();
            p.tables.entry(table).or_default().push(batch);
        }
        let since = *p.since.get_or_insert_with(std::time::Instant::now);
        if p.rows >= buf.max_rows || since.elapsed() >= buf.max_age {
            self.commit_pending(&mut p).await?;
        }
        Ok(())
    }

    async fn record_run(&self, rec: RunRecord) -> ExecResult<()> {
        let batch = records::runs_batch(&[rec])?;
        self.append_engine(records::RUNS, batch).await
    }

    /// Runs the DAG for `opts.ds`. Returns the report; task failures are in the report, not
    /// an error (errors are for the engine itself: e.g. the lake is unreachable).
    pub async fn run(&self, dag: Arc<ValidatedDag>, opts: RunOptions) -> ExecResult<RunReport> {
        if self.record_buffer.is_none() || self.run_local.is_some() {
            return self.run_inner(dag, opts).await;
        }
        let mut local = self.clone();
        local.run_local = Some(Default::default());
        let result = local.run_inner(dag, opts).await;
        let records = local
            .run_local
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        self.buffer_or_write(records).await?;
        result
    }

    async fn run_inner(&self, dag: Arc<ValidatedDag>, opts: RunOptions) -> ExecResult<RunReport> {
        let dag_name = dag.spec.name.clone();
        let ds = opts.ds;
        let run_id = opts.run_id.clone().unwrap_or_else(|| {
            let u = uuid::Uuid::new_v4().simple().to_string();
            format!("{dag_name}-{ds}-{}", &u[..8])
        });
        let started = Utc::now();
        self.record_run(RunRecord {
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
            known.clone()
        } else {
            self.succeeded_fingerprints(&dag_name, ds).await?
        };

        let mut states: HashMap<String, TaskState> = HashMap::new();
        let mut reports: HashMap<String, TaskReport> = HashMap::new();
        let mut running: JoinSet<(String, TaskOutcome)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();

        loop {
            // Launch (or settle) every task whose upstream is final.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for (idx, task) in dag.tasks.iter().enumerate() {
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
                    let settled =
                        if ups.contains(&TaskState::Cancelled) || self.cancel.is_cancelled() {
                            Some(TaskState::Cancelled)
                        } else if ups.iter().any(|s| !s.lets_downstream_run()) {
                            Some(TaskState::UpstreamFailed)
                        } else if ups.iter().all(|s| *s == TaskState::UpToDate)
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
                        exec: self.clone(),
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
        self.record_run(RunRecord {
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
            run_id: run_id.to_string(),
            dag: dag.to_string(),
            task: task.spec.name.clone(),
            ds,
            attempt: 0,
            state: state.to_string(),
            started: now,
            ended: now,
            error: report.error.clone(),
            rows_in: 0,
            rows_out: 0,
            delay_ms: 0,
            op_kind: task.op.kind().to_string(),
            op_version: task.op.version() as i32,
            params_hash: task.params_hash.clone(),
            fingerprint: fingerprint(dag, task, ds),
            counters: None,
        };
        self.append_engine(records::TASK_RUNS, records::task_runs_batch(&[rec])?)
            .await
    }

    async fn flush(&self, outcome: &TaskOutcome) -> ExecResult<()> {
        self.append_engine(
            records::TASK_RUNS,
            records::task_runs_batch(&outcome.attempts)?,
        )
        .await?;
        self.append_engine(records::LINEAGE, records::lineage_batch(&outcome.lineage)?)
            .await
    }
}

/// Everything one task needs, owned, for a spawned future.
struct AttemptEnv {
    exec: Executor,
    dag: Arc<ValidatedDag>,
    idx: usize,
    ds: NaiveDate,
    run_id: String,
    /// `--reprocess all`: no watermarks, incremental operators recompute everything.
    full_refresh: bool,
}

enum AttemptError {
    Op(OpError),
    TimedOut(Duration),
}

impl AttemptEnv {
    fn task(&self) -> &PlannedTask {
        &self.dag.tasks[self.idx]
    }

    async fn run_task(&self) -> TaskOutcome {
        let task = self.task();
        let policy = &task.spec.retries;
        let dag_name = &self.dag.spec.name;
        let fp = fingerprint(dag_name, task, self.ds);
        let t0 = Instant::now();
        let mut attempts = Vec::new();
        let mut delay = Duration::ZERO;
        let mut attempt: u32 = 1;
        loop {
            let started = Utc::now();
            let counters = Arc::new(TaskCounters::default());
            let artifacts = Arc::new(Mutex::new(Vec::new()));
            let result = self
                .attempt(attempt, counters.clone(), artifacts.clone())
                .await;
            let ended = Utc::now();
            let counter_snapshot = counters.snapshot();
            let counters_json = (!counter_snapshot.is_empty())
                .then(|| serde_json::to_string(&counter_snapshot).unwrap_or_default());
            let mut record = AttemptRecord {
                run_id: self.run_id.clone(),
                dag: dag_name.clone(),
                task: task.spec.name.clone(),
                ds: self.ds,
                attempt: attempt as i32,
                state: String::new(),
                started,
                ended,
                error: None,
                rows_in: 0,
                rows_out: 0,
                delay_ms: delay.as_millis() as i64,
                op_kind: task.op.kind().to_string(),
                op_version: task.op.version() as i32,
                params_hash: task.params_hash.clone(),
                fingerprint: fp.clone(),
                counters: counters_json,
            };
            let (state, retryable) = match &result {
                Ok(ok) => {
                    record.rows_in = ok.rows_in;
                    record.rows_out = ok.rows_out;
                    (AttemptState::Succeeded, false)
                }
                Err((e, rows_in)) => {
                    record.rows_in = *rows_in;
                    match e {
                        AttemptError::TimedOut(d) => {
                            record.error = Some(format!("timed out after {}", humanize(*d)));
                            (AttemptState::TimedOut, true)
                        }
                        AttemptError::Op(OpError::Transient(m)) => {
                            record.error = Some(m.clone());
                            (AttemptState::FailedTransient, true)
                        }
                        AttemptError::Op(OpError::Permanent(m)) => {
                            record.error = Some(m.clone());
                            (AttemptState::Failed, false)
                        }
                        AttemptError::Op(OpError::Skipped(m)) => {
                            record.error = Some(format!("skipped: {m}"));
                            (AttemptState::Skipped, false)
                        }
                        AttemptError::Op(OpError::Cancelled) => {
                            record.error = Some("cancelled".into());
                            (AttemptState::Cancelled, false)
                        }
                    }
                }
            };
            record.state = state.to_string();
            let error = record.error.clone();
            attempts.push(record);

            let finish =
                |state: TaskState, lineage: Vec<LineageRecord>, outputs: Vec<String>| TaskOutcome {
                    state,
                    attempts: attempts.clone(),
                    lineage,
                    error: error.clone(),
                    counters: counter_snapshot.clone(),
                    outputs,
                    duration: t0.elapsed(),
                };
            match (state, result) {
                (AttemptState::Succeeded, Ok(ok)) => {
                    return finish(TaskState::Succeeded, ok.lineage, ok.outputs);
                }
                (AttemptState::Skipped, _) => return finish(TaskState::Skipped, vec![], vec![]),
                (AttemptState::Cancelled, _) => {
                    return finish(TaskState::Cancelled, vec![], vec![]);
                }
                _ if retryable && attempt <= policy.max => {
                    let unit: f64 = rand::random();
                    delay = policy.delay(attempt, unit);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.exec.cancel.cancelled() => {
                            return finish(TaskState::Cancelled, vec![], vec![]);
                        }
                    }
                    attempt += 1;
                }
                _ => return finish(TaskState::Failed, vec![], vec![]),
            }
        }
    }

    async fn attempt(
        &self,
        attempt: u32,
        counters: Arc<TaskCounters>,
        artifacts: Arc<Mutex<Vec<String>>>,
    ) -> Result<AttemptOk, (AttemptError, i64)> {
        let task = self.task();
        let lake = &self.exec.lake;
        let cancel = &self.exec.cancel;
        // Phase timings at debug level (`--log krxflow_exec=debug`): where a task's time goes.
        let phase = Instant::now();
        let timed = |what: &str, table: &str, since: Instant| {
            tracing::debug!(
                task = %task.spec.name,
                ds = %self.ds,
                table,
                ms = since.elapsed().as_secs_f64() * 1e3,
                "{what}"
            );
        };
        // Output watermarks first: an incremental operator bounds its input reads by them.
        let mut watermarks = BTreeMap::new();
        for port in task
            .op
            .outputs()
            .iter()
            .filter(|p| p.watermark && !self.full_refresh)
        {
            let (Some(table), Some(date_col)) = (
                task.spec.outputs.get(port.name),
                port.date_column.as_deref(),
            ) else {
                continue;
            };
            match lake.max_date(table, date_col, self.ds).await {
                Ok(Some(d)) => {
                    watermarks.insert(port.name.to_string(), d);
                }
                Ok(None) => {}
                Err(e) => return Err((AttemptError::Op(OpError::from(e)), 0)),
            }
        }
        timed("watermarks", "", phase);
        // Inputs, as of the partition.
        let mut inputs = InputBatches::default();
        let mut reads = Vec::new();
        let ports = task.op.inputs();
        for (port_name, table) in &task.spec.inputs {
            let Some(port) = ports.iter().find(|p| p.name == port_name) else {
                continue;
            };
            let as_of = match port.scope {
                ReadScope::AsOfPartition => Some(self.ds),
                ReadScope::AllRows => None,
            };
            let since = task.configured.read_from(
                port_name,
                self.ds,
                &watermarks,
                self.exec.calendar.as_ref(),
            );
            let reading = Instant::now();
            let read = lake
                .read(
                    table,
                    ReadOptions {
                        as_of,
                        since,
                        version: None,
                    },
                )
                .await;
            timed("read", table, reading);
            match read {
                Ok(read) => {
                    reads.push(InputRead {
                        table: table.clone(),
                        version: read.version,
                        rows: read.num_rows() as i64,
                    });
                    inputs.insert(port_name, table, read.schema, read.batches);
                }
                Err(krxflow_lake::LakeError::NoSuchTable(_)) if port.optional => {
                    reads.push(InputRead {
                        table: table.clone(),
                        version: -1,
                        rows: 0,
                    });
                }
                Err(e) => return Err((AttemptError::Op(OpError::from(e)), 0)),
            }
        }
        let rows_in = inputs.num_rows() as i64;
        let ctx = TaskContext {
            dag: self.dag.spec.name.clone(),
            task: task.spec.name.clone(),
            ds: self.ds,
            run_id: self.run_id.clone(),
            attempt,
            calendar: self.exec.calendar.clone(),
            cancel: cancel.child_token(),
            counters,
            artifacts: artifacts.clone(),
            watermarks,
            store: Some(Arc::new(krxflow_lake::LakeArtifacts::new(
                self.exec.lake.clone(),
            ))),
        };
        let timeout = task.spec.timeout;
        let running = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, task.configured.run(&ctx, inputs)) => match r {
                Ok(r) => r.map_err(AttemptError::Op),
                Err(_) => Err(AttemptError::TimedOut(timeout)),
            },
            _ = cancel.cancelled() => Err(AttemptError::Op(OpError::Cancelled)),
        };
        timed("run", "", running);
        let mut outputs = result.map_err(|e| (e, rows_in))?;

        // Commit each output in one Delta commit.
        let mut lineage = Vec::new();
        let mut written = Vec::new();
        let mut rows_out = 0i64;
        let artifact_ids = artifacts.lock().map(|a| a.clone()).unwrap_or_default();
        // Validate every output before committing any: Delta commits are per table, so a
        // refused second output must not leave the first one committed.
        for port in task.op.outputs() {
            let Some(table) = task.spec.outputs.get(port.name) else {
                continue;
            };
            let def = lake.catalog().def_for_output(table, &port);
            let batches = outputs.batches(port.name).unwrap_or_default();
            lake.validate_write(&def, batches, port.mode, Some(self.ds))
                .map_err(|e| (AttemptError::Op(OpError::from(e)), rows_in))?;
        }
        for port in task.op.outputs() {
            let Some(table) = task.spec.outputs.get(port.name) else {
                continue;
            };
            let batches = outputs.take(port.name).unwrap_or_default();
            let def = lake.catalog().def_for_output(table, &port);
            let meta = BTreeMap::from([
                ("krxflow.run_id".to_string(), self.run_id.clone()),
                ("krxflow.dag".to_string(), self.dag.spec.name.clone()),
                ("krxflow.task".to_string(), task.spec.name.clone()),
                ("krxflow.ds".to_string(), self.ds.to_string()),
            ]);
            let writing = Instant::now();
            let outcome = lake
                .write(&def, batches, port.mode, Some(self.ds), meta)
                .await
                .map_err(|e| (AttemptError::Op(OpError::from(e)), rows_in))?;
            timed("write", table, writing);
            rows_out += outcome.rows as i64;
            if outcome.unchanged > 0 {
                // Rows a merge found already stored exactly (an overlap window re-sent).
                ctx.counters
                    .add(&format!("unchanged_rows.{table}"), outcome.unchanged as i64);
            }
            written.push(format!("{}@v{}", table, outcome.version));
            lineage.push(LineageRecord {
                run_id: self.run_id.clone(),
                dag: self.dag.spec.name.clone(),
                task: task.spec.name.clone(),
                ds: self.ds,
                output_table: table.clone(),
                output_version: outcome.version,
                rows_written: outcome.rows as i64,
                write_mode: port.mode.to_string(),
                inputs: reads.clone(),
                op_kind: task.op.kind().to_string(),
                op_version: task.op.version() as i32,
                params_hash: task.params_hash.clone(),
                artifacts: artifact_ids.clone(),
                krxflow_version: krxflow_core::KRXFLOW_VERSION.to_string(),
                created: Utc::now(),
            });
        }
        Ok(AttemptOk {
            rows_in,
            rows_out,
            lineage,
            outputs: written,
        })
    }
}

struct AttemptOk {
    rows_in: i64,
    rows_out: i64,
    lineage: Vec<LineageRecord>,
    outputs: Vec<String>,
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
