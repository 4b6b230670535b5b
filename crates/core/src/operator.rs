//! The operator contract: kinds, typed ports, configuration and the per-attempt context.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

use crate::calendar::Calendar;
use crate::error::{ConfigError, OpError, OpResult};
use crate::params::ParamSpec;
use crate::table::{TableDef, WriteMode};

/// Which rows of an input table an operator sees for partition `ds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadScope {
    /// Rows with `date_column <= ds` (the default: no look-ahead).
    AsOfPartition,
    /// Every row, including rows dated after `ds`. An operator must say so explicitly, and
    /// only does for data that is known at `ds` anyway (e.g. the outcome matcher reading
    /// predictions whose targets have matured).
    AllRows,
}

/// A named, typed input. `schema` lists the columns the operator needs (the table may have more).
#[derive(Debug, Clone)]
pub struct InputPort {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub scope: ReadScope,
    /// An optional input may be absent (no table yet); the operator gets no batches for it.
    pub optional: bool,
    /// A family of inputs: the DAG binds any number of `<name>.<member>` ports (e.g.
    /// `member.lgbm`, `member.ets`), each read like a single port. See [`InputBatches::family`].
    pub family: bool,
    /// Read only the columns of `schema` (the lake pushes the projection down to the Parquet
    /// scan); otherwise every column of the table is read.
    pub projected: bool,
    /// The operator uses only this input's rows dated before `ds` (e.g. the weights in force
    /// before the day's own update): a later write of rows dated `ds` does not make a
    /// success for `ds` stale (see `krxflow_exec::stale`). Reads are unchanged.
    pub before_ds: bool,
    pub doc: &'static str,
}

impl InputPort {
    pub fn new(name: &'static str, schema: SchemaRef, doc: &'static str) -> Self {
        Self {
            name,
            schema,
            scope: ReadScope::AsOfPartition,
            optional: false,
            family: false,
            projected: false,
            before_ds: false,
            doc,
        }
    }
    /// A family of optional inputs bound as `<name>.<member>` (see [`InputPort::family`]).
    pub fn family(name: &'static str, schema: SchemaRef, doc: &'static str) -> Self {
        Self {
            family: true,
            optional: true,
            ..Self::new(name, schema, doc)
        }
    }
    /// Whether the DAG binding `binding` (a key of `inputs:`) is this port.
    pub fn matches(&self, binding: &str) -> bool {
        if self.family {
            binding
                .strip_prefix(self.name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|member| !member.is_empty())
        } else {
            binding == self.name
        }
    }
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    pub fn all_rows(mut self) -> Self {
        self.scope = ReadScope::AllRows;
        self
    }
    /// Read only `schema`'s columns: for an operator that needs a few columns of a wide or
    /// long table (e.g. the closes of `ohlcv_daily`, the volatility of `features_daily`).
    pub fn projected(mut self) -> Self {
        self.projected = true;
        self
    }
    /// Only rows dated before `ds` are used (see [`InputPort::before_ds`]).
    pub fn before_ds(mut self) -> Self {
        self.before_ds = true;
        self
    }
}

/// A named, typed output: the exact schema of the batches produced and how they are committed.
///
/// Pipeline ports are built from their table's definition ([`OutputPort::for_table`]), so a
/// table's schema, keys and date columns are written once. The keys and date columns here are
/// used only when the DAG binds the port to a table the catalog does not declare.
#[derive(Debug, Clone)]
pub struct OutputPort {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub mode: WriteMode,
    /// Upsert keys (for `merge`).
    pub keys: Vec<String>,
    /// Business-date column (`Date32`) for as-of reads of this table.
    pub date_column: Option<String>,
    /// Column replaced by `replace_partition`.
    pub partition_column: Option<String>,
    /// Ask the executor for this table's watermark (latest date on or before ds) before the
    /// run: [`TaskContext::watermarks`]. For incremental sources.
    pub watermark: bool,
    pub doc: String,
}

impl OutputPort {
    pub fn new(name: &'static str, schema: SchemaRef, mode: WriteMode, doc: &str) -> Self {
        Self {
            name,
            schema,
            mode,
            keys: Vec::new(),
            date_column: None,
            partition_column: None,
            watermark: false,
            doc: doc.to_string(),
        }
    }
    /// A port that writes `def`'s table: its schema, keys, date and partition columns and doc.
    pub fn for_table(def: &TableDef, name: &'static str, mode: WriteMode) -> Self {
        Self {
            name,
            schema: def.schema.clone(),
            mode,
            keys: def.keys.clone(),
            date_column: def.date_column.clone(),
            partition_column: def.partition_column.clone(),
            watermark: false,
            doc: def.doc.clone(),
        }
    }
    pub fn keys(mut self, keys: &[&str]) -> Self {
        self.keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }
    pub fn date_column(mut self, col: &str) -> Self {
        self.date_column = Some(col.to_string());
        self
    }
    pub fn partition_column(mut self, col: &str) -> Self {
        self.partition_column = Some(col.to_string());
        self
    }
    /// Replaces the doc (by default the table's).
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_string();
        self
    }
    /// See [`OutputPort::watermark`]; needs a date column.
    pub fn with_watermark(mut self) -> Self {
        self.watermark = true;
        self
    }
}

/// Batches read for each input port, already restricted to the port's [`ReadScope`].
#[derive(Debug, Default, Clone)]
pub struct InputBatches {
    ports: BTreeMap<String, InputData>,
}

#[derive(Debug, Clone)]
pub struct InputData {
    pub table: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl InputBatches {
    pub fn insert(
        &mut self,
        port: &str,
        table: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) {
        self.ports.insert(
            port.to_string(),
            InputData {
                table: table.to_string(),
                schema,
                batches,
            },
        );
    }
    /// All batches of a port concatenated into one (empty batch when the table is empty).
    pub fn concat(&self, port: &str) -> OpResult<RecordBatch> {
        let data = self
            .ports
            .get(port)
            .ok_or_else(|| OpError::permanent(format!("input port `{port}` was not provided")))?;
        Ok(arrow::compute::concat_batches(&data.schema, &data.batches)?)
    }
    pub fn batches(&self, port: &str) -> OpResult<&[RecordBatch]> {
        self.ports
            .get(port)
            .map(|d| d.batches.as_slice())
            .ok_or_else(|| OpError::permanent(format!("input port `{port}` was not provided")))
    }
    pub fn has(&self, port: &str) -> bool {
        self.ports.contains_key(port)
    }
    /// The members bound to family port `family` (`<family>.<member>`), in member order: each
    /// member's name and its batches concatenated.
    pub fn family(&self, family: &str) -> OpResult<Vec<(String, RecordBatch)>> {
        let prefix = format!("{family}.");
        let mut out = Vec::new();
        for (port, data) in &self.ports {
            if let Some(member) = port.strip_prefix(&prefix) {
                let batch = arrow::compute::concat_batches(&data.schema, &data.batches)?;
                out.push((member.to_string(), batch));
            }
        }
        Ok(out)
    }
    pub fn num_rows(&self) -> usize {
        self.ports
            .values()
            .flat_map(|d| d.batches.iter())
            .map(|b| b.num_rows())
            .sum()
    }
}

/// Batches produced for each output port. The executor commits each port in one Delta commit,
/// only after the operator returned successfully, so a failing task never leaves a table
/// half-written.
#[derive(Debug, Default, Clone)]
pub struct OutputBatches {
    ports: BTreeMap<String, Vec<RecordBatch>>,
}

impl OutputBatches {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, port: &str, batches: Vec<RecordBatch>) -> Self {
        self.ports.insert(port.to_string(), batches);
        self
    }
    pub fn insert(&mut self, port: &str, batches: Vec<RecordBatch>) {
        self.ports.insert(port.to_string(), batches);
    }
    /// The batches produced for `port`, if any.
    pub fn batches(&self, port: &str) -> Option<&[RecordBatch]> {
        self.ports.get(port).map(Vec::as_slice)
    }
    pub fn take(&mut self, port: &str) -> Option<Vec<RecordBatch>> {
        self.ports.remove(port)
    }
    pub fn ports(&self) -> impl Iterator<Item = (&String, &Vec<RecordBatch>)> {
        self.ports.iter()
    }
    pub fn num_rows(&self) -> usize {
        self.ports
            .values()
            .flat_map(|b| b.iter())
            .map(|b| b.num_rows())
            .sum()
    }
}

/// Counters an operator reports for one attempt (e.g. `rejected.zero_price`), recorded by the
/// executor with the task run.
#[derive(Debug, Default)]
pub struct TaskCounters {
    inner: Mutex<BTreeMap<String, i64>>,
}

impl TaskCounters {
    pub fn add(&self, name: &str, n: i64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.entry(name.to_string()).or_default() += n;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A typed fact an operator reports about one attempt. Unlike [`TaskCounters`] (free-form
/// names, recorded with the task run), observations have a meaning the executor's observers
/// act on: they become the `krxflow_*` metric series. Record them through
/// [`TaskContext::observe`] or its helpers ([`TaskContext::rejected`],
/// [`TaskContext::inference`], [`TaskContext::model_quality`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// `n` input rows refused for `reason`. `port` is the output port the rejected rows are
    /// written to (e.g. `rejects`); for an operator with no rejects output, the output port they
    /// were kept out of. The executor resolves the port to the table the task binds it to.
    Rejected {
        port: String,
        reason: String,
        n: u64,
    },
    /// One inference pass of `model` took `seconds` (wall clock).
    Inference { model: String, seconds: f64 },
    /// A model's skill and its new ensemble weight for one (code, horizon): `hit_rate` is its
    /// direction hit rate over its trailing window (`None` when it has none).
    ModelQuality {
        code: String,
        horizon: u32,
        model: String,
        hit_rate: Option<f64>,
        weight: f64,
    },
}

/// The [`Observation`]s of one attempt, in the order they were recorded.
#[derive(Debug, Default)]
pub struct TaskObservations {
    inner: Mutex<Vec<Observation>>,
}

impl TaskObservations {
    pub fn push(&self, o: Observation) {
        if let Ok(mut v) = self.inner.lock() {
            v.push(o);
        }
    }
    pub fn snapshot(&self) -> Vec<Observation> {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Everything an attempt may use besides its inputs.
#[derive(Clone)]
pub struct TaskContext {
    pub dag: String,
    pub task: String,
    /// The logical trading date of the partition.
    pub ds: NaiveDate,
    pub run_id: String,
    /// 1-based attempt number.
    pub attempt: u32,
    pub calendar: Arc<dyn Calendar>,
    pub cancel: CancellationToken,
    pub counters: Arc<TaskCounters>,
    /// Typed observations for the metrics ([`TaskContext::observe`]).
    pub observations: Arc<TaskObservations>,
    /// Content hashes of model artifacts the attempt used (recorded in lineage).
    pub artifacts: Arc<Mutex<Vec<String>>>,
    /// For output ports declared `with_watermark()`: the latest date the bound table holds on
    /// or before `ds` (absent when the table is empty or missing).
    pub watermarks: BTreeMap<String, NaiveDate>,
    /// Model artifacts under the lake root (absent only in bare unit tests).
    pub store: Option<Arc<dyn crate::ArtifactStore>>,
}

impl TaskContext {
    /// Returns `Err(Cancelled)` once the run is being cancelled; long loops call this.
    pub fn check_cancelled(&self) -> OpResult<()> {
        if self.cancel.is_cancelled() {
            Err(OpError::Cancelled)
        } else {
            Ok(())
        }
    }
    /// Records a model artifact the attempt used, once however often it is used (a range
    /// batch's one attempt uses the same model on every day of the range).
    pub fn record_artifact(&self, id: impl Into<String>) {
        let id = id.into();
        if let Ok(mut a) = self.artifacts.lock()
            && !a.contains(&id)
        {
            a.push(id);
        }
    }
    /// Records a typed observation (no counter: see the helpers below for those that keep one).
    pub fn observe(&self, o: Observation) {
        self.observations.push(o);
    }
    /// `n` rows refused for `reason`, written to output port `port` (see
    /// [`Observation::Rejected`]); also adds `n` to the counter `rejected.<reason>`. Nothing is
    /// recorded when `n` is 0.
    pub fn rejected(&self, port: &str, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.counters.add(
            &format!("rejected.{reason}"),
            i64::try_from(n).unwrap_or(i64::MAX),
        );
        self.observe(Observation::Rejected {
            port: port.to_string(),
            reason: reason.to_string(),
            n,
        });
    }
    /// One inference pass of `model` that took `elapsed`; also adds its milliseconds to the
    /// counter `inference_ms.<model>`.
    pub fn inference(&self, model: &str, elapsed: std::time::Duration) {
        self.counters.add(
            &format!("inference_ms.{model}"),
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        );
        self.observe(Observation::Inference {
            model: model.to_string(),
            seconds: elapsed.as_secs_f64(),
        });
    }
    /// A model's hit rate and new ensemble weight for (code, horizon) (see
    /// [`Observation::ModelQuality`]); a non-finite hit rate is recorded as `None`.
    pub fn model_quality(
        &self,
        code: &str,
        horizon: u32,
        model: &str,
        hit_rate: Option<f64>,
        weight: f64,
    ) {
        self.observe(Observation::ModelQuality {
            code: code.to_string(),
            horizon,
            model: model.to_string(),
            hit_rate: hit_rate.filter(|h| h.is_finite()),
            weight,
        });
    }
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("dag", &self.dag)
            .field("task", &self.task)
            .field("ds", &self.ds)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// An operator kind, as registered in the engine and used by `op:` in YAML.
#[async_trait]
pub trait Operator: Send + Sync {
    /// Stable kind used in YAML, e.g. `features.returns`.
    fn kind(&self) -> &'static str;
    /// Bumped when the logic changes; part of lineage and of the rerun fingerprint.
    fn version(&self) -> u32;
    fn description(&self) -> &'static str;
    /// Documentation of the `with:` parameters.
    fn params(&self) -> Vec<ParamSpec>;
    fn inputs(&self) -> Vec<InputPort>;
    fn outputs(&self) -> Vec<OutputPort>;
    /// Validates `with:` (after substitution) at DAG load time.
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError>;
}

/// An operator with validated parameters, ready to run attempts.
#[async_trait]
pub trait ConfiguredOp: Send + Sync {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches>;

    /// Checked before any input is read: an operator that cannot run for want of something
    /// outside the lake (a model folder, a native library) says `skipped` here, and the
    /// attempt reads nothing for it. The default is ready.
    fn ready(&self) -> OpResult<()> {
        Ok(())
    }

    /// The first date of input `port` this attempt needs: rows dated before it are not read
    /// (the lake filters them at the scan). `watermarks` are this attempt's output watermarks
    /// (empty on a full refresh), so an incremental operator can read a trailing window
    /// instead of all history. The default, `None`, reads everything its [`ReadScope`] allows.
    fn read_from(
        &self,
        _port: &str,
        _ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        _calendar: &dyn Calendar,
    ) -> Option<NaiveDate> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;

    fn bare_ctx() -> TaskContext {
        TaskContext {
            dag: "d".into(),
            task: "t".into(),
            ds: NaiveDate::from_ymd_opt(2024, 1, 2).expect("date"),
            run_id: "r".into(),
            attempt: 1,
            calendar: Arc::new(crate::WeekdayCalendar::default()),
            cancel: Default::default(),
            counters: Arc::new(TaskCounters::default()),
            observations: Arc::new(TaskObservations::default()),
            artifacts: Arc::new(Mutex::new(Vec::new())),
            watermarks: BTreeMap::new(),
            store: None,
        }
    }

    #[test]
    fn the_helpers_record_typed_observations_and_keep_the_counters() {
        let ctx = bare_ctx();
        ctx.rejected("rejects", "zero_volume", 2);
        ctx.rejected("rejects", "zero_volume", 1);
        ctx.rejected("rejects", "null_value", 0);
        ctx.inference("ets", std::time::Duration::from_millis(1500));
        ctx.model_quality("005930", 1, "lgbm", Some(f64::NAN), 0.4);
        let c = ctx.counters.snapshot();
        assert_eq!(c["rejected.zero_volume"], 3);
        assert!(!c.contains_key("rejected.null_value"), "{c:?}");
        assert_eq!(c["inference_ms.ets"], 1500);
        assert_eq!(
            ctx.observations.snapshot(),
            vec![
                Observation::Rejected {
                    port: "rejects".into(),
                    reason: "zero_volume".into(),
                    n: 2
                },
                Observation::Rejected {
                    port: "rejects".into(),
                    reason: "zero_volume".into(),
                    n: 1
                },
                Observation::Inference {
                    model: "ets".into(),
                    seconds: 1.5
                },
                Observation::ModelQuality {
                    code: "005930".into(),
                    horizon: 1,
                    model: "lgbm".into(),
                    hit_rate: None,
                    weight: 0.4
                },
            ]
        );
    }

    #[test]
    fn an_artifact_used_on_every_day_of_a_range_is_recorded_once() {
        let ctx = bare_ctx();
        for _ in 0..3 {
            ctx.record_artifact("lgbm/pooled/h1:aa");
            ctx.record_artifact("lgbm/pooled/h3:bb");
        }
        let recorded = ctx.artifacts.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(recorded, vec!["lgbm/pooled/h1:aa", "lgbm/pooled/h3:bb"]);
    }

    #[test]
    fn a_family_port_matches_its_members_only() {
        let schema = Arc::new(Schema::empty());
        let fam = InputPort::family("member", schema.clone(), "forecasts");
        assert!(fam.optional);
        assert!(fam.matches("member.lgbm") && fam.matches("member.ets"));
        assert!(!fam.matches("member") && !fam.matches("member.") && !fam.matches("members.x"));
        let single = InputPort::new("bars", schema, "bars");
        assert!(single.matches("bars") && !single.matches("bars.x"));
    }
}
