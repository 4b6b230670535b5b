//! `forecast.chronos`: Chronos-Bolt quantile forecasts of each code's close, batched over codes,
//! written to `chronos_forecasts`.
//!
//! The context of code c for day D is its last `context_length` closes dated <= D (the engine
//! reads `ohlcv_daily` as of D: no look-ahead). For horizon h the forecast is step h of the
//! model's quantile paths. From the nine quantile prices:
//! * `median` = q50, `expected_return` = mean of the nine quantiles / close − 1;
//! * P(down) = F(close·(1 − 0.3%)), P(up) = 1 − F(close·(1 + 0.3%)), P(flat) = the rest, with F
//!   the piecewise-linear CDF through (q_k, k/10), extended linearly beyond q10 and q90 with
//!   the slope of the outer segments and clamped to [0, 1];
//! * `conf` = clamp(1 − ((q90 − q10)/close / max(|median/close − 1|, 0.001)) / 2, 0, 1).
//!
//! A missing model folder or ONNX Runtime library is `skipped` (the ensemble falls back).

use std::path::PathBuf;

use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::chronos::ChronosBolt;
use krxflow_models::onnx::Device;
use serde::Deserialize;

use super::quantiles::{QuantileRow, closes_as_of, quantile_forecasts_batch};
use crate::common::onnx_model::{model_error, model_folder};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChronosParams {
    /// Folder written by crates/models/export/chronos_bolt.py (model.onnx + config.json).
    pub model: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_context")]
    pub context_length: usize,
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    #[serde(default)]
    pub device: Device,
    /// ONNX Runtime intra-op threads (0 = cores).
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub codes: Vec<String>,
    /// Codes with fewer closes are not forecast.
    #[serde(default = "default_min_context")]
    pub min_context: usize,
}

fn default_batch() -> usize {
    32
}
fn default_context() -> usize {
    512
}
fn default_min_context() -> usize {
    32
}

/// Maximum horizon of Chronos-Bolt's forecast head.
pub const MAX_HORIZON: u32 = 64;

pub struct ChronosForecast;

struct Configured {
    p: ChronosParams,
}

#[async_trait]
impl Operator for ChronosForecast {
    fn kind(&self) -> &'static str {
        "forecast.chronos"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "Chronos-Bolt (ONNX) quantile forecasts of closes, batched over codes"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required(
                "model",
                "path",
                "folder from crates/models/export/chronos_bolt.py",
            ),
            ParamSpec::optional("batch_size", "usize", "32", "series per ONNX run"),
            ParamSpec::optional(
                "context_length",
                "usize",
                "512",
                "closes of context per series",
            ),
            ParamSpec::optional(
                "horizons",
                "list<u32>",
                "[1, 3, 5]",
                "trading days ahead (<= 64)",
            ),
            ParamSpec::optional(
                "device",
                "cpu|cuda",
                "cpu",
                "execution provider (cuda falls back to cpu)",
            ),
            ParamSpec::optional("threads", "usize", "0 (cores)", "intra-op threads"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional("min_context", "usize", "32", "fewer closes: no forecast"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![super::quantiles::closes_port()]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::chronos_forecasts(), "forecasts", WriteMode::Merge)
                .doc("one row per code, base date and horizon"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: ChronosParams = parse_params(params)?;
        if p.horizons.is_empty() || p.horizons.contains(&0) {
            return Err(ConfigError::new("horizons", "must list horizons >= 1"));
        }
        if let Some(h) = p.horizons.iter().find(|h| **h > MAX_HORIZON) {
            return Err(ConfigError::new(
                "horizons",
                format!(
                    "horizon {h} is not supported: Chronos-Bolt forecasts at most {MAX_HORIZON} steps"
                ),
            ));
        }
        if p.batch_size == 0 || p.context_length < 16 {
            return Err(ConfigError::new(
                "batch_size",
                "batch_size must be >= 1 and context_length >= 16",
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    fn ready(&self) -> OpResult<()> {
        model_folder(&self.p.model, "Chronos-Bolt", "chronos_bolt.py")
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        self.ready()?;
        let p = self.p.clone();
        let dir = PathBuf::from(&p.model);
        let bars = inputs.batches("bars")?;
        let series = closes_as_of(bars, ctx.ds, &p.codes)?;
        let mut ctxs: Vec<(String, f64, Vec<f32>)> = Vec::new();
        let mut short = 0i64;
        for (code, v) in series {
            let Some(&(_, close)) = v.last() else {
                continue;
            };
            if v.len() < p.min_context {
                short += 1;
                continue;
            }
            let tail = &v[v.len().saturating_sub(p.context_length)..];
            ctxs.push((code, close, tail.iter().map(|r| r.1 as f32).collect()));
        }
        ctx.counters.add("skipped.short_history", short);
        if ctxs.is_empty() {
            return Err(OpError::skipped(format!(
                "no code has a close on {} to forecast from",
                ctx.ds
            )));
        }
        let cancel = ctx.cancel.clone();
        let started = std::time::Instant::now();
        let model_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| p.model.clone());
        let row_model = model_name.clone();
        let rows = tokio::task::spawn_blocking(move || -> OpResult<Vec<QuantileRow>> {
            let model = ChronosBolt::load(&dir, p.device, p.threads).map_err(model_error)?;
            let steps = model.config.prediction_length;
            if let Some(h) = p.horizons.iter().find(|h| **h as usize > steps) {
                return Err(OpError::permanent(format!(
                    "horizon {h} exceeds the model's prediction length {steps}"
                )));
            }
            let mut out = Vec::with_capacity(ctxs.len() * p.horizons.len());
            for chunk in ctxs.chunks(p.batch_size) {
                if cancel.is_cancelled() {
                    return Err(OpError::Cancelled);
                }
                let refs: Vec<&[f32]> = chunk.iter().map(|c| c.2.as_slice()).collect();
                let paths = model.forecast(&refs).map_err(model_error)?;
                for ((code, close, context), path) in chunk.iter().zip(paths) {
                    for &h in &p.horizons {
                        let step = h as usize - 1;
                        let mut q = [0f64; 9];
                        for (k, level) in path.values.iter().enumerate().take(9) {
                            q[k] = f64::from(level[step]);
                        }
                        out.push(QuantileRow {
                            code: code.clone(),
                            horizon: h,
                            close: *close,
                            q,
                            context_len: context.len(),
                            model: row_model.clone(),
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| OpError::permanent(format!("inference thread: {e}")))??;
        ctx.counters
            .add("series", (rows.len() / self.p.horizons.len().max(1)) as i64);
        ctx.inference(&model_name, started.elapsed());
        let batch = quantile_forecasts_batch(tables::chronos_forecasts().schema, &rows, ctx)?;
        Ok(OutputBatches::new().with("forecasts", vec![batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_beyond_the_head_are_a_config_error() {
        let err = ChronosForecast
            .configure(&serde_json::json!({"model": "x", "horizons": [1, 65]}))
            .err()
            .expect("h65");
        assert_eq!(err.field, "horizons");
        assert!(err.message.contains("at most 64"), "{}", err.message);
        let err = ChronosForecast
            .configure(&serde_json::json!({}))
            .err()
            .expect("model is required");
        assert!(err.to_string().contains("model"), "{err}");
    }
}
