//! `ets.fit`: AutoETS fitted per code (weekly, in `retrain_weekly`), written to `ets_models`:
//! the selected model, its parameters, its state after the last close it saw and σ².
//! `forecast.ets` then carries each state through the closes that followed instead of
//! searching the parameters again every day.
//!
//! For a run on D, code c's series is its last `context_length` closes dated <= D; only codes
//! whose last close is on the latest trading day in the input are fitted (codes that stopped
//! trading are not). A series the model cannot fit is counted `skipped.fit_failed`; one with
//! fewer than `min_context` closes `skipped.short_history`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::ets::Model;
use serde::Deserialize;

use super::quantiles::{closes_port, closes_through};
use crate::common::parallel::map_chunked;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtsFitParams {
    #[serde(default = "super::ets::default_context")]
    pub context_length: usize,
    #[serde(default = "super::ets::default_min_context")]
    pub min_context: usize,
    #[serde(default)]
    pub codes: Vec<String>,
    /// Series fitted at once (0 = cores).
    #[serde(default)]
    pub workers: usize,
}

pub struct EtsFit;

#[async_trait]
impl Operator for EtsFit {
    fn kind(&self) -> &'static str {
        "ets.fit"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "AutoETS fitted per code on log closes: model, parameters, state and sigma2 for forecast.ets"
    }
    fn params(&self) -> Vec<ParamSpec> {
        super::ets::series_params()
    }
    fn inputs(&self) -> Vec<InputPort> {
        // Optional: a new lake's first Sunday can come before any daily batch (a skip below).
        vec![closes_port().optional()]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::ets_models(), "models", WriteMode::Merge)
                .doc("one row per code and fit"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: EtsFitParams = parse_params(params)?;
        super::ets::check_context(p.context_length, p.min_context)?;
        Ok(Box::new(Configured { p: Arc::new(p) }))
    }
}

struct Configured {
    p: Arc<EtsFitParams>,
}

/// A fitted code: its code, the date of its last close, the closes fitted and the model.
type Row = (String, i32, usize, Model);

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = if inputs.has("bars") {
            inputs.batches("bars")?
        } else {
            &[]
        };
        let p = self.p.clone();
        let series = closes_through(bars, ctx.ds, &p.codes)?;
        let Some(latest) = series.values().filter_map(|v| v.last()).map(|r| r.0).max() else {
            return Err(OpError::skipped(format!(
                "no close on or before {} to fit",
                ctx.ds
            )));
        };
        let mut todo: Vec<(String, i32, Vec<f64>)> = Vec::new();
        let (mut short, mut stale) = (0i64, 0i64);
        for (code, v) in series {
            match v.last() {
                Some(&(d, _)) if d == latest => {}
                _ => {
                    stale += 1;
                    continue;
                }
            }
            if v.len() < p.min_context {
                short += 1;
                continue;
            }
            let tail = &v[v.len().saturating_sub(p.context_length)..];
            todo.push((code, latest, tail.iter().map(|r| r.1).collect()));
        }
        ctx.counters.add("skipped.short_history", short);
        ctx.counters.add("skipped.not_trading", stale);
        let cancel = ctx.cancel.clone();
        let started = std::time::Instant::now();
        let workers = p.workers;
        let fits = tokio::task::spawn_blocking(move || {
            // Groups of series fitted together (their searches in lockstep).
            let groups: Vec<&[(String, i32, Vec<f64>)]> = todo.chunks(super::ets::GROUP).collect();
            map_chunked(&groups, workers, &|| cancel.is_cancelled(), |group| {
                let closes: Vec<&[f64]> = group.iter().map(|t| t.2.as_slice()).collect();
                Model::fit_many(&closes)
                    .into_iter()
                    .zip(*group)
                    .map(|(fit, (code, through, closes))| {
                        fit.map(|m| (code.clone(), *through, closes.len(), m))
                            .map_err(|e| (code.clone(), e.to_string()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| OpError::permanent(format!("ETS thread: {e}")))??
        .into_iter()
        .flatten();
        let mut rows: Vec<Row> = Vec::new();
        let mut failed = 0i64;
        for f in fits {
            match f {
                Ok(r) => rows.push(r),
                Err((code, why)) => {
                    tracing::warn!(code, why, "ets.fit: series not fitted");
                    failed += 1;
                }
            }
        }
        ctx.counters.add("skipped.fit_failed", failed);
        ctx.counters.add("fitted", rows.len() as i64);
        ctx.inference("ets_fit", started.elapsed());
        Ok(OutputBatches::new().with("models", vec![models_batch(&rows)?]))
    }
}

fn models_batch(rows: &[Row]) -> OpResult<RecordBatch> {
    let f = |g: &dyn Fn(&Model) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| g(&r.3))))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.3.trend.model_name()),
        )),
        f(&|m| m.params.alpha),
        f(&|m| m.params.beta),
        f(&|m| m.params.phi),
        f(&|m| m.state.level),
        f(&|m| m.state.slope),
        f(&|m| m.sigma2),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.2 as i64),
        )),
    ];
    Ok(RecordBatch::try_new(tables::ets_models().schema, cols)?)
}
