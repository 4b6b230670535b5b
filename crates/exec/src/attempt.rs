//! One task of a run: its attempts, retried with backoff by the task's policy; each reads its
//! inputs as of the partition, runs the operator under its timeout and commits its outputs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use krxflow_core::{
    Calendar, InputBatches, Observation, OpError, ReadScope, TaskContext, TaskCounters,
    TaskObservations,
};
use krxflow_dag::{PlannedTask, ValidatedDag};
use krxflow_lake::{Lake, ReadOptions};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::records::{AttemptRecord, InputRead, LineageRecord};
use crate::state::{AttemptState, TaskState};

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

impl AttemptRecord {
    /// A record of `task`'s first attempt for (`dag`, `ds`) in run `run_id`: its identity
    /// (operator, params, rerun fingerprint) and times; no state, rows, delay, error or
    /// counters yet.
    pub(crate) fn of_task(
        run_id: &str,
        dag: &str,
        task: &PlannedTask,
        ds: NaiveDate,
        started: chrono::DateTime<Utc>,
        ended: chrono::DateTime<Utc>,
    ) -> Self {
        Self {
            run_id: run_id.to_string(),
            dag: dag.to_string(),
            task: task.spec.name.clone(),
            ds,
            attempt: 1,
            state: String::new(),
            started,
            ended,
            error: None,
            rows_in: 0,
            rows_out: 0,
            delay_ms: 0,
            op_kind: task.op.kind().to_string(),
            op_version: task.op.version() as i32,
            params_hash: task.params_hash.clone(),
            fingerprint: fingerprint(dag, task, ds),
            counters: None,
        }
    }
}

fn hex_prefix(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// How a task ended: its state, every attempt and what its outputs committed.
pub(crate) struct TaskOutcome {
    pub(crate) state: TaskState,
    pub(crate) attempts: Vec<AttemptRecord>,
    pub(crate) lineage: Vec<LineageRecord>,
    pub(crate) error: Option<String>,
    pub(crate) counters: BTreeMap<String, i64>,
    /// The last attempt's typed observations (like `counters`).
    pub(crate) observations: Vec<Observation>,
    pub(crate) outputs: Vec<String>,
    pub(crate) duration: Duration,
    /// Its checks' results (run once its outputs were committed).
    pub(crate) checks: Vec<crate::checks::CheckRecord>,
}

/// Everything one task needs, owned, for a spawned future.
pub(crate) struct AttemptEnv {
    pub(crate) lake: Lake,
    pub(crate) calendar: Arc<dyn Calendar>,
    /// The executor's cancel token.
    pub(crate) cancel: CancellationToken,
    pub(crate) dag: Arc<ValidatedDag>,
    pub(crate) idx: usize,
    pub(crate) ds: NaiveDate,
    pub(crate) run_id: String,
    /// `--reprocess all`: no watermarks, incremental operators recompute everything.
    pub(crate) full_refresh: bool,
}

enum AttemptError {
    Op(OpError),
    TimedOut(Duration),
}

impl AttemptEnv {
    fn task(&self) -> &PlannedTask {
        &self.dag.tasks[self.idx]
    }

    pub(crate) async fn run_task(&self) -> TaskOutcome {
        let task = self.task();
        let policy = &task.spec.retries;
        let dag_name = &self.dag.spec.name;
        let t0 = Instant::now();
        let mut attempts = Vec::new();
        let mut delay = Duration::ZERO;
        let mut attempt: u32 = 1;
        loop {
            let started = Utc::now();
            let counters = Arc::new(TaskCounters::default());
            let observations = Arc::new(TaskObservations::default());
            let artifacts = Arc::new(Mutex::new(Vec::new()));
            let result = self
                .attempt(
                    attempt,
                    counters.clone(),
                    observations.clone(),
                    artifacts.clone(),
                )
                .await;
            let ended = Utc::now();
            let counter_snapshot = counters.snapshot();
            let observed = observations.snapshot();
            let counters_json = (!counter_snapshot.is_empty())
                .then(|| serde_json::to_string(&counter_snapshot).unwrap_or_default());
            let mut record = AttemptRecord {
                attempt: attempt as i32,
                delay_ms: delay.as_millis() as i64,
                counters: counters_json,
                ..AttemptRecord::of_task(&self.run_id, dag_name, task, self.ds, started, ended)
            };
            let mut checks = Vec::new();
            let (state, retryable) = match &result {
                Ok(ok) => {
                    record.rows_in = ok.rows_in;
                    record.rows_out = ok.rows_out;
                    // The outputs are committed: the checks read them as the day left them.
                    // A failed `error` check fails the attempt for good (the data would fail
                    // it again), unless its query could not read the store.
                    let checked =
                        crate::checks::run(&self.lake, dag_name, task, self.ds, &self.run_id).await;
                    checks = checked.records;
                    match crate::checks::blocking(&checks) {
                        Some(why) if checked.transient => {
                            record.error = Some(why);
                            (AttemptState::FailedTransient, true)
                        }
                        Some(why) => {
                            record.error = Some(why);
                            (AttemptState::Failed, false)
                        }
                        None => (AttemptState::Succeeded, false),
                    }
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
                    observations: observed.clone(),
                    outputs,
                    duration: t0.elapsed(),
                    checks: checks.clone(),
                };
            match (state, result) {
                (AttemptState::Succeeded, Ok(ok)) => {
                    return finish(TaskState::Succeeded, ok.lineage, ok.outputs);
                }
                // Written, then failed by its checks (and not retried): what it wrote is in
                // the lineage.
                (AttemptState::Failed | AttemptState::FailedTransient, Ok(ok))
                    if !(retryable && attempt <= policy.max) =>
                {
                    return finish(TaskState::Failed, ok.lineage, ok.outputs);
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
                        _ = self.cancel.cancelled() => {
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
        observations: Arc<TaskObservations>,
        artifacts: Arc<Mutex<Vec<String>>>,
    ) -> Result<AttemptOk, (AttemptError, i64)> {
        let task = self.task();
        let lake = &self.lake;
        let cancel = &self.cancel;
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
        // An operator missing a model or library is skipped before anything is read.
        task.configured
            .ready()
            .map_err(|e| (AttemptError::Op(e), 0))?;
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
        // Inputs, as of the partition: every port's read started at once (each on the
        // runtime's workers, so their decoding shares the cores), taken in port order.
        let mut inputs = InputBatches::default();
        let mut reads = Vec::new();
        let ports = task.op.inputs();
        let mut pending = Vec::new();
        for (port_name, table) in &task.spec.inputs {
            let Some(port) = ports.iter().find(|p| p.matches(port_name)) else {
                continue;
            };
            let as_of = match port.scope {
                ReadScope::AsOfPartition => Some(self.ds),
                ReadScope::AllRows => None,
            };
            let since =
                task.configured
                    .read_from(port_name, self.ds, &watermarks, self.calendar.as_ref());
            let options = ReadOptions {
                as_of,
                since,
                version: None,
                columns: port.projected.then(|| {
                    port.schema
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                }),
            };
            let (lake, name) = (lake.clone(), table.clone());
            let read = tokio::spawn(async move {
                let reading = Instant::now();
                let read = lake.read(&name, options).await;
                (read, reading.elapsed())
            });
            pending.push((port_name, table, port.optional, read));
        }
        for (port_name, table, optional, read) in pending {
            let (read, took) = match read.await {
                Ok(done) => done,
                Err(e) => {
                    let why = format!("reading `{table}` stopped: {e}");
                    return Err((AttemptError::Op(OpError::permanent(why)), 0));
                }
            };
            tracing::debug!(
                task = %task.spec.name,
                ds = %self.ds,
                table,
                ms = took.as_secs_f64() * 1e3,
                "read"
            );
            match read {
                Ok(read) => {
                    reads.push(InputRead {
                        table: table.clone(),
                        version: read.version,
                        rows: read.num_rows() as i64,
                    });
                    inputs.insert(port_name, table, read.schema, read.batches);
                }
                Err(krxflow_lake::LakeError::NoSuchTable(_)) if optional => {
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
            calendar: self.calendar.clone(),
            cancel: cancel.child_token(),
            counters,
            observations,
            artifacts: artifacts.clone(),
            watermarks,
            store: Some(Arc::new(krxflow_lake::LakeArtifacts::new(
                self.lake.clone(),
            ))),
        };
        let timeout = task.spec.timeout;
        let running = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, crate::faults::run(task.configured.as_ref(), &ctx, inputs)) => match r {
                Ok(r) => r.map_err(AttemptError::Op),
                Err(_) => Err(AttemptError::TimedOut(timeout)),
            },
            _ = cancel.cancelled() => Err(AttemptError::Op(OpError::Cancelled)),
        };
        timed("run", "", running);
        let mut outputs = result.map_err(|e| (e, rows_in))?;

        // Commit each output in one Delta commit; if one fails, the ones before it are rolled
        // back, so a task's outputs land all or nothing (lineage is written only on success).
        let mut lineage = Vec::new();
        let mut written = Vec::new();
        let mut committed = Vec::new();
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
            let outcome = match lake
                .write(&def, batches, port.mode, Some(self.ds), meta)
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    let e = self.roll_back(&committed, table, e).await;
                    return Err((AttemptError::Op(e), rows_in));
                }
            };
            timed("write", table, writing);
            rows_out += outcome.rows as i64;
            if outcome.unchanged > 0 {
                // Rows a merge found already stored exactly (an overlap window re-sent).
                ctx.counters
                    .add(&format!("unchanged_rows.{table}"), outcome.unchanged as i64);
            }
            written.push(format!("{}@v{}", table, outcome.version));
            committed.push(outcome.clone());
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
                changed: crate::records::changed_by(&outcome),
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

impl AttemptEnv {
    /// Undoes the outputs `committed` before the write of `failed` failed with `cause`, newest
    /// first; the error to report names anything that could not be undone.
    async fn roll_back(
        &self,
        committed: &[krxflow_lake::WriteOutcome],
        failed: &str,
        cause: krxflow_lake::LakeError,
    ) -> OpError {
        let mut stuck = Vec::new();
        let why = format!(
            "run {} task {}: writing {failed} failed",
            self.run_id,
            self.task().spec.name
        );
        for outcome in committed.iter().rev() {
            match self.lake.roll_back(outcome, &why).await {
                Ok(done) => tracing::warn!(table = %outcome.table, ?done, "output rolled back"),
                Err(e) => stuck.push(format!("{}: {e}", outcome.table)),
            }
        }
        let e = OpError::from(cause);
        if stuck.is_empty() {
            return e;
        }
        // An output that could not be undone (another writer committed to its table since)
        // stays written; a retry writes every output again (merges and partition rewrites are
        // idempotent), which completes the set, so the cause's retryability is kept.
        let stuck = format!(
            "; and the outputs committed before it could not be rolled back: {}",
            stuck.join("; ")
        );
        match e {
            OpError::Transient(m) => OpError::Transient(m + &stuck),
            other => OpError::Permanent(format!("{other}{stuck}")),
        }
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
