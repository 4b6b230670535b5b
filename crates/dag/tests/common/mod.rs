//! Test operators, tables and helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpResult, Operator, OperatorRegistry,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_dag::{DiagCode, Diagnostic, LoadContext, ValidatedDag, load_dag_file};
use serde::Deserialize;

/// `(name, type)` columns as an Arrow schema.
pub fn schema(cols: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

pub fn bars() -> SchemaRef {
    schema(&[
        ("ticker", DataType::Utf8),
        ("date", DataType::Date32),
        ("close", DataType::Float64),
        ("volume", DataType::Int64),
    ])
}

fn bars_needed() -> SchemaRef {
    schema(&[
        ("ticker", DataType::Utf8),
        ("date", DataType::Date32),
        ("close", DataType::Float64),
    ])
}

fn forecasts() -> SchemaRef {
    schema(&[
        ("ticker", DataType::Utf8),
        ("date", DataType::Date32),
        ("horizon", DataType::Int32),
        ("q50", DataType::Float64),
    ])
}

/// A configured operator that produces nothing.
struct Noop;

#[async_trait]
impl ConfiguredOp for Noop {
    async fn run(&self, _ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        Ok(OutputBatches::new())
    }
}

/// A test operator: kind, ports and a typed params check.
struct TestOp {
    kind: &'static str,
    inputs: fn() -> Vec<InputPort>,
    outputs: fn() -> Vec<OutputPort>,
    check: fn(&serde_json::Value) -> Result<(), ConfigError>,
}

impl Operator for TestOp {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "test operator"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    fn inputs(&self) -> Vec<InputPort> {
        (self.inputs)()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        (self.outputs)()
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        (self.check)(params)?;
        Ok(Box::new(Noop))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct IngestParams {
    source: String,
    path: String,
    #[serde(default)]
    lookback_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReturnsParams {
    window: u32,
    #[serde(default)]
    min_periods: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ChronosParams {
    model: String,
    horizons: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

fn no_inputs() -> Vec<InputPort> {
    Vec::new()
}

fn out_bars() -> Vec<OutputPort> {
    vec![OutputPort::new("bars", bars(), WriteMode::Merge, "daily bars").keys(&["ticker", "date"])]
}

fn out_bars_text_close() -> Vec<OutputPort> {
    let s = schema(&[
        ("ticker", DataType::Utf8),
        ("date", DataType::Date32),
        ("close", DataType::Utf8),
        ("volume", DataType::Int64),
    ]);
    vec![OutputPort::new(
        "bars",
        s,
        WriteMode::Merge,
        "daily bars, close as text",
    )]
}

fn in_bars() -> Vec<InputPort> {
    vec![InputPort::new("bars", bars_needed(), "daily bars")]
}

fn out_features() -> Vec<OutputPort> {
    let s = schema(&[
        ("ticker", DataType::Utf8),
        ("date", DataType::Date32),
        ("ret_1d", DataType::Float64),
    ]);
    vec![OutputPort::new(
        "features",
        s,
        WriteMode::ReplacePartition,
        "features",
    )]
}

fn out_forecasts() -> Vec<OutputPort> {
    vec![OutputPort::new(
        "forecasts",
        forecasts(),
        WriteMode::Merge,
        "forecasts",
    )]
}

fn in_ensemble() -> Vec<InputPort> {
    vec![
        InputPort::new("chronos", forecasts(), "chronos forecasts"),
        InputPort::new("weights", schema(&[("w", DataType::Float64)]), "weights").optional(),
    ]
}

fn out_predictions() -> Vec<OutputPort> {
    vec![OutputPort::new(
        "predictions",
        forecasts(),
        WriteMode::Merge,
        "predictions",
    )]
}

fn in_any() -> Vec<InputPort> {
    vec![
        InputPort::new("src", schema(&[]), "any table"),
        InputPort::new("extra", schema(&[]), "another table").optional(),
    ]
}

fn out_any() -> Vec<OutputPort> {
    vec![
        OutputPort::new("dst", schema(&[]), WriteMode::Append, "any table"),
        OutputPort::new("side", schema(&[]), WriteMode::Append, "another table"),
    ]
}

/// The test operators:
/// - `ingest.ohlcv` (params source, path, lookback_days) -> `bars`
/// - `ingest.text_close` -> `bars` with `close` as Utf8
/// - `features.returns` (params window, min_periods) `bars` -> `features`
/// - `forecast.chronos` (params model, horizons) `bars` -> `forecasts`
/// - `ensemble.combine` `chronos`, optional `weights` -> `predictions`
/// - `util.source` -> `dst`, `side` (no columns)
/// - `util.copy` `src`, optional `extra` -> `dst`, `side` (no columns)
pub fn registry() -> OperatorRegistry {
    let mut r = OperatorRegistry::new();
    let ops = [
        TestOp {
            kind: "ingest.ohlcv",
            inputs: no_inputs,
            outputs: out_bars,
            check: |p| parse_params::<IngestParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "ingest.text_close",
            inputs: no_inputs,
            outputs: out_bars_text_close,
            check: |p| parse_params::<NoParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "features.returns",
            inputs: in_bars,
            outputs: out_features,
            check: |p| parse_params::<ReturnsParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "forecast.chronos",
            inputs: in_bars,
            outputs: out_forecasts,
            check: |p| parse_params::<ChronosParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "ensemble.combine",
            inputs: in_ensemble,
            outputs: out_predictions,
            check: |p| parse_params::<NoParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "util.source",
            inputs: no_inputs,
            outputs: out_any,
            check: |p| parse_params::<NoParams>(p).map(|_| ()),
        },
        TestOp {
            kind: "util.copy",
            inputs: in_any,
            outputs: out_any,
            check: |p| parse_params::<NoParams>(p).map(|_| ()),
        },
    ];
    for op in ops {
        r.register(Arc::new(op));
    }
    r
}

pub fn env() -> HashMap<String, String> {
    HashMap::from([("KRXFLOW_DATA".to_string(), "/srv/krx".to_string())])
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Loads a fixture with the test registry, the test environment and `tables`.
pub fn load_with(
    name: &str,
    tables: &HashMap<String, SchemaRef>,
) -> Result<ValidatedDag, Vec<Diagnostic>> {
    let registry = registry();
    let env = env();
    let ctx = LoadContext {
        registry: &registry,
        tables,
        env: &env,
    };
    load_dag_file(&fixture_path(name), &ctx)
}

pub fn load(name: &str) -> Result<ValidatedDag, Vec<Diagnostic>> {
    load_with(name, &HashMap::new())
}

/// Loads a YAML string (file name `inline.yaml`).
pub fn load_str(yaml: &str) -> Result<ValidatedDag, Vec<Diagnostic>> {
    let registry = registry();
    let env = env();
    let tables = HashMap::new();
    let ctx = LoadContext {
        registry: &registry,
        tables: &tables,
        env: &env,
    };
    krxflow_dag::load_dag_str(yaml, Path::new("inline.yaml"), &ctx)
}

/// The diagnostics of a fixture that must fail.
pub fn errors(name: &str) -> Vec<Diagnostic> {
    errors_with(name, &HashMap::new())
}

pub fn errors_with(name: &str, tables: &HashMap<String, SchemaRef>) -> Vec<Diagnostic> {
    match load_with(name, tables) {
        Ok(dag) => panic!("{name} should not validate, got {} tasks", dag.tasks.len()),
        Err(diags) => {
            for d in &diags {
                let shown = d.to_string();
                assert!(shown.contains(name), "file name missing from `{shown}`");
            }
            diags
        }
    }
}

/// The single diagnostic with `code`; fails listing all of them otherwise.
pub fn one(diags: &[Diagnostic], code: DiagCode) -> Diagnostic {
    let found: Vec<&Diagnostic> = diags.iter().filter(|d| d.code == code).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {code}, got:\n{}",
        krxflow_dag::render(diags)
    );
    found[0].clone()
}

/// Asserts `d` is at `line` (and `col` when given) and its message mentions each of `names`.
pub fn assert_diag(d: &Diagnostic, line: usize, col: Option<usize>, names: &[&str]) {
    assert_eq!(d.line, line, "wrong line for {d}");
    if let Some(col) = col {
        assert_eq!(d.col, col, "wrong column for {d}");
    }
    for n in names {
        assert!(d.message.contains(n), "`{n}` missing from {d}");
    }
}
