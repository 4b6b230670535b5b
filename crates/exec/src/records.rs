//! Engine tables (`_krxflow/runs`, `_krxflow/task_runs`, `_krxflow/lineage`,
//! `_krxflow/backfills`): schemas and record <-> batch conversion.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use krxflow_core::TableDef;
use krxflow_lake::WriteOutcome;

pub const RUNS: &str = "_krxflow/runs";
pub const TASK_RUNS: &str = "_krxflow/task_runs";
pub const LINEAGE: &str = "_krxflow/lineage";
pub const BACKFILLS: &str = "_krxflow/backfills";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("started", ts(), false),
        Field::new("ended", ts(), true),
        Field::new("tasks_total", DataType::Int32, false),
        Field::new("tasks_failed", DataType::Int32, false),
        Field::new("krxflow_version", DataType::Utf8, false),
    ]))
}

pub fn task_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("attempt", DataType::Int32, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("started", ts(), false),
        Field::new("ended", ts(), false),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows_in", DataType::Int64, false),
        Field::new("rows_out", DataType::Int64, false),
        Field::new("delay_ms", DataType::Int64, false),
        Field::new("op_kind", DataType::Utf8, false),
        Field::new("op_version", DataType::Int32, false),
        Field::new("params_hash", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("counters", DataType::Utf8, true),
    ]))
}

pub fn lineage_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("output_table", DataType::Utf8, false),
        Field::new("output_version", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("write_mode", DataType::Utf8, false),
        // JSON array of {"table", "version", "rows"}.
        Field::new("inputs", DataType::Utf8, false),
        Field::new("op_kind", DataType::Utf8, false),
        Field::new("op_version", DataType::Int32, false),
        Field::new("params_hash", DataType::Utf8, false),
        // JSON array of model artifact content hashes.
        Field::new("artifacts", DataType::Utf8, false),
        Field::new("krxflow_version", DataType::Utf8, false),
        Field::new("created", ts(), false),
        // First and last date of the rows the write changed (null: it changed nothing, or was
        // recorded before krxflow kept this); 0001-01-01..9999-12-31 for an undated table.
        Field::new("changed_from", DataType::Date32, true),
        Field::new("changed_to", DataType::Date32, true),
    ]))
}

pub fn backfills_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("backfill_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("from", DataType::Date32, false),
        Field::new("to", DataType::Date32, false),
        Field::new("reprocess", DataType::Utf8, false),
        Field::new("parallel", DataType::Int32, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("total", DataType::Int32, false),
        Field::new("succeeded", DataType::Int32, false),
        Field::new("failed", DataType::Int32, false),
        Field::new("skipped", DataType::Int32, false),
        Field::new("updated", ts(), false),
    ]))
}

pub fn backfills_table() -> TableDef {
    TableDef::new(BACKFILLS, backfills_schema())
        .doc("one row per backfill state change: range, options, progress (latest row wins)")
}

/// Catalog entries of the engine tables.
pub fn engine_tables() -> Vec<TableDef> {
    vec![
        TableDef::new(RUNS, runs_schema())
            .date_column("ds")
            .doc("one row per DAG run state change (running, then final)"),
        TableDef::new(TASK_RUNS, task_runs_schema())
            .date_column("ds")
            .doc("one row per task attempt"),
        TableDef::new(LINEAGE, lineage_schema())
            .date_column("ds")
            .doc("one row per committed task output: versions read and written"),
        backfills_table(),
        crate::checks::checks_table(),
    ]
}

pub(crate) fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::default()).num_days() as i32
}

pub(crate) fn from_days(v: i32) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(v as i64)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn ts_array(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

fn strings<'a>(v: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub dag: String,
    pub ds: NaiveDate,
    pub state: String,
    pub trigger: String,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub tasks_total: i32,
    pub tasks_failed: i32,
}

pub fn runs_batch(rows: &[RunRecord]) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        runs_schema(),
        vec![
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.dag.as_str())),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.ds)),
            )),
            strings(rows.iter().map(|r| r.state.as_str())),
            strings(rows.iter().map(|r| r.trigger.as_str())),
            ts_array(rows.iter().map(|r| Some(micros(r.started))).collect()),
            ts_array(rows.iter().map(|r| r.ended.map(micros)).collect()),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.tasks_total),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.tasks_failed),
            )),
            strings(rows.iter().map(|_| krxflow_core::KRXFLOW_VERSION)),
        ],
    )
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRecord {
    pub run_id: String,
    pub dag: String,
    pub task: String,
    pub ds: NaiveDate,
    pub attempt: i32,
    pub state: String,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub error: Option<String>,
    pub rows_in: i64,
    pub rows_out: i64,
    /// Backoff slept before this attempt.
    pub delay_ms: i64,
    pub op_kind: String,
    pub op_version: i32,
    pub params_hash: String,
    pub fingerprint: String,
    pub counters: Option<String>,
}

pub fn task_runs_batch(rows: &[AttemptRecord]) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        task_runs_schema(),
        vec![
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.dag.as_str())),
            strings(rows.iter().map(|r| r.task.as_str())),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.ds)),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempt))),
            strings(rows.iter().map(|r| r.state.as_str())),
            ts_array(rows.iter().map(|r| Some(micros(r.started))).collect()),
            ts_array(rows.iter().map(|r| Some(micros(r.ended))).collect()),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rows_in))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.rows_out),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.delay_ms),
            )),
            strings(rows.iter().map(|r| r.op_kind.as_str())),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.op_version),
            )),
            strings(rows.iter().map(|r| r.params_hash.as_str())),
            strings(rows.iter().map(|r| r.fingerprint.as_str())),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.counters.clone()).collect::<Vec<_>>(),
            )),
        ],
    )
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputRead {
    pub table: String,
    /// Delta version read; -1 when the (optional) table did not exist.
    pub version: i64,
    pub rows: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LineageRecord {
    pub run_id: String,
    pub dag: String,
    pub task: String,
    pub ds: NaiveDate,
    pub output_table: String,
    pub output_version: i64,
    pub rows_written: i64,
    pub write_mode: String,
    pub inputs: Vec<InputRead>,
    pub op_kind: String,
    pub op_version: i32,
    pub params_hash: String,
    pub artifacts: Vec<String>,
    pub krxflow_version: String,
    pub created: DateTime<Utc>,
    /// First and last date of the rows this write changed: `None` when it changed nothing
    /// (what the `stale` module reads).
    pub changed: Option<(NaiveDate, NaiveDate)>,
}

pub fn lineage_batch(rows: &[LineageRecord]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let inputs: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&r.inputs).unwrap_or_else(|_| "[]".into()))
        .collect();
    let artifacts: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&r.artifacts).unwrap_or_else(|_| "[]".into()))
        .collect();
    RecordBatch::try_new(
        lineage_schema(),
        vec![
            strings(rows.iter().map(|r| r.run_id.as_str())),
            strings(rows.iter().map(|r| r.dag.as_str())),
            strings(rows.iter().map(|r| r.task.as_str())),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.ds)),
            )),
            strings(rows.iter().map(|r| r.output_table.as_str())),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.output_version),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.rows_written),
            )),
            strings(rows.iter().map(|r| r.write_mode.as_str())),
            strings(inputs.iter().map(String::as_str)),
            strings(rows.iter().map(|r| r.op_kind.as_str())),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.op_version),
            )),
            strings(rows.iter().map(|r| r.params_hash.as_str())),
            strings(artifacts.iter().map(String::as_str)),
            strings(rows.iter().map(|r| r.krxflow_version.as_str())),
            ts_array(rows.iter().map(|r| Some(micros(r.created))).collect()),
            Arc::new(Date32Array::from_iter(
                rows.iter().map(|r| r.changed.map(|c| days(c.0))),
            )),
            Arc::new(Date32Array::from_iter(
                rows.iter().map(|r| r.changed.map(|c| days(c.1))),
            )),
        ],
    )
}

/// The dates a change to an undated table covers: every one.
pub(crate) fn all_dates() -> (NaiveDate, NaiveDate) {
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    (day(1, 1, 1), day(9999, 12, 31))
}

/// The dates a write changed, for its lineage row: `None` when it committed nothing.
pub(crate) fn changed_by(outcome: &WriteOutcome) -> Option<(NaiveDate, NaiveDate)> {
    outcome
        .committed
        .then(|| outcome.changed.unwrap_or_else(all_dates))
}

/// Typed column access for engine-table batches read back from the lake.
pub(crate) struct Cols<'a>(pub &'a RecordBatch);

impl<'a> Cols<'a> {
    fn col<T: 'static>(&self, name: &str) -> Option<&'a T> {
        self.0.column_by_name(name)?.as_any().downcast_ref::<T>()
    }
    pub fn str(&self, name: &str, i: usize) -> Option<&'a str> {
        let a = self.col::<StringArray>(name)?;
        (!a.is_null(i)).then(|| a.value(i))
    }
    pub fn i64(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col::<Int64Array>(name)?;
        (!a.is_null(i)).then(|| a.value(i))
    }
    pub fn i32(&self, name: &str, i: usize) -> Option<i32> {
        let a = self.col::<Int32Array>(name)?;
        (!a.is_null(i)).then(|| a.value(i))
    }
    pub fn date(&self, name: &str, i: usize) -> Option<NaiveDate> {
        let a = self.col::<Date32Array>(name)?;
        (!a.is_null(i)).then(|| from_days(a.value(i)))
    }
    pub fn ts(&self, name: &str, i: usize) -> Option<DateTime<Utc>> {
        let a = self.col::<TimestampMicrosecondArray>(name)?;
        if a.is_null(i) {
            return None;
        }
        DateTime::from_timestamp_micros(a.value(i))
    }
}

/// Reads lineage records back (used by `krxflow lineage`).
pub fn lineage_from_batches(batches: &[RecordBatch]) -> Vec<LineageRecord> {
    let mut out = Vec::new();
    for b in batches {
        let c = Cols(b);
        for i in 0..b.num_rows() {
            let inputs = c
                .str("inputs", i)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            // Each once, in first use order: lineage written before `record_artifact` kept
            // ids once repeats a range batch's models once per day of its range.
            let mut seen = std::collections::BTreeSet::new();
            let artifacts: Vec<String> = c
                .str("artifacts", i)
                .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
                .unwrap_or_default()
                .into_iter()
                .filter(|a| seen.insert(a.clone()))
                .collect();
            out.push(LineageRecord {
                run_id: c.str("run_id", i).unwrap_or_default().to_string(),
                dag: c.str("dag", i).unwrap_or_default().to_string(),
                task: c.str("task", i).unwrap_or_default().to_string(),
                ds: c.date("ds", i).unwrap_or_default(),
                output_table: c.str("output_table", i).unwrap_or_default().to_string(),
                output_version: c.i64("output_version", i).unwrap_or(-1),
                rows_written: c.i64("rows_written", i).unwrap_or(0),
                write_mode: c.str("write_mode", i).unwrap_or_default().to_string(),
                inputs,
                op_kind: c.str("op_kind", i).unwrap_or_default().to_string(),
                op_version: c.i32("op_version", i).unwrap_or(0),
                params_hash: c.str("params_hash", i).unwrap_or_default().to_string(),
                artifacts,
                krxflow_version: c.str("krxflow_version", i).unwrap_or_default().to_string(),
                created: c.ts("created", i).unwrap_or_default(),
                changed: c.date("changed_from", i).zip(c.date("changed_to", i)),
            });
        }
    }
    out
}

/// Reads attempt records back.
pub fn attempts_from_batches(batches: &[RecordBatch]) -> Vec<AttemptRecord> {
    let mut out = Vec::new();
    for b in batches {
        let c = Cols(b);
        for i in 0..b.num_rows() {
            out.push(AttemptRecord {
                run_id: c.str("run_id", i).unwrap_or_default().to_string(),
                dag: c.str("dag", i).unwrap_or_default().to_string(),
                task: c.str("task", i).unwrap_or_default().to_string(),
                ds: c.date("ds", i).unwrap_or_default(),
                attempt: c.i32("attempt", i).unwrap_or(0),
                state: c.str("state", i).unwrap_or_default().to_string(),
                started: c.ts("started", i).unwrap_or_default(),
                ended: c.ts("ended", i).unwrap_or_default(),
                error: c.str("error", i).map(str::to_string),
                rows_in: c.i64("rows_in", i).unwrap_or(0),
                rows_out: c.i64("rows_out", i).unwrap_or(0),
                delay_ms: c.i64("delay_ms", i).unwrap_or(0),
                op_kind: c.str("op_kind", i).unwrap_or_default().to_string(),
                op_version: c.i32("op_version", i).unwrap_or(0),
                params_hash: c.str("params_hash", i).unwrap_or_default().to_string(),
                fingerprint: c.str("fingerprint", i).unwrap_or_default().to_string(),
                counters: c.str("counters", i).map(str::to_string),
            });
        }
    }
    out
}

/// Reads run records back.
pub fn runs_from_batches(batches: &[RecordBatch]) -> Vec<RunRecord> {
    let mut out = Vec::new();
    for b in batches {
        let c = Cols(b);
        for i in 0..b.num_rows() {
            out.push(RunRecord {
                run_id: c.str("run_id", i).unwrap_or_default().to_string(),
                dag: c.str("dag", i).unwrap_or_default().to_string(),
                ds: c.date("ds", i).unwrap_or_default(),
                state: c.str("state", i).unwrap_or_default().to_string(),
                trigger: c.str("trigger", i).unwrap_or_default().to_string(),
                started: c.ts("started", i).unwrap_or_default(),
                ended: c.ts("ended", i),
                tasks_total: c.i32("tasks_total", i).unwrap_or(0),
                tasks_failed: c.i32("tasks_failed", i).unwrap_or(0),
            });
        }
    }
    out
}

/// Each run's latest state row by run id: its final row once it ended, else its newest.
pub fn latest_runs(runs: Vec<RunRecord>) -> std::collections::BTreeMap<String, RunRecord> {
    let mut latest: std::collections::BTreeMap<String, RunRecord> = Default::default();
    for r in runs {
        let replace = latest.get(&r.run_id).is_none_or(|prev| {
            r.ended.is_some() || prev.ended.is_none() && r.started >= prev.started
        });
        if replace {
            latest.insert(r.run_id.clone(), r);
        }
    }
    latest
}

/// Each task's latest attempt in run `run_id`, by task name. A task found up to date records
/// no attempt.
pub fn latest_attempts<'a>(
    attempts: &'a [AttemptRecord],
    run_id: &str,
) -> std::collections::BTreeMap<&'a str, &'a AttemptRecord> {
    let mut tasks: std::collections::BTreeMap<&'a str, &'a AttemptRecord> = Default::default();
    for a in attempts.iter().filter(|a| a.run_id == run_id) {
        let e = tasks.entry(a.task.as_str()).or_insert(a);
        if a.attempt >= e.attempt {
            *e = a;
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lineage_row_that_repeats_an_artifact_reads_back_with_each_once() {
        let row = LineageRecord {
            run_id: "r".into(),
            dag: "daily_batch".into(),
            task: "predict_linear".into(),
            ds: NaiveDate::from_ymd_opt(2019, 3, 5).unwrap_or_default(),
            output_table: "linear_predictions".into(),
            output_version: 0,
            rows_written: 4132,
            write_mode: "merge".into(),
            inputs: vec![],
            op_kind: "linear.predict".into(),
            op_version: 1,
            params_hash: "p".into(),
            // As a range batch wrote it before artifacts were recorded once: a day each.
            artifacts: ["h1:aa", "h3:bb", "h1:aa", "h3:bb", "h1:aa"]
                .map(String::from)
                .to_vec(),
            krxflow_version: "0".into(),
            created: Utc::now(),
            changed: NaiveDate::from_ymd_opt(2019, 3, 4).zip(NaiveDate::from_ymd_opt(2019, 3, 5)),
        };
        let batch = lineage_batch(std::slice::from_ref(&row)).expect("lineage batch");
        let read = lineage_from_batches(&[batch]);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].artifacts, vec!["h1:aa", "h3:bb"]);
        assert_eq!(read[0].changed, row.changed);
    }
}
