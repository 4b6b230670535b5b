//! Test fixtures shared by the lake's unit tests.

use std::sync::Arc;

use arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use krxflow_core::TableDef;

use crate::catalog::Catalog;
use crate::schema::{conform, physical_schema};
use crate::table::Lake;

/// A lake in a new temporary folder (kept while the guard lives) declaring only `prices`.
pub fn prices_lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("temp dir");
    let at = dir.path().to_str().expect("utf-8 temp path");
    let lake = Lake::open(at, Catalog::with_tables([prices()])).expect("lake");
    (dir, lake)
}

/// `prices`: (code, date, close), keyed by (code, date), dated by `date`.
pub fn prices() -> TableDef {
    TableDef::new(
        "prices",
        Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("close", DataType::Float64, true),
        ])),
    )
    .keys(&["code", "date"])
    .date_column("date")
}

/// `prices` rows (code, days since 1970-01-01, close), in the physical schema.
pub fn price_rows(rows: &[(&str, i32, f64)]) -> Vec<RecordBatch> {
    let b = RecordBatch::try_new(
        prices().schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .expect("prices batch");
    vec![conform(&b, &physical_schema(&prices().schema)).expect("physical prices")]
}
