//! Backfill scheduling overhead: a no-op-heavy DAG (5 tasks that do no I/O) over 250 KRX
//! trading days, so the time measured is the engine's own work (planning, run/task/lineage
//! records in the lake, dependency resolution) per partition.
//!
//! Baseline, same process: the same partitions run one by one through `Executor::run` (what a
//! shell loop of `krxflow run` costs minus process start-up). Reported: partitions/s of each and
//! the ratio, plus a no-op rerun (everything already done: planning cost only).
//!
//!     cargo bench -p krxflow-exec --bench backfill

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpResult, Operator,
    OperatorRegistry, OutputBatches, OutputPort, ParamSpec, TaskContext,
};
use krxflow_dag::{LoadContext, ProcessEnv, TableLookup, ValidatedDag};
use krxflow_exec::{BackfillOptions, Executor, PartitionOutcome, Reprocess, RunOptions};
use krxflow_lake::{Catalog, Lake};

struct Noop;
struct ConfiguredNoop;

#[async_trait]
impl Operator for Noop {
    fn kind(&self) -> &'static str {
        "bench.noop"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "does nothing"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![]
    }
    fn configure(&self, _: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredNoop))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredNoop {
    async fn run(&self, _ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        Ok(OutputBatches::new())
    }
}

struct NoTables;
impl TableLookup for NoTables {
    fn table_schema(&self, _name: &str) -> Option<arrow::datatypes::SchemaRef> {
        None
    }
}

const DAG: &str = r#"
dag: noop5
tasks:
  a: { op: bench.noop }
  b: { op: bench.noop, after: [a] }
  c: { op: bench.noop, after: [a] }
  d: { op: bench.noop, after: [b, c] }
  e: { op: bench.noop, after: [d] }
"#;

fn dag() -> Arc<ValidatedDag> {
    let mut registry = OperatorRegistry::new();
    registry.register(Arc::new(Noop));
    let ctx = LoadContext {
        registry: &registry,
        tables: &NoTables,
        env: &ProcessEnv,
    };
    match krxflow_dag::load_dag_str(DAG, Path::new("noop5.yaml"), &ctx) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("bench DAG invalid: {e:?}"),
    }
}

fn executor(dir: &Path, cal: Arc<dyn Calendar>) -> Executor {
    let mut catalog = Catalog::new();
    for d in krxflow_exec::engine_tables() {
        catalog.declare(d);
    }
    let lake = Lake::open(dir.to_str().expect("utf-8 temp path"), catalog).expect("lake");
    Executor::new(lake, cal).with_max_parallel(4)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cal: Arc<dyn Calendar> = Arc::new(krxflow_schedule::KrxCalendar::new());
    let from = NaiveDate::from_ymd_opt(2023, 1, 2).expect("date");
    let days: Vec<NaiveDate> = cal
        .trading_days(from, from + chrono::Duration::days(400))
        .into_iter()
        .take(250)
        .collect();
    assert_eq!(days.len(), 250);
    let dag = dag();
    rt.block_on(async {
        // Baseline: one Executor::run per partition, sequentially.
        let base_dir = tempfile::tempdir().expect("tempdir");
        let exec = executor(base_dir.path(), cal.clone());
        let t = Instant::now();
        for ds in &days {
            let r = exec
                .run(dag.clone(), RunOptions::new(*ds))
                .await
                .expect("run");
            assert_eq!(r.state, krxflow_exec::RunState::Succeeded);
        }
        let base = t.elapsed().as_secs_f64();

        let mut results = Vec::new();
        for parallel in [1usize, 4] {
            let dir = tempfile::tempdir().expect("tempdir");
            let exec = executor(dir.path(), cal.clone());
            let opts = BackfillOptions {
                reprocess: Reprocess::Missing,
                parallel,
                runner: None,
                rerun: Default::default(),
            };
            let t = Instant::now();
            let report = exec
                .backfill(dag.clone(), &days, opts.clone(), &())
                .await
                .expect("backfill");
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(report.count(PartitionOutcome::Succeeded), 250);
            let t = Instant::now();
            let again = exec
                .backfill(dag.clone(), &days, opts, &())
                .await
                .expect("rerun");
            let rerun = t.elapsed().as_secs_f64();
            assert_eq!(again.count(PartitionOutcome::Skipped), 250);
            results.push((parallel, secs, rerun));
        }

        println!("no-op DAG (5 tasks) x 250 KRX trading days");
        println!(
            "baseline  Executor::run per partition   {base:7.2} s  {:7.1} partitions/s",
            250.0 / base
        );
        for (parallel, secs, rerun) in results {
            println!(
                "backfill  --parallel {parallel}                 {secs:7.2} s  {:7.1} partitions/s  ({:.1}x baseline)  rerun, all done: {rerun:.2} s",
                250.0 / secs,
                base / secs
            );
            println!(
                "target >= 20 partitions/s: {}",
                if 250.0 / secs >= 20.0 { "met" } else { "NOT met" }
            );
        }
    });
}
