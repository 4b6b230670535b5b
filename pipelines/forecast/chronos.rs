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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::ModelError;
use krxflow_models::chronos::ChronosBolt;
use krxflow_models::onnx::Device;
use serde::Deserialize;

use crate::cols::{date_col, f64_col, str_col};
use crate::common::dates::days;
use crate::common::direction::FLAT_BAND;
use crate::common::horizons::target_date;
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

/// The piecewise-linear CDF through `(q[k], levels[k])`, extended linearly beyond the ends.
pub fn quantile_cdf(q: &[f64], levels: &[f64], x: f64) -> f64 {
    let n = q.len();
    if n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return if x < q[0] { 0.0 } else { 1.0 };
    }
    let seg = |i: usize| {
        let (x0, x1, y0, y1) = (q[i], q[i + 1], levels[i], levels[i + 1]);
        if x1 > x0 {
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        } else if x < x0 {
            y0
        } else {
            y1
        }
    };
    let v = if x <= q[0] {
        seg(0)
    } else if x >= q[n - 1] {
        seg(n - 2)
    } else {
        let i = q.partition_point(|v| *v <= x).saturating_sub(1).min(n - 2);
        seg(i)
    };
    v.clamp(0.0, 1.0)
}

/// What a row of `chronos_forecasts` derives from nine quantile prices and the base close.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub median: f64,
    pub expected_return: f64,
    pub prob_up: f64,
    pub prob_flat: f64,
    pub prob_down: f64,
    pub conf: f64,
}

pub fn derive(q: &[f64; 9], close: f64) -> Derived {
    let mut sorted = *q;
    sorted.sort_by(f64::total_cmp);
    let levels: Vec<f64> = (1..=9).map(|k| f64::from(k) / 10.0).collect();
    let down = quantile_cdf(&sorted, &levels, close * (1.0 - FLAT_BAND));
    let up = 1.0 - quantile_cdf(&sorted, &levels, close * (1.0 + FLAT_BAND));
    let flat = (1.0 - up - down).max(0.0);
    let median = sorted[4];
    let med_ret = median / close - 1.0;
    let width = (sorted[8] - sorted[0]) / close;
    Derived {
        median,
        expected_return: sorted.iter().sum::<f64>() / 9.0 / close - 1.0,
        prob_up: up,
        prob_flat: flat,
        prob_down: down,
        conf: (1.0 - (width / med_ret.abs().max(0.001)) / 2.0).clamp(0.0, 1.0),
    }
}

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
        vec![InputPort::new(
            "bars",
            tables::ohlcv_daily().schema,
            "daily closes",
        )]
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

/// Skip on a missing model or runtime; anything else fails the task.
pub(crate) fn model_error(e: ModelError) -> OpError {
    match e {
        ModelError::RuntimeMissing(m) => OpError::skipped(m),
        ModelError::ModelMissing(m) => OpError::skipped(format!(
            "model not found: {m}; export one with crates/models/export (README \"Models\")"
        )),
        other => OpError::permanent(other.to_string()),
    }
}

struct Row {
    code: String,
    horizon: u32,
    close: f64,
    q: [f64; 9],
    context_len: usize,
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = self.p.clone();
        let dir = PathBuf::from(&p.model);
        if !dir.is_dir() {
            return Err(OpError::skipped(format!(
                "model folder `{}` not found: export Chronos-Bolt with \
                 crates/models/export/chronos_bolt.py (README \"Models\")",
                p.model
            )));
        }
        let bars = inputs.concat("bars")?;
        let ds = days(ctx.ds);
        // Each code's closes up to ds, in date order; only codes that traded on ds.
        let mut series: BTreeMap<String, Vec<(i32, f64)>> = BTreeMap::new();
        if bars.num_rows() > 0 {
            let (codes, dates, closes) = (
                str_col(&bars, "code")?,
                date_col(&bars, "date")?,
                f64_col(&bars, "close")?,
            );
            for i in 0..bars.num_rows() {
                if codes.is_null(i) || dates.is_null(i) || closes.is_null(i) || dates.value(i) > ds
                {
                    continue;
                }
                let code = codes.value(i);
                if !p.codes.is_empty() && !p.codes.iter().any(|c| c == code) {
                    continue;
                }
                series
                    .entry(code.to_string())
                    .or_default()
                    .push((dates.value(i), closes.value(i)));
            }
        }
        let mut ctxs: Vec<(String, f64, Vec<f32>)> = Vec::new();
        let mut short = 0i64;
        for (code, mut v) in series {
            v.sort_by_key(|r| r.0);
            let Some(&(last, close)) = v.last() else {
                continue;
            };
            if last != ds || !(close.is_finite() && close > 0.0) {
                continue;
            }
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
        let rows = tokio::task::spawn_blocking(move || -> OpResult<Vec<Row>> {
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
                        out.push(Row {
                            code: code.clone(),
                            horizon: h,
                            close: *close,
                            q,
                            context_len: context.len(),
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
        let model_name = PathBuf::from(&self.p.model)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.p.model.clone());
        ctx.counters.add(
            &format!("inference_ms.{model_name}"),
            started.elapsed().as_millis() as i64,
        );
        let batch = forecasts_batch(&rows, ctx, &model_name)?;
        Ok(OutputBatches::new().with("forecasts", vec![batch]))
    }
}

fn forecasts_batch(rows: &[Row], ctx: &TaskContext, model: &str) -> OpResult<RecordBatch> {
    let n = rows.len();
    let ds = days(ctx.ds);
    let derived: Vec<Derived> = rows.iter().map(|r| derive(&r.q, r.close)).collect();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.code.as_str()),
        )),
        Arc::new(Date32Array::from(vec![ds; n])),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.horizon as i32),
        )),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| {
            days(target_date(ctx.calendar.as_ref(), ctx.ds, r.horizon))
        }))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.close))),
    ];
    for k in 0..9 {
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.q[k]),
        )));
    }
    let f = |g: fn(&Derived) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(derived.iter().map(g)))
    };
    cols.push(f(|d| d.median));
    cols.push(f(|d| d.expected_return));
    cols.push(f(|d| d.prob_up));
    cols.push(f(|d| d.prob_flat));
    cols.push(f(|d| d.prob_down));
    cols.push(f(|d| d.conf));
    cols.push(Arc::new(Int32Array::from_iter_values(
        rows.iter().map(|r| r.context_len as i32),
    )));
    cols.push(Arc::new(StringArray::from(vec![model; n])));
    Ok(RecordBatch::try_new(
        tables::chronos_forecasts().schema,
        cols,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdf_interpolates_between_quantiles_and_extends_past_the_ends() {
        let q = [90.0, 92.0, 94.0, 96.0, 100.0, 104.0, 106.0, 108.0, 110.0];
        let l: Vec<f64> = (1..=9).map(|k| f64::from(k) / 10.0).collect();
        assert!((quantile_cdf(&q, &l, 100.0) - 0.5).abs() < 1e-12);
        assert!((quantile_cdf(&q, &l, 102.0) - 0.55).abs() < 1e-12);
        assert!((quantile_cdf(&q, &l, 89.0) - 0.05).abs() < 1e-12);
        assert_eq!(quantile_cdf(&q, &l, 10.0), 0.0);
        assert_eq!(quantile_cdf(&q, &l, 1e6), 1.0);
    }

    #[test]
    fn probabilities_follow_the_quantiles_with_the_flat_band() {
        // Symmetric around the close: up = down, and they sum to one with flat.
        let q = [90.0, 92.0, 94.0, 96.0, 100.0, 104.0, 106.0, 108.0, 110.0];
        let d = derive(&q, 100.0);
        assert!((d.prob_up - d.prob_down).abs() < 1e-12);
        assert!((d.prob_up + d.prob_flat + d.prob_down - 1.0).abs() < 1e-12);
        // F(100.3) = 0.5 + 0.1*0.3/4; P(up) = 1 - that.
        assert!((d.prob_up - (0.5 - 0.0075)).abs() < 1e-12);
        assert_eq!(d.median, 100.0);
        assert!(d.expected_return.abs() < 1e-12);
        // Wide interval around a zero median: no confidence.
        assert_eq!(d.conf, 0.0);
        // Entirely above the close: almost surely up; a narrow band gives confidence.
        let q = [
            110.0, 110.1, 110.2, 110.3, 110.4, 110.5, 110.6, 110.7, 110.8,
        ];
        let d = derive(&q, 100.0);
        assert!(d.prob_up > 0.99 && d.prob_down == 0.0, "{d:?}");
        assert!(d.conf > 0.9, "{d:?}");
    }

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
