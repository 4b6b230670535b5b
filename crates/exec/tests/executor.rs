//! Executor behaviour: retries with backoff, permanent errors, upstream failures, timeouts,
//! cancellation, rerun fingerprints, lineage and atomic outputs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OperatorRegistry, OutputBatches, OutputPort, ParamSpec, TaskContext, WeekdayCalendar,
    WriteMode, parse_params,
};
use krxflow_dag::{LoadContext, ProcessEnv, TableLookup, ValidatedDag};
use krxflow_exec::records::{TASK_RUNS, attempts_from_batches};
use krxflow_exec::{Executor, Reprocess, RunOptions, RunState, TaskState};
use krxflow_lake::{Catalog, Lake, ReadOptions};
use serde::Deserialize;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("value", DataType::Int64, false),
    ]))
}

fn day(ds: chrono::NaiveDate) -> i32 {
    (ds - chrono::NaiveDate::default()).num_days() as i32
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SourceParams {
    value: i64,
    /// Transient failures before the first success.
    fail_times: u32,
    permanent: bool,
    sleep_ms: u64,
    skip: Option<String>,
    /// Fail permanently for this partition only.
    fail_on: Option<chrono::NaiveDate>,
    /// Report this many `bad_row` rejects on port `rows` (every attempt, before failing).
    rejects: u64,
    /// Also re-send the rows of the previous `window_days` calendar days, an earlier day's at
    /// `value + 1` (each day's row is revised once by the next day, then re-sent unchanged), as
    /// an ingest with an overlap window does.
    window_days: i64,
}

struct Source;
struct ConfiguredSource {
    p: SourceParams,
    calls: AtomicU32,
}

#[async_trait]
impl Operator for Source {
    fn kind(&self) -> &'static str {
        "test.source"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "test source"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::new("rows", schema(), WriteMode::Merge, "rows")
                .keys(&["code", "date"])
                .date_column("date"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredSource {
            p: parse_params(params)?,
            calls: AtomicU32::new(0),
        }))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredSource {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        ctx.rejected("rows", "bad_row", self.p.rejects);
        if let Some(why) = &self.p.skip {
            return Err(OpError::skipped(why));
        }
        if self.p.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.p.sleep_ms)).await;
        }
        if self.p.permanent || self.p.fail_on == Some(ctx.ds) {
            return Err(OpError::permanent("bad config"));
        }
        if n < self.p.fail_times {
            return Err(OpError::transient(format!("flaky #{}", n + 1)));
        }
        let (mut codes, mut dates, mut values) = (vec![], vec![], vec![]);
        for back in (0..=self.p.window_days).rev() {
            let value = self.p.value + i64::from(back > 0);
            for (code, v) in [("A", value), ("B", value + 1)] {
                codes.push(code);
                dates.push(day(ctx.ds) - back as i32);
                values.push(v);
            }
        }
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(codes)),
                Arc::new(Date32Array::from(dates)),
                Arc::new(Int64Array::from(values)),
            ],
        )?;
        Ok(OutputBatches::new().with("rows", vec![batch]))
    }
}

struct Double;
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct DoubleParams {
    /// Not ready: skipped with this reason before reading.
    unready: Option<String>,
}
struct ConfiguredDouble(DoubleParams);

#[async_trait]
impl Operator for Double {
    fn kind(&self) -> &'static str {
        "test.double"
    }
    fn version(&self) -> u32 {
        3
    }
    fn description(&self) -> &'static str {
        "doubles value"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![InputPort::new("rows", schema(), "rows")]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::new("out", schema(), WriteMode::Merge, "doubled")
                .keys(&["code", "date"])
                .date_column("date"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredDouble(parse_params(params)?)))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredDouble {
    fn ready(&self) -> OpResult<()> {
        match &self.0.unready {
            Some(why) => Err(OpError::skipped(why)),
            None => Ok(()),
        }
    }
    async fn run(&self, _ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let b = inputs.concat("rows")?;
        let v = b
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| OpError::permanent("value not Int64"))?;
        let doubled: Int64Array = v.iter().map(|x| x.map(|x| x * 2)).collect();
        let out = RecordBatch::try_new(
            schema(),
            vec![b.column(0).clone(), b.column(1).clone(), Arc::new(doubled)],
        )?;
        Ok(OutputBatches::new().with("out", vec![out]))
    }
}

/// Writes the same two rows to two outputs, `first` then `second`.
struct Pair;
struct ConfiguredPair(SourceParams);

#[async_trait]
impl Operator for Pair {
    fn kind(&self) -> &'static str {
        "test.pair"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "two outputs"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        ["first", "second"]
            .map(|p| {
                OutputPort::new(p, schema(), WriteMode::Merge, "rows")
                    .keys(&["code", "date"])
                    .date_column("date")
            })
            .into()
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredPair(parse_params(params)?)))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredPair {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec!["A", "B"])),
                Arc::new(Date32Array::from(vec![day(ctx.ds), day(ctx.ds)])),
                Arc::new(Int64Array::from(vec![self.0.value, self.0.value + 1])),
            ],
        )?;
        Ok(OutputBatches::new()
            .with("first", vec![batch.clone()])
            .with("second", vec![batch]))
    }
}

struct NoTables;
impl TableLookup for NoTables {
    fn table_schema(&self, _name: &str) -> Option<SchemaRef> {
        None
    }
}

fn registry() -> OperatorRegistry {
    let mut r = OperatorRegistry::new();
    r.register(Arc::new(Source))
        .register(Arc::new(Double))
        .register(Arc::new(Pair));
    r
}

fn load(yaml: &str) -> Arc<ValidatedDag> {
    let registry = registry();
    let ctx = LoadContext {
        registry: &registry,
        tables: &NoTables,
        env: &ProcessEnv,
    };
    match krxflow_dag::load_dag_str(yaml, Path::new("test.yaml"), &ctx) {
        Ok(d) => Arc::new(d),
        Err(diags) => panic!("invalid test DAG: {diags:?}"),
    }
}

fn setup() -> (tempfile::TempDir, Executor) {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::new();
    for d in krxflow_exec::engine_tables() {
        catalog.declare(d);
    }
    let lake = Lake::open(dir.path().to_str().unwrap(), catalog).unwrap();
    let exec = Executor::new(lake, Arc::new(WeekdayCalendar::default())).with_max_parallel(4);
    (dir, exec)
}

/// The five weekdays a backfill test runs over: 2024-12-09 to 13.
fn backfill_week() -> Vec<chrono::NaiveDate> {
    use krxflow_core::Calendar;
    WeekdayCalendar::default().trading_days(
        chrono::NaiveDate::from_ymd_opt(2024, 12, 9).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2024, 12, 13).unwrap(),
    )
}

fn ds() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2024, 12, 16).unwrap()
}

async fn attempts(exec: &Executor) -> Vec<krxflow_exec::AttemptRecord> {
    let read = exec
        .lake()
        .read(TASK_RUNS, ReadOptions::default())
        .await
        .unwrap();
    let mut a = attempts_from_batches(&read.batches);
    a.sort_by_key(|r| (r.task.clone(), r.attempt));
    a
}

#[tokio::test]
async fn transient_failures_are_retried_with_capped_backoff_until_success() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: flaky
tasks:
  src:
    op: test.source
    with: { value: 1, fail_times: 2 }
    outputs: { rows: t_rows }
    retries: { max: 3, backoff: exponential, base: 20ms, max_delay: 30ms, jitter: full }
"#,
    );
    let report = exec.run(dag.clone(), RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let t = report.task("src").unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.attempts, 3);
    let recs = attempts(&exec).await;
    let states: Vec<&str> = recs.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(
        states,
        ["failed_transient", "failed_transient", "succeeded"]
    );
    let policy = &dag.tasks[0].spec.retries;
    assert_eq!(recs[0].delay_ms, 0);
    for r in &recs[1..] {
        let cap = policy.max_delay_for(r.attempt as u32 - 1).as_millis() as i64;
        assert!(
            r.delay_ms <= cap,
            "attempt {} slept {}ms > cap {cap}ms",
            r.attempt,
            r.delay_ms
        );
    }
    assert!(
        recs[2].delay_ms <= 30,
        "max_delay caps the exponential growth"
    );
    assert_eq!(recs[0].error.as_deref(), Some("flaky #1"));
    assert_eq!(recs[1].error.as_deref(), Some("flaky #2"));
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: perm
tasks:
  src:
    op: test.source
    with: { permanent: true }
    outputs: { rows: t_rows }
    retries: { max: 5, base: 10ms }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Failed);
    let t = report.task("src").unwrap();
    assert_eq!((t.state, t.attempts), (TaskState::Failed, 1));
    assert_eq!(attempts(&exec).await.len(), 1);
}

#[tokio::test]
async fn a_failed_task_blocks_its_downstream_but_not_a_parallel_branch() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: branches
tasks:
  bad:
    op: test.source
    with: { permanent: true }
    outputs: { rows: bad_rows }
  after_bad:
    op: test.double
    inputs: { rows: bad_rows }
    outputs: { out: bad_doubled }
  good:
    op: test.source
    with: { value: 5 }
    outputs: { rows: good_rows }
  after_good:
    op: test.double
    inputs: { rows: good_rows }
    outputs: { out: good_doubled }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Failed);
    let state = |n: &str| report.task(n).unwrap().state;
    assert_eq!(state("bad"), TaskState::Failed);
    assert_eq!(state("after_bad"), TaskState::UpstreamFailed);
    assert_eq!(state("good"), TaskState::Succeeded);
    assert_eq!(state("after_good"), TaskState::Succeeded);
    let doubled = exec
        .lake()
        .read("good_doubled", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(doubled.num_rows(), 2);
    assert!(exec.lake().version("bad_doubled").await.unwrap().is_none());
    let recs = attempts(&exec).await;
    assert!(
        recs.iter()
            .any(|r| r.task == "after_bad" && r.state == "upstream_failed")
    );
}

#[tokio::test]
async fn a_slow_attempt_is_recorded_as_timed_out() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: slow
tasks:
  src:
    op: test.source
    with: { sleep_ms: 5000 }
    outputs: { rows: t_rows }
    timeout: 100ms
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.task("src").unwrap().state, TaskState::Failed);
    let recs = attempts(&exec).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].state, "timed_out");
    assert!(recs[0].error.as_deref().unwrap_or("").contains("timed out"));
}

#[tokio::test]
async fn cancelling_a_run_records_the_attempt_as_cancelled() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: cancel
tasks:
  src:
    op: test.source
    with: { sleep_ms: 10000 }
    outputs: { rows: t_rows }
  next:
    op: test.double
    inputs: { rows: t_rows }
    outputs: { out: t_out }
"#,
    );
    let token = exec.cancel_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    });
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    assert_eq!(report.task("src").unwrap().state, TaskState::Cancelled);
    assert_eq!(report.task("next").unwrap().state, TaskState::Cancelled);
    let recs = attempts(&exec).await;
    assert!(
        recs.iter()
            .any(|r| r.task == "src" && r.attempt == 1 && r.state == "cancelled")
    );
}

#[tokio::test]
async fn skipped_operators_report_their_reason_and_downstream_still_runs() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: skip
tasks:
  src:
    op: test.source
    with: { skip: "model file models/x.onnx not found" }
    outputs: { rows: t_rows }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let t = report.task("src").unwrap();
    assert_eq!(t.state, TaskState::Skipped);
    assert_eq!(
        t.error.as_deref(),
        Some("skipped: model file models/x.onnx not found")
    );
}

#[tokio::test]
async fn an_operator_that_is_not_ready_is_skipped_before_reading_its_inputs() {
    let (_dir, exec) = setup();
    let dag = |with: &str| {
        load(&format!(
            r#"
dag: unready
tasks:
  src:
    op: test.source
    outputs: {{ rows: t_rows }}
  double:
    op: test.double
    with: {{ {with} }}
    inputs: {{ rows: t_rows }}
    outputs: {{ out: doubled }}
"#
        ))
    };
    let report = exec
        .run(
            dag(r#"unready: "model folder models/x not found""#),
            RunOptions::new(ds()),
        )
        .await
        .unwrap();
    let t = report.task("double").unwrap();
    assert_eq!(t.state, TaskState::Skipped);
    assert_eq!(
        t.error.as_deref(),
        Some("skipped: model folder models/x not found")
    );
    // Ready, the same task reads the two rows.
    let mut again = RunOptions::new(ds());
    again.reprocess = Reprocess::All;
    let report = exec.run(dag(""), again).await.unwrap();
    assert_eq!(report.task("double").unwrap().state, TaskState::Succeeded);
    let mut rows_in: Vec<(String, i64)> = attempts(&exec)
        .await
        .into_iter()
        .filter(|r| r.task == "double")
        .map(|r| (r.state, r.rows_in))
        .collect();
    rows_in.sort();
    assert_eq!(
        rows_in,
        vec![("skipped".to_string(), 0), ("succeeded".to_string(), 2)]
    );
}

#[tokio::test]
async fn with_one_slot_the_task_others_wait_on_starts_before_a_leaf_declared_first() {
    let (_dir, exec) = setup();
    let exec = exec.with_max_parallel(1);
    let dag = load(
        r#"
dag: order
tasks:
  leaf:
    op: test.source
    outputs: { rows: leaf_rows }
  head:
    op: test.source
    outputs: { rows: head_rows }
  after_head:
    op: test.double
    inputs: { rows: head_rows }
    outputs: { out: head_doubled }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let mut started: Vec<(chrono::DateTime<chrono::Utc>, String)> = attempts(&exec)
        .await
        .into_iter()
        .map(|r| (r.started, r.task))
        .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(order, vec!["head", "leaf", "after_head"]);
}

/// A source and the task doubling what it wrote.
const TWICE: &str = r#"
dag: twice
tasks:
  src:
    op: test.source
    with: { value: 7 }
    outputs: { rows: t_rows }
  dbl:
    op: test.double
    inputs: { rows: t_rows }
    outputs: { out: t_out }
"#;

#[tokio::test]
async fn rerunning_a_partition_skips_succeeded_fingerprints_and_never_duplicates() {
    let (_dir, exec) = setup();
    let yaml = TWICE;
    let first = exec.run(load(yaml), RunOptions::new(ds())).await.unwrap();
    assert_eq!(first.task("dbl").unwrap().state, TaskState::Succeeded);
    let second = exec.run(load(yaml), RunOptions::new(ds())).await.unwrap();
    assert_eq!(second.task("src").unwrap().state, TaskState::UpToDate);
    assert_eq!(second.task("dbl").unwrap().state, TaskState::UpToDate);
    let mut all = RunOptions::new(ds());
    all.reprocess = Reprocess::All;
    let third = exec.run(load(yaml), all).await.unwrap();
    assert_eq!(third.task("dbl").unwrap().state, TaskState::Succeeded);
    let out = exec
        .lake()
        .read("t_out", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(out.num_rows(), 2, "re-running rewrites, never duplicates");
    // Changing a param changes the fingerprint: src re-runs, and so does its downstream.
    let changed = yaml.replace("value: 7", "value: 8");
    let fourth = exec
        .run(load(&changed), RunOptions::new(ds()))
        .await
        .unwrap();
    assert_eq!(fourth.task("src").unwrap().state, TaskState::Succeeded);
    assert_eq!(fourth.task("dbl").unwrap().state, TaskState::Succeeded);
}

/// A DAG writing `t_rows` (as the daily batch writes predictions) and another reading it (as
/// the matcher reads them).
fn writer(value: i64) -> Arc<ValidatedDag> {
    load(&format!(
        "dag: writer\ntasks:\n  src:\n    op: test.source\n    with: {{ value: {value} }}\n    outputs: {{ rows: t_rows }}\n"
    ))
}

/// The reader's run for `ds`: what its task did.
async fn read(exec: &Executor, ds: chrono::NaiveDate) -> TaskState {
    let report = exec.run(reader(), RunOptions::new(ds)).await.unwrap();
    report.task("dbl").unwrap().state
}

fn reader() -> Arc<ValidatedDag> {
    /// `t_rows`, which another DAG writes.
    struct Rows;
    impl TableLookup for Rows {
        fn table_schema(&self, name: &str) -> Option<SchemaRef> {
            (name == "t_rows").then(schema)
        }
    }
    let registry = registry();
    let ctx = LoadContext {
        registry: &registry,
        tables: &Rows,
        env: &ProcessEnv,
    };
    let yaml = "dag: reader\ntasks:\n  dbl:\n    op: test.double\n    inputs: { rows: t_rows }\n    outputs: { out: t_out }\n";
    Arc::new(krxflow_dag::load_dag_str(yaml, Path::new("reader.yaml"), &ctx).unwrap())
}

#[tokio::test]
async fn another_dags_change_to_what_a_task_read_makes_it_run_again_and_nothing_else_does() {
    let (_dir, exec) = setup();
    exec.run(writer(7), RunOptions::new(ds())).await.unwrap();
    assert_eq!(read(&exec, ds()).await, TaskState::Succeeded);
    assert_eq!(values(&exec, "t_out").await, [14, 16]);
    // The writer re-run, writing the same rows: nothing the reader read changed.
    let mut all = RunOptions::new(ds());
    all.reprocess = Reprocess::All;
    exec.run(writer(7), all).await.unwrap();
    assert_eq!(read(&exec, ds()).await, TaskState::UpToDate);
    // The writer changes the day's rows: the reader's success no longer stands.
    exec.run(writer(8), RunOptions::new(ds())).await.unwrap();
    assert_eq!(read(&exec, ds()).await, TaskState::Succeeded);
    assert_eq!(values(&exec, "t_out").await, [16, 18]);
    assert_eq!(read(&exec, ds()).await, TaskState::UpToDate);
    // A change dated after the reader's day is not in what it read for that day.
    let next = ds().succ_opt().unwrap();
    exec.run(writer(9), RunOptions::new(next)).await.unwrap();
    assert_eq!(read(&exec, ds()).await, TaskState::UpToDate);
    assert_eq!(read(&exec, next).await, TaskState::Succeeded);
    // A backfill sees it too: the later day's rows changed again, which only that day read.
    exec.run(writer(10), RunOptions::new(next)).await.unwrap();
    let planned = exec
        .plan_backfill(
            &reader(),
            &[ds(), next],
            Reprocess::Missing,
            &Default::default(),
        )
        .await
        .unwrap();
    let todo: Vec<_> = planned
        .iter()
        .filter(|p| p.run)
        .map(|p| (p.ds, p.status))
        .collect();
    assert_eq!(todo, [(next, krxflow_exec::PartitionStatus::Stale)]);
}

#[tokio::test]
async fn a_task_asked_to_rerun_runs_again_with_what_depends_on_it_and_nothing_else() {
    let (_dir, exec) = setup();
    // TWICE with a task beside the two.
    let yaml = &format!(
        "{TWICE}  side:\n    op: test.source\n    with: {{ value: 1 }}\n    outputs: {{ rows: t_side }}\n"
    );
    exec.run(load(yaml), RunOptions::new(ds())).await.unwrap();
    let mut rerun = RunOptions::new(ds());
    rerun.rerun.insert("src".into());
    let again = exec.run(load(yaml), rerun).await.unwrap();
    assert_eq!(again.task("src").unwrap().state, TaskState::Succeeded);
    assert_eq!(
        again.task("dbl").unwrap().state,
        TaskState::Succeeded,
        "downstream"
    );
    assert_eq!(again.task("side").unwrap().state, TaskState::UpToDate);
    let out = exec
        .lake()
        .read("t_out", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(out.num_rows(), 2, "the rerun rewrites, never duplicates");
    // A leaf alone: only it.
    let mut leaf = RunOptions::new(ds());
    leaf.rerun.insert("dbl".into());
    let once = exec.run(load(yaml), leaf).await.unwrap();
    assert_eq!(once.task("src").unwrap().state, TaskState::UpToDate);
    assert_eq!(once.task("dbl").unwrap().state, TaskState::Succeeded);
}

#[tokio::test]
async fn lineage_records_exact_input_versions_operator_version_and_params_hash() {
    let (_dir, exec) = setup();
    let dag = load(
        r#"
dag: lin
tasks:
  src:
    op: test.source
    with: { value: 3 }
    outputs: { rows: t_rows }
  dbl:
    op: test.double
    inputs: { rows: t_rows }
    outputs: { out: t_out }
"#,
    );
    exec.run(dag.clone(), RunOptions::new(ds())).await.unwrap();
    let rows_version = exec.lake().version("t_rows").await.unwrap().unwrap();
    let records = krxflow_exec::lineage::all_records(exec.lake())
        .await
        .unwrap();
    let tree = krxflow_exec::lineage::build_tree(&records, "t_out", Some(ds())).unwrap();
    let producer = tree.producer.as_ref().unwrap();
    assert_eq!(producer.op_kind, "test.double");
    assert_eq!(producer.op_version, 3);
    assert_eq!(producer.params_hash, dag.task("dbl").unwrap().params_hash);
    assert_eq!(producer.inputs.len(), 1);
    assert_eq!(producer.inputs[0].table, "t_rows");
    assert_eq!(producer.inputs[0].version, rows_version);
    assert_eq!(tree.inputs[0].table, "t_rows");
    assert_eq!(tree.inputs[0].producer.as_ref().unwrap().task, "src");
}

fn pair(value: i64, first: &str) -> Arc<ValidatedDag> {
    load(&format!(
        "dag: pair\ntasks:\n  both:\n    op: test.pair\n    with: {{ value: {value} }}\n    outputs: {{ first: {first}, second: t_second }}\n"
    ))
}

async fn values(exec: &Executor, table: &str) -> Vec<i64> {
    let read = exec
        .lake()
        .read(table, ReadOptions::default())
        .await
        .unwrap();
    let mut v: Vec<i64> = read
        .batches
        .iter()
        .flat_map(|b| {
            let c = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            c.iter().flatten().collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

/// The second output's table cannot be written (a plain file stands where its folder goes):
/// the first output, already committed, is rolled back, and no lineage row names it.
#[tokio::test]
async fn a_task_whose_second_output_fails_leaves_its_first_output_as_it_was() {
    let (dir, exec) = setup();
    exec.run(pair(1, "t_first"), RunOptions::new(ds()))
        .await
        .unwrap();
    assert_eq!(values(&exec, "t_first").await, [1, 2]);
    let before = exec.lake().version("t_first").await.unwrap().unwrap();

    std::fs::remove_dir_all(dir.path().join("t_second")).unwrap();
    std::fs::write(dir.path().join("t_second"), "not a table folder").unwrap();
    let mut again = RunOptions::new(ds());
    again.reprocess = Reprocess::All;
    let report = exec.run(pair(7, "t_first"), again).await.unwrap();
    let task = report.task("both").unwrap();
    assert_eq!(task.state, TaskState::Failed, "{task:?}");
    assert_eq!(
        values(&exec, "t_first").await,
        [1, 2],
        "the first output is as before"
    );
    let after = exec.lake().version("t_first").await.unwrap().unwrap();
    assert_eq!(
        after,
        before + 2,
        "the write and its restore are both in the log"
    );
    let lineage = exec
        .lake()
        .read(krxflow_exec::records::LINEAGE, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        lineage.num_rows(),
        2,
        "only the first run's two outputs have lineage"
    );

    // A first output that the failing write created is emptied again, in one more commit.
    let report = exec
        .run(pair(9, "t_new"), RunOptions::new(ds()))
        .await
        .unwrap();
    assert_eq!(report.task("both").unwrap().state, TaskState::Failed);
    assert_eq!(exec.lake().version("t_new").await.unwrap(), Some(1));
    assert_eq!(values(&exec, "t_new").await, Vec::<i64>::new());
}

/// Writes one row for ds whose value is its output table's watermark (days), or -1.
struct Incremental;
struct ConfiguredIncremental;

#[async_trait]
impl Operator for Incremental {
    fn kind(&self) -> &'static str {
        "test.incremental"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "reports its watermark"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::new("rows", schema(), WriteMode::Merge, "rows")
                .keys(&["code", "date"])
                .date_column("date")
                .with_watermark(),
        ]
    }
    fn configure(&self, _: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredIncremental))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredIncremental {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let w = ctx
            .watermarks
            .get("rows")
            .map_or(-1, |d| i64::from(day(*d)));
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec!["A"])),
                Arc::new(Date32Array::from(vec![day(ctx.ds)])),
                Arc::new(Int64Array::from(vec![w])),
            ],
        )?;
        Ok(OutputBatches::new().with("rows", vec![batch]))
    }
}

#[tokio::test]
async fn incremental_operators_see_their_tables_watermark_as_of_ds_unless_reprocessing_all() {
    let (_dir, exec) = setup();
    let mut registry = registry();
    registry.register(Arc::new(Incremental));
    let ctx = LoadContext {
        registry: &registry,
        tables: &NoTables,
        env: &ProcessEnv,
    };
    let yaml = "dag: inc\ntasks:\n  t:\n    op: test.incremental\n    outputs: { rows: t_inc }\n";
    let dag = Arc::new(krxflow_dag::load_dag_str(yaml, Path::new("inc.yaml"), &ctx).unwrap());
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let value_at = |read: &krxflow_lake::TableRead, date: chrono::NaiveDate| -> i64 {
        for b in &read.batches {
            let dates = b.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
            let vals = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                if dates.value(i) == day(date) {
                    return vals.value(i);
                }
            }
        }
        panic!("no row for {date}");
    };
    for ds in ["2024-12-13", "2024-12-16", "2024-12-10"] {
        exec.run(dag.clone(), RunOptions::new(d(ds))).await.unwrap();
    }
    let read = exec
        .lake()
        .read("t_inc", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        value_at(&read, d("2024-12-13")),
        -1,
        "empty table: no watermark"
    );
    assert_eq!(
        value_at(&read, d("2024-12-16")),
        i64::from(day(d("2024-12-13")))
    );
    assert_eq!(
        value_at(&read, d("2024-12-10")),
        -1,
        "a backfill of an earlier day only sees rows on or before it"
    );
    let mut all = RunOptions::new(d("2024-12-16"));
    all.reprocess = Reprocess::All;
    exec.run(dag.clone(), all).await.unwrap();
    let read = exec
        .lake()
        .read("t_inc", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        value_at(&read, d("2024-12-16")),
        -1,
        "--reprocess all is a full refresh"
    );
}

struct Counting(std::sync::Mutex<Vec<(chrono::NaiveDate, krxflow_exec::PartitionOutcome)>>);
impl krxflow_exec::BackfillProgress for Counting {
    fn partition_done(&self, ds: chrono::NaiveDate, o: krxflow_exec::PartitionOutcome) {
        self.0.lock().unwrap().push((ds, o));
    }
}

/// A partition runner that records when each partition started and ended (the order a
/// backfill hands partitions out in, whatever runs them).
#[derive(Debug, Default)]
struct Timeline(std::sync::Mutex<Vec<(chrono::NaiveDate, std::time::Instant, std::time::Instant)>>);

#[async_trait]
impl krxflow_exec::PartitionRunner for Timeline {
    async fn run_partition(
        &self,
        _dag: &ValidatedDag,
        run: krxflow_exec::PartitionRun<'_>,
        _cancel: &tokio_util::sync::CancellationToken,
    ) -> krxflow_exec::PartitionOutcome {
        let ds = run.ds;
        let start = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.0
            .lock()
            .unwrap()
            .push((ds, start, std::time::Instant::now()));
        krxflow_exec::PartitionOutcome::Succeeded
    }
}

#[tokio::test]
async fn a_backfill_runs_its_earliest_partition_alone_then_the_rest_in_parallel() {
    let (_dir, exec) = setup();
    let days = backfill_week();
    let dag = load(
        "dag: order\ntasks:\n  src:\n    op: test.source\n    with: { value: 1 }\n    outputs: { rows: t_order }\n",
    );
    let timeline = Arc::new(Timeline::default());
    let opts = krxflow_exec::BackfillOptions {
        reprocess: Reprocess::Missing,
        parallel: 3,
        runner: Some(timeline.clone()),
        rerun: Default::default(),
    };
    let report = exec.backfill(dag, &days, opts, &()).await.unwrap();
    assert_eq!(report.count(krxflow_exec::PartitionOutcome::Succeeded), 5);
    let mut seen = timeline.0.lock().unwrap().clone();
    seen.sort_by_key(|(_, start, _)| *start);
    let (first, _, first_end) = seen[0];
    assert_eq!(first, days[0], "the earliest day starts first");
    assert!(
        seen[1..].iter().all(|(_, start, _)| *start >= first_end),
        "a later day started before the earliest ended: {seen:?}"
    );
    // The others overlap: three at a time.
    let (_, second_start, second_end) = seen[1];
    assert!(seen[2].1 < second_end && seen[3].1 < second_end, "{seen:?}");
    assert!(second_start >= first_end);
}

/// A partition runner whose days after the first run until cancelled, counting the
/// partitions it started and those it saw to their end.
#[derive(Debug, Default)]
struct Stoppable {
    started: AtomicU32,
    ended: AtomicU32,
}

#[async_trait]
impl krxflow_exec::PartitionRunner for Stoppable {
    async fn run_partition(
        &self,
        _dag: &ValidatedDag,
        run: krxflow_exec::PartitionRun<'_>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> krxflow_exec::PartitionOutcome {
        let ds = run.ds;
        self.started.fetch_add(1, Ordering::SeqCst);
        if ds.format("%d").to_string() != "09" {
            cancel.cancelled().await;
            // Stopping a remote job takes a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.ended.fetch_add(1, Ordering::SeqCst);
            return krxflow_exec::PartitionOutcome::Cancelled;
        }
        self.ended.fetch_add(1, Ordering::SeqCst);
        krxflow_exec::PartitionOutcome::Succeeded
    }
}

#[tokio::test]
async fn a_cancelled_backfill_sees_its_running_partitions_end_and_starts_no_other() {
    use krxflow_exec::PartitionOutcome;
    let (_dir, exec) = setup();
    let token = tokio_util::sync::CancellationToken::new();
    let exec = exec.with_cancel(token.clone());
    let days = backfill_week();
    let dag = load(
        "dag: stop\ntasks:\n  src:\n    op: test.source\n    with: { value: 1 }\n    outputs: { rows: t_stop }\n",
    );
    let runner = Arc::new(Stoppable::default());
    let opts = krxflow_exec::BackfillOptions {
        reprocess: Reprocess::Missing,
        parallel: 2,
        runner: Some(runner.clone()),
        rerun: Default::default(),
    };
    let cancel_soon = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    });
    let report = exec.backfill(dag, &days, opts, &()).await.unwrap();
    cancel_soon.await.unwrap();
    // The first day ran; two were running when cancelled and were seen to their end; the
    // last two never started.
    assert_eq!(runner.started.load(Ordering::SeqCst), 3);
    assert_eq!(runner.ended.load(Ordering::SeqCst), 3);
    assert_eq!(report.count(PartitionOutcome::Succeeded), 1);
    assert_eq!(report.count(PartitionOutcome::Cancelled), 4);
}

#[tokio::test]
async fn backfills_skip_done_partitions_rerun_failed_ones_and_block_after_a_past_failure() {
    use krxflow_exec::{BackfillOptions, PartitionOutcome, PartitionStatus};
    let (_dir, exec) = setup();
    let days = backfill_week();
    let yaml = |extra: &str| {
        format!(
            "dag: bf\ntasks:\n  src:\n    op: test.source\n    with: {{ value: 1{extra} }}\n    outputs: {{ rows: t_bf }}\n"
        )
    };
    let failing = load(&yaml(", fail_on: 2024-12-11"));
    let opts = |reprocess, parallel| BackfillOptions {
        reprocess,
        parallel,
        runner: None,
        rerun: Default::default(),
    };
    let progress = Counting(Default::default());
    let first = exec
        .backfill(
            failing.clone(),
            &days,
            opts(Reprocess::Missing, 3),
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(first.count(PartitionOutcome::Succeeded), 4);
    assert_eq!(first.count(PartitionOutcome::Failed), 1);
    assert_eq!(
        progress.0.lock().unwrap().len(),
        5,
        "one progress event per partition"
    );
    let status = exec.partition_status(&failing, &days).await.unwrap();
    assert_eq!(status[&days[2]], PartitionStatus::Failed);
    assert_eq!(status[&days[0]], PartitionStatus::Done);

    // Same command again: only the failed partition runs (and fails again).
    let second = exec
        .backfill(failing.clone(), &days, opts(Reprocess::Missing, 3), &())
        .await
        .unwrap();
    assert_eq!(second.count(PartitionOutcome::Skipped), 4);
    assert_eq!(second.count(PartitionOutcome::Failed), 1);
    let only_failed = exec
        .backfill(failing, &days, opts(Reprocess::Failed, 3), &())
        .await
        .unwrap();
    assert_eq!(only_failed.count(PartitionOutcome::Skipped), 4);

    // Every partition's rows exactly once.
    let rows = exec
        .lake()
        .read("t_bf", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        rows.num_rows(),
        4 * 2,
        "re-running rewrites, never duplicates"
    );

    // depends_on_past: partitions run in order and stop at the first failure.
    let past = load(
        "dag: bf_past\ntasks:\n  src:\n    op: test.source\n    depends_on_past: true\n    with: { value: 1, fail_on: 2024-12-11 }\n    outputs: { rows: t_bf_past }\n",
    );
    let report = exec
        .backfill(past, &days, opts(Reprocess::Missing, 4), &())
        .await
        .unwrap();
    let outcomes: Vec<PartitionOutcome> = report.partitions.iter().map(|p| p.1).collect();
    assert_eq!(
        outcomes,
        [
            PartitionOutcome::Succeeded,
            PartitionOutcome::Succeeded,
            PartitionOutcome::Failed,
            PartitionOutcome::Blocked,
            PartitionOutcome::Blocked
        ]
    );
    let recorded = exec
        .lake()
        .read(krxflow_exec::backfill::BACKFILLS, ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        recorded.num_rows(),
        4 * 2,
        "a start and an end row per backfill"
    );
}

#[tokio::test]
async fn a_rerun_backfill_reruns_its_tasks_on_every_day_and_resumes_where_it_failed() {
    use krxflow_exec::{BackfillOptions, PartitionOutcome, PartitionStatus};
    let (_dir, exec) = setup();
    let days = backfill_week();
    let yaml = |extra: &str| {
        format!(
            "dag: rbf\ntasks:\n  src:\n    op: test.source\n    with: {{ value: 1{extra} }}\n    outputs: {{ rows: t_rbf }}\n  dbl:\n    op: test.double\n    inputs: {{ rows: t_rbf }}\n    outputs: {{ out: t_rbf_out }}\n  side:\n    op: test.source\n    with: {{ value: 2 }}\n    outputs: {{ rows: t_rbf_side }}\n"
        )
    };
    let ok = load(&yaml(""));
    let opts = |rerun: &[&str]| BackfillOptions {
        reprocess: Reprocess::Missing,
        parallel: 2,
        runner: None,
        rerun: rerun.iter().map(|t| t.to_string()).collect(),
    };
    let plain = exec
        .backfill(ok.clone(), &days, opts(&[]), &())
        .await
        .unwrap();
    assert_eq!(plain.count(PartitionOutcome::Succeeded), 5);
    let plain_again = exec
        .backfill(ok.clone(), &days, opts(&[]), &())
        .await
        .unwrap();
    assert_eq!(
        plain_again.count(PartitionOutcome::Skipped),
        5,
        "a plain backfill is done"
    );

    // The rerun of `src` (and `dbl`, downstream of it) fails on one day.
    let failing = load(&yaml(", fail_on: 2024-12-11"));
    let first = exec
        .backfill(failing, &days, opts(&["src"]), &())
        .await
        .unwrap();
    assert_eq!(first.backfill_id, "rbf:2024-12-09:2024-12-13:rerun=src");
    assert_eq!(first.count(PartitionOutcome::Succeeded), 4);
    assert_eq!(first.count(PartitionOutcome::Failed), 1);
    let rerun_src = opts(&["src"]).rerun;
    let plan = exec
        .plan_backfill(&ok, &days, Reprocess::Missing, &rerun_src)
        .await
        .unwrap();
    let to_run: Vec<_> = plan
        .iter()
        .filter(|p| p.run)
        .map(|p| (p.ds, p.status))
        .collect();
    assert_eq!(to_run, [(days[2], PartitionStatus::Failed)], "{plan:?}");

    // The same command resumes it: only the failed day runs.
    let resumed = exec
        .backfill(ok.clone(), &days, opts(&["src"]), &())
        .await
        .unwrap();
    assert_eq!(resumed.count(PartitionOutcome::Skipped), 4);
    assert_eq!(resumed.count(PartitionOutcome::Succeeded), 1);
    assert_eq!(
        resumed.partitions[2],
        (days[2], PartitionOutcome::Succeeded)
    );

    // Once it has succeeded, the same command is a new rerun of the whole range.
    let fresh = exec.backfill(ok, &days, opts(&["src"]), &()).await.unwrap();
    assert_eq!(fresh.count(PartitionOutcome::Succeeded), 5);

    let succeeded = |task: &str, all: &[krxflow_exec::AttemptRecord]| {
        all.iter()
            .filter(|a| a.task == task && a.state == "succeeded")
            .count()
    };
    let all = attempts(&exec).await;
    // plain 5 + first rerun 4 + resumed 1 + fresh 5.
    assert_eq!(succeeded("src", &all), 15);
    assert_eq!(
        succeeded("dbl", &all),
        15,
        "downstream of a rerun task runs again"
    );
    assert_eq!(succeeded("side", &all), 5, "a task beside them does not");
    let out = exec
        .lake()
        .read("t_rbf_out", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(out.num_rows(), 5 * 2, "reruns rewrite, never duplicate");
}

const CHECKED: &str = r#"
dag: chk
tasks:
  src:
    op: test.source
    with: { value: VALUE }
    retries: { max: 3, base: 10ms }
    outputs: { rows: t_chk }
    checks:
      positive: SELECT * FROM t_chk WHERE value <= 0
      b_small: { sql: "SELECT code, value FROM t_chk WHERE date = {ds} AND value > 7", severity: warn }
  dbl:
    op: test.double
    inputs: { rows: t_chk }
    outputs: { out: t_chk_out }
"#;

#[tokio::test]
async fn a_failed_error_check_fails_its_task_after_the_write_and_a_warn_check_is_only_recorded() {
    let (_dir, exec) = setup();
    let run = |value: i64| {
        let yaml = CHECKED.replace("VALUE", &value.to_string());
        let exec = exec.clone();
        async move {
            let mut o = RunOptions::new(ds());
            o.reprocess = Reprocess::All;
            exec.run(load(&yaml), o).await.unwrap()
        }
    };
    // B's value is 8: the warn check fails, the task succeeds and its downstream runs.
    let warned = run(7).await;
    let src = warned.task("src").unwrap();
    assert_eq!(src.state, TaskState::Succeeded);
    let states: Vec<(&str, &str, i64)> = src
        .checks
        .iter()
        .map(|c| (c.check.as_str(), c.state.as_str(), c.failing_rows))
        .collect();
    assert_eq!(
        states,
        [("positive", "passed", 0), ("b_small", "failed", 1)]
    );
    assert_eq!(src.checks[1].sample.as_deref(), Some("code=B, value=8"));
    assert_eq!(warned.task("dbl").unwrap().state, TaskState::Succeeded);

    // Negative values: the error check fails the task once, without retries; its rows are
    // written (and in the lineage), nothing downstream runs on them.
    let failed = run(-1).await;
    let src = failed.task("src").unwrap();
    assert_eq!((src.state, src.attempts), (TaskState::Failed, 1));
    let error = src.error.as_deref().unwrap();
    assert!(
        error.starts_with(
            "check `positive` (error): 2 failing rows, e.g. code=A, date=2024-12-16, value=-1"
        ),
        "{error}"
    );
    assert_eq!(failed.task("dbl").unwrap().state, TaskState::UpstreamFailed);
    let rows = exec
        .lake()
        .read("t_chk", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(rows.num_rows(), 2, "the failed task's write stays");

    // A query that cannot run fails an error check too.
    let broken = CHECKED
        .replace("VALUE", "7")
        .replace("FROM t_chk WHERE value <= 0", "FROM t_nope");
    let mut o = RunOptions::new(ds());
    o.reprocess = Reprocess::All;
    let errored = exec.run(load(&broken), o).await.unwrap();
    let src = errored.task("src").unwrap();
    assert_eq!(src.state, TaskState::Failed);
    assert!(
        src.error
            .as_deref()
            .unwrap()
            .contains("check `positive` (error): its query failed")
    );

    // Every result is a row of _krxflow/checks.
    let recorded = exec
        .lake()
        .read(krxflow_exec::checks::CHECKS, ReadOptions::default())
        .await
        .unwrap();
    let records = krxflow_exec::checks::checks_from_batches(&recorded.batches);
    let mut got: Vec<(String, String)> = records
        .iter()
        .map(|r| (r.check.clone(), r.state.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("b_small".to_string(), "failed".to_string()),
            ("b_small".into(), "failed".into()),
            ("b_small".into(), "passed".into()),
            ("positive".into(), "error".into()),
            ("positive".into(), "failed".into()),
            ("positive".into(), "passed".into()),
        ]
    );
}

#[tokio::test]
async fn the_metrics_observer_counts_attempts_retries_rows_and_run_outcomes() {
    let (_dir, exec) = setup();
    let metrics = Arc::new(krxflow_metrics::Metrics::new());
    let exec = exec.with_observer(Arc::new(krxflow_exec::MetricsObserver::new(
        metrics.clone(),
    )));
    let dag = load(
        r#"
dag: flaky
tasks:
  src:
    op: test.source
    with: { value: 1, fail_times: 1 }
    outputs: { rows: t_rows }
    retries: { max: 3, backoff: exponential, base: 1ms, max_delay: 2ms }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let text = metrics.render();
    let line = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
    };
    assert_eq!(
        line("krxflow_task_attempts_total{dag=\"flaky\",task=\"src\"}"),
        2.0
    );
    assert_eq!(
        line("krxflow_task_retries_total{dag=\"flaky\",task=\"src\"}"),
        1.0
    );
    assert!(line("krxflow_rows_written_total{table=\"t_rows\"}") > 0.0);
    assert_eq!(
        line("krxflow_task_state{dag=\"flaky\",state=\"succeeded\",task=\"src\"}"),
        1.0
    );
    assert_eq!(
        line("krxflow_dag_runs_total{dag=\"flaky\",state=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        line("krxflow_dag_last_success_ds_timestamp_seconds{dag=\"flaky\"}"),
        1_734_307_200.0 // 2024-12-16T00:00:00Z
    );
}

#[tokio::test]
async fn rejects_observed_by_the_last_attempt_land_on_the_table_bound_to_the_port() {
    let (_dir, exec) = setup();
    let metrics = Arc::new(krxflow_metrics::Metrics::new());
    let exec = exec.with_observer(Arc::new(krxflow_exec::MetricsObserver::new(
        metrics.clone(),
    )));
    let dag = load(
        r#"
dag: rejecting
tasks:
  src:
    op: test.source
    with: { value: 1, fail_times: 1, rejects: 3 }
    outputs: { rows: t_rows }
    retries: { max: 3, backoff: exponential, base: 1ms, max_delay: 2ms }
"#,
    );
    let report = exec.run(dag, RunOptions::new(ds())).await.unwrap();
    assert_eq!(report.state, RunState::Succeeded);
    let task = report.task("src").unwrap();
    // The counter `krxflow runs` shows is kept, and only the last attempt's values count.
    assert_eq!(task.counters["rejected.bad_row"], 3);
    assert_eq!(
        task.observations,
        vec![krxflow_core::Observation::Rejected {
            port: "rows".into(),
            reason: "bad_row".into(),
            n: 3
        }]
    );
    let text = metrics.render();
    assert!(
        text.contains("krxflow_rejects_total{reason=\"bad_row\",table=\"t_rows\"} 3"),
        "{text}"
    );
}

/// `src` (test.source with `src_with`) -> `t_rows` -> `dbl` (test.double) -> `t_out`.
fn chain(src_with: &str, dbl_extra: &str) -> Arc<ValidatedDag> {
    load(&format!(
        "dag: chain\ntasks:\n  src:\n    op: test.source\n    with: {{ {src_with} }}\n    outputs: {{ rows: t_rows }}\n  dbl:\n    op: test.double\n{dbl_extra}    inputs: {{ rows: t_rows }}\n    outputs: {{ out: t_out }}\n"
    ))
}

fn week() -> Vec<chrono::NaiveDate> {
    (9..=13)
        .map(|d| chrono::NaiveDate::from_ymd_opt(2024, 12, d).unwrap())
        .collect()
}

/// The DAG's runs over `days`, one after the other; with `batched`, after a range batch whose
/// settled tasks they pass on. The runs' states, and what the batch ran and left to the days.
async fn replay(
    exec: &Executor,
    dag: &Arc<ValidatedDag>,
    days: &[chrono::NaiveDate],
    batched: bool,
) -> (Vec<RunState>, Vec<String>, Vec<(String, String)>) {
    let runs: Vec<krxflow_exec::ReplayRun> = days
        .iter()
        .map(|d| krxflow_exec::ReplayRun {
            dag: 0,
            ds: *d,
            run_id: krxflow_exec::new_run_id(&dag.spec.name, *d),
        })
        .collect();
    let (mut settled, mut ran, mut left) = (vec![Default::default(); runs.len()], vec![], vec![]);
    if batched {
        let calendar: Arc<dyn krxflow_core::Calendar> = Arc::new(WeekdayCalendar::default());
        let dags = [(dag.clone(), calendar)];
        let known = exec.succeeded_by_run(&dags, &runs).await.unwrap();
        let report = exec
            .run_range_batch(&dags, &runs, &known, Reprocess::Missing)
            .await
            .unwrap();
        (settled, ran, left) = (report.settled, report.batched, report.per_day);
    }
    let mut states = Vec::new();
    for (run, done) in runs.iter().zip(settled) {
        let mut o = RunOptions::new(run.ds);
        o.run_id = Some(run.run_id.clone());
        o.settled = done;
        states.push(exec.run(dag.clone(), o).await.unwrap().state);
    }
    (states, ran, left)
}

#[tokio::test]
async fn a_range_batch_runs_each_task_once_over_the_days_and_writes_what_daily_runs_write() {
    let (_d1, batched) = setup();
    let (_d2, daily) = setup();
    let dag = chain("value: 10", "");
    let (states, ran, left) = replay(&batched, &dag, &week(), true).await;
    assert_eq!(ran, ["chain.src", "chain.dbl"]);
    assert!(left.is_empty(), "{left:?}");
    assert!(
        states.iter().all(|s| *s == RunState::Succeeded),
        "{states:?}"
    );
    let (states, _, _) = replay(&daily, &dag, &week(), false).await;
    assert!(
        states.iter().all(|s| *s == RunState::Succeeded),
        "{states:?}"
    );
    for table in ["t_rows", "t_out"] {
        let v = values(&batched, table).await;
        assert_eq!(v.len(), 10, "{table}: two rows a day");
        assert_eq!(v, values(&daily, table).await, "{table}");
    }
    // One commit per table for the five days, against one a day.
    assert_eq!(batched.lake().version("t_out").await.unwrap(), Some(0));
    assert_eq!(daily.lake().version("t_out").await.unwrap(), Some(4));
    // Each task has one succeeded attempt per day, recorded under that day's run.
    let a = attempts(&batched).await;
    assert_eq!(a.len(), 10, "{a:?}");
    assert!(a.iter().all(|r| r.state == "succeeded" && r.attempt == 1));
    for ds in week() {
        let of_day: Vec<_> = a.iter().filter(|r| r.ds == ds).collect();
        assert_eq!(of_day.len(), 2);
        assert_eq!(of_day[0].run_id, of_day[1].run_id);
        assert!(of_day[0].run_id.starts_with(&format!("chain-{ds}-")));
    }
}

#[tokio::test]
async fn a_task_failing_on_one_day_leaves_the_batch_and_fails_that_day_as_a_daily_run_would() {
    let (_d1, batched) = setup();
    let (_d2, daily) = setup();
    let dag = chain("value: 10, fail_on: 2024-12-11", "");
    let (states, ran, left) = replay(&batched, &dag, &week(), true).await;
    assert!(ran.is_empty(), "{ran:?}");
    assert!(
        left.iter()
            .any(|(t, why)| t == "chain.src" && why.contains("failed on 2024-12-11")),
        "{left:?}"
    );
    assert!(left.iter().any(|(t, _)| t == "chain.dbl"), "{left:?}");
    let (daily_states, _, _) = replay(&daily, &dag, &week(), false).await;
    assert_eq!(states, daily_states);
    assert_eq!(states[2], RunState::Failed);
    assert_eq!(values(&batched, "t_out").await.len(), 8);
    assert_eq!(
        values(&batched, "t_out").await,
        values(&daily, "t_out").await
    );
}

/// Every row of `table`: (code, date, value), sorted.
async fn rows(exec: &Executor, table: &str) -> Vec<(String, i32, i64)> {
    let read = exec
        .lake()
        .read(table, ReadOptions::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in &read.batches {
        let code = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let date = b.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
        let value = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((code.value(i).to_string(), date.value(i), value.value(i)));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_writer_re_sending_its_window_each_day_keeps_only_changed_rows_and_reads_as_days_do() {
    let (_d1, batched) = setup();
    let (_d2, daily) = setup();
    let dag = chain("value: 10, window_days: 3", "");
    let (states, ran, left) = replay(&batched, &dag, &week(), true).await;
    assert_eq!(ran, ["chain.src", "chain.dbl"], "{left:?}");
    assert!(states.iter().all(|s| *s == RunState::Succeeded));
    replay(&daily, &dag, &week(), false).await;
    for table in ["t_rows", "t_out"] {
        let (b, d) = (rows(&batched, table).await, rows(&daily, table).await);
        assert_eq!(b.len(), 2 * 8, "{table}: Dec 6..13, two codes: {b:?}");
        assert_eq!(b, d, "{table}");
    }
    // Each day re-sends two unchanged earlier days (from the third day on) of two codes, as
    // the daily merge found them stored, and writes only the new and the revised day.
    let counted = |a: &[krxflow_exec::AttemptRecord]| -> Vec<(chrono::NaiveDate, i64, i64)> {
        let mut v: Vec<_> = a
            .iter()
            .filter(|r| r.task == "src")
            .map(|r| {
                let c: std::collections::BTreeMap<String, i64> = r
                    .counters
                    .as_deref()
                    .map(|j| serde_json::from_str(j).unwrap())
                    .unwrap_or_default();
                (
                    r.ds,
                    c.get("unchanged_rows.t_rows").copied().unwrap_or(0),
                    r.rows_out,
                )
            })
            .collect();
        v.sort();
        v
    };
    let b = counted(&attempts(&batched).await);
    assert_eq!(b, counted(&attempts(&daily).await));
    assert_eq!(
        b.iter().map(|c| c.1).collect::<Vec<_>>(),
        [0, 4, 4, 4, 4],
        "{b:?}"
    );
    assert_eq!(
        b.iter().map(|c| c.2).collect::<Vec<_>>(),
        [8, 4, 4, 4, 4],
        "{b:?}"
    );
}

#[tokio::test]
async fn a_table_a_daily_task_reads_without_an_as_of_bound_is_written_day_by_day() {
    // `dbl` depends on its past, so it runs day by day; it reads `t_rows` whole (undeclared:
    // no date column), so a batch writing all of `t_rows` first would show it later days.
    let (_d, exec) = setup();
    let dag = chain("value: 10", "    depends_on_past: true\n");
    let (states, ran, left) = replay(&exec, &dag, &week(), true).await;
    assert!(ran.is_empty(), "{ran:?}");
    assert!(
        left.iter().any(|(t, why)| t == "chain.src"
            && why.contains("reads `t_rows` without an as-of date bound")),
        "{left:?}"
    );
    assert!(states.iter().all(|s| *s == RunState::Succeeded));
}
