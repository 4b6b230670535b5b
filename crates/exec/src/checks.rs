//! A task's `checks:` (dbt's tests, Dagster's asset checks): once the task's outputs are
//! committed, each query runs read-only over the lake; its rows are the failures. A failed
//! `error` check (or one whose query cannot run) fails the task, so nothing downstream runs on
//! what it wrote; a `warn` check is recorded and counted. Every result is a row of
//! `_krxflow/checks`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::array_value_to_string;
use chrono::{DateTime, NaiveDate, Utc};
use krxflow_core::TableDef;
use krxflow_dag::{PlannedTask, Severity};
use krxflow_lake::Lake;

use crate::records::{Cols, days};

pub const CHECKS: &str = "_krxflow/checks";

/// Rows of a failed check shown in its record and message.
const SAMPLE_ROWS: usize = 3;

pub fn checks_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("dag", DataType::Utf8, false),
        Field::new("task", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("check", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        // passed | failed | error (the query could not run).
        Field::new("state", DataType::Utf8, false),
        Field::new("failing_rows", DataType::Int64, false),
        // The first failing rows, `col=value` pairs, one row a line.
        Field::new("sample", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("checked", ts, false),
    ]))
}

pub fn checks_table() -> TableDef {
    TableDef::new(CHECKS, checks_schema())
        .date_column("ds")
        .doc("one row per check a task ran: passed, failed (with its first failing rows) or error")
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckRecord {
    pub run_id: String,
    pub dag: String,
    pub task: String,
    pub ds: NaiveDate,
    pub check: String,
    pub severity: String,
    pub state: String,
    pub failing_rows: i64,
    pub sample: Option<String>,
    pub error: Option<String>,
    pub checked: DateTime<Utc>,
}

impl CheckRecord {
    /// A check that failed or could not run.
    pub fn failed(&self) -> bool {
        self.state != "passed"
    }

    /// Whether it was declared with `severity`.
    pub fn is(&self, severity: Severity) -> bool {
        self.severity == severity.to_string()
    }

    /// Why it did not pass, in one line: `check `x` (error): 3 failing rows, e.g. code=...`.
    pub fn why(&self) -> String {
        let what = match (&self.error, &self.sample) {
            (Some(e), _) => format!("its query failed: {e}"),
            (None, Some(s)) => format!(
                "{} failing row{}, e.g. {}",
                self.failing_rows,
                if self.failing_rows == 1 { "" } else { "s" },
                s.lines().next().unwrap_or_default()
            ),
            (None, None) => format!("{} failing rows", self.failing_rows),
        };
        format!("check `{}` ({}): {what}", self.check, self.severity)
    }
}

pub fn checks_batch(rows: &[CheckRecord]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let strings = |f: fn(&CheckRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let optional = |f: fn(&CheckRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    RecordBatch::try_new(
        checks_schema(),
        vec![
            strings(|r| &r.run_id),
            strings(|r| &r.dag),
            strings(|r| &r.task),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(r.ds)),
            )),
            strings(|r| &r.check),
            strings(|r| &r.severity),
            strings(|r| &r.state),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.failing_rows),
            )),
            optional(|r| r.sample.as_deref()),
            optional(|r| r.error.as_deref()),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.checked.timestamp_micros()),
                )
                .with_timezone("UTC"),
            ),
        ],
    )
}

/// Reads check records back (`krxflow runs`).
pub fn checks_from_batches(batches: &[RecordBatch]) -> Vec<CheckRecord> {
    let mut out = Vec::new();
    for b in batches {
        let c = Cols(b);
        for i in 0..b.num_rows() {
            let (Some(ds), Some(checked)) = (c.date("ds", i), c.ts("checked", i)) else {
                continue;
            };
            let s = |name: &str| c.str(name, i).unwrap_or_default().to_string();
            out.push(CheckRecord {
                run_id: s("run_id"),
                dag: s("dag"),
                task: s("task"),
                ds,
                check: s("check"),
                severity: s("severity"),
                state: s("state"),
                failing_rows: c.i64("failing_rows", i).unwrap_or_default(),
                sample: c.str("sample", i).map(str::to_string),
                error: c.str("error", i).map(str::to_string),
                checked,
            });
        }
    }
    out
}

/// `row` of `batch` as `col=value, ...`.
fn row_text(batch: &RecordBatch, row: usize) -> String {
    let schema = batch.schema();
    batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(col, f)| {
            let v = if col.is_null(row) {
                "NULL".to_string()
            } else {
                array_value_to_string(col, row).unwrap_or_else(|_| "?".into())
            };
            format!("{}={v}", f.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A task's check results, and whether a query failed on a failed read of the store (the
/// attempt is then retried, as a failed read of its inputs would be).
pub(crate) struct Checked {
    pub(crate) records: Vec<CheckRecord>,
    pub(crate) transient: bool,
}

/// Runs `task`'s checks for `ds` over `lake`, in file order.
pub(crate) async fn run(
    lake: &Lake,
    dag: &str,
    task: &PlannedTask,
    ds: NaiveDate,
    run_id: &str,
) -> Checked {
    // One session for the task's checks, run at once: each table they name is registered
    // once, and a check waits for no other.
    let session = krxflow_lake::sql::Session::cached(lake);
    let results = futures::future::join_all(task.spec.checks.iter().map(|check| {
        let session = &session;
        async move {
            let started = std::time::Instant::now();
            let result = match session {
                Ok(session) => session.query(&check.sql_for(ds)).await,
                Err(e) => Err(krxflow_lake::LakeError::Sql(e.to_string())),
            };
            tracing::debug!(
                task = %task.spec.name,
                %ds,
                check = %check.name,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "check"
            );
            (check, result)
        }
    }))
    .await;
    let mut out = Vec::with_capacity(results.len());
    let mut transient = false;
    for (check, result) in results {
        let (state, failing_rows, sample, error) = match result {
            Ok((_, batches)) => {
                let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let sample: Vec<String> = batches
                    .iter()
                    .flat_map(|b| (0..b.num_rows()).map(move |i| row_text(b, i)))
                    .take(SAMPLE_ROWS)
                    .collect();
                let state = if n == 0 { "passed" } else { "failed" };
                (state, n as i64, (n > 0).then(|| sample.join("\n")), None)
            }
            Err(e) => {
                transient |= e.is_transient();
                ("error", 0, None, Some(e.to_string()))
            }
        };
        out.push(CheckRecord {
            run_id: run_id.to_string(),
            dag: dag.to_string(),
            task: task.spec.name.clone(),
            ds,
            check: check.name.clone(),
            severity: check.severity.to_string(),
            state: state.into(),
            failing_rows,
            sample,
            error,
            checked: Utc::now(),
        });
    }
    Checked {
        records: out,
        transient,
    }
}

/// Why the task fails for its checks: every `error` check that did not pass, or `None`.
pub(crate) fn blocking(results: &[CheckRecord]) -> Option<String> {
    let why: Vec<String> = results
        .iter()
        .filter(|r| r.failed() && r.is(Severity::Error))
        .map(CheckRecord::why)
        .collect();
    (!why.is_empty()).then(|| why.join("; "))
}
