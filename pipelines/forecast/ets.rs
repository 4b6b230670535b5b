//! `forecast.ets`: AutoETS quantile forecasts of each code's close (the embedded member: no
//! downloaded weights), batched over codes, written to `ets_forecasts`.
//!
//! For day D, code c's series is its last `context_length` closes dated <= D (the engine reads
//! `ohlcv_daily` as of D: no look-ahead); only codes with a bar on D are forecast. AutoETS
//! (additive error, no/additive/damped trend, by AICc) is fitted to the log closes; step h of
//! its Gaussian forecast gives the nine quantile prices (`krxflow_models::ets`). Everything
//! else (median, expected_return, up/flat/down with the ±0.3% band, conf) is derived from the
//! quantiles exactly as for Chronos ([`super::quantiles::derive`]), so members are comparable.
//!
//! A series the model cannot fit is left out and counted `skipped.fit_failed`; one with fewer
//! than `min_context` closes is counted `skipped.short_history`.

use std::sync::Arc;

use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::quantiles::{QuantileRow, closes_as_of, quantile_forecasts_batch};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtsParams {
    #[serde(default = "default_context")]
    pub context_length: usize,
    #[serde(default = "default_min_context")]
    pub min_context: usize,
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    #[serde(default)]
    pub codes: Vec<String>,
    /// Series fitted at once (0 = cores).
    #[serde(default)]
    pub workers: usize,
}

fn default_context() -> usize {
    250
}
fn default_min_context() -> usize {
    60
}

/// Longest horizon accepted: an ETS forecast this far out is the trend and a wide interval.
pub const MAX_HORIZON: u32 = 60;

pub struct EtsForecast;

#[async_trait]
impl Operator for EtsForecast {
    fn kind(&self) -> &'static str {
        "forecast.ets"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "AutoETS quantile forecasts of log closes (embedded, no weights), batched over codes"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "context_length",
                "usize",
                "250",
                "closes of history per series",
            ),
            ParamSpec::optional("min_context", "usize", "60", "fewer closes: no forecast"),
            ParamSpec::optional(
                "horizons",
                "list<u32>",
                "[1, 3, 5]",
                "trading days ahead (<= 60)",
            ),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional("workers", "usize", "0 (cores)", "series fitted at once"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![super::quantiles::closes_port()]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::ets_forecasts(), "forecasts", WriteMode::Merge)
                .doc("one row per code, base date and horizon"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: EtsParams = parse_params(params)?;
        if p.horizons.is_empty() || p.horizons.contains(&0) {
            return Err(ConfigError::new("horizons", "must list horizons >= 1"));
        }
        if let Some(h) = p.horizons.iter().find(|h| **h > MAX_HORIZON) {
            return Err(ConfigError::new(
                "horizons",
                format!("horizon {h} is not supported: at most {MAX_HORIZON} trading days"),
            ));
        }
        if p.min_context < 10 || p.context_length < p.min_context {
            return Err(ConfigError::new(
                "min_context",
                "min_context must be >= 10 and <= context_length",
            ));
        }
        Ok(Box::new(Configured { p: Arc::new(p) }))
    }
}

struct Configured {
    p: Arc<EtsParams>,
}

/// One series to fit: code, its base close, its closes.
type Series = (String, f64, Vec<f64>);
/// A series that could not be forecast: code, why.
type Failure = (String, String);
/// One series' rows, or why it has none.
type Fitted = Result<Vec<QuantileRow>, Failure>;

/// Fits every series on `workers` threads; rows in code order, failures as (code, why).
fn fit_all(
    series: Vec<Series>,
    p: &EtsParams,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> OpResult<(Vec<QuantileRow>, Vec<Failure>)> {
    let steps = p.horizons.iter().copied().max().unwrap_or(1) as usize;
    let workers = match p.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(series.len().max(1));
    let chunk = series.len().div_ceil(workers).max(1);
    let results: Vec<Vec<Fitted>> = std::thread::scope(|s| {
        let handles: Vec<_> = series
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .take_while(|_| !cancelled())
                        .map(|(code, close, closes)| {
                            let f = krxflow_models::ets::forecast(closes, steps)
                                .map_err(|e| (code.clone(), e.to_string()))?;
                            Ok(p.horizons
                                .iter()
                                .map(|&h| QuantileRow {
                                    code: code.clone(),
                                    horizon: h,
                                    close: *close,
                                    q: f.quantiles[h as usize - 1],
                                    context_len: closes.len(),
                                    model: format!("ets:{}", f.model),
                                })
                                .collect())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if cancelled() {
        return Err(OpError::Cancelled);
    }
    let (mut rows, mut failed) = (Vec::new(), Vec::new());
    for r in results.into_iter().flatten() {
        match r {
            Ok(v) => rows.extend(v),
            Err(f) => failed.push(f),
        }
    }
    Ok((rows, failed))
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.concat("bars")?;
        let p = self.p.clone();
        let mut series: Vec<Series> = Vec::new();
        let mut short = 0i64;
        for (code, v) in closes_as_of(&bars, ctx.ds, &p.codes)? {
            let Some(&(_, close)) = v.last() else {
                continue;
            };
            if v.len() < p.min_context {
                short += 1;
                continue;
            }
            let tail = &v[v.len().saturating_sub(p.context_length)..];
            series.push((code, close, tail.iter().map(|r| r.1).collect()));
        }
        ctx.counters.add("skipped.short_history", short);
        if series.is_empty() {
            return Err(OpError::skipped(format!(
                "no code has a close on {} and {} closes of history to forecast from",
                ctx.ds, p.min_context
            )));
        }
        let cancel = ctx.cancel.clone();
        let started = std::time::Instant::now();
        let (rows, failed) =
            tokio::task::spawn_blocking(move || fit_all(series, &p, &|| cancel.is_cancelled()))
                .await
                .map_err(|e| OpError::permanent(format!("ETS thread: {e}")))??;
        for (code, why) in &failed {
            tracing::warn!(code, why, "forecast.ets: series not forecast");
        }
        ctx.counters.add("skipped.fit_failed", failed.len() as i64);
        ctx.counters
            .add("series", (rows.len() / self.p.horizons.len().max(1)) as i64);
        ctx.inference("ets", started.elapsed());
        let batch = quantile_forecasts_batch(tables::ets_forecasts().schema, &rows, ctx)?;
        Ok(OutputBatches::new().with("forecasts", vec![batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cols::{date_col, f64_col, str_col};
    use crate::common::dates::days;
    use crate::testutil::d;
    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
    use krxflow_core::{Calendar, WeekdayCalendar};

    /// `n` weekday bars per code ending on `last`, a gentle walk per code.
    fn bars(codes: &[&str], n: usize, last: chrono::NaiveDate) -> RecordBatch {
        let cal = WeekdayCalendar::default();
        let mut dates = vec![last];
        while dates.len() < n {
            let prev = cal.prev_trading_day(dates[dates.len() - 1]);
            dates.push(prev);
        }
        dates.reverse();
        let (mut c, mut dt, mut px) = (Vec::new(), Vec::new(), Vec::new());
        for (k, code) in codes.iter().enumerate() {
            for (i, day) in dates.iter().enumerate() {
                c.push(code.to_string());
                dt.push(days(*day));
                let i = i as f64;
                px.push(1000.0 * (1.0 + k as f64) * (0.002 * i + 0.01 * (i * 0.7).sin()).exp());
            }
        }
        let m = c.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(c)),
            Arc::new(Date32Array::from(dt)),
            Arc::new(Float64Array::from(px.clone())),
            Arc::new(Float64Array::from(px.clone())),
            Arc::new(Float64Array::from(px.clone())),
            Arc::new(Float64Array::from(px)),
            Arc::new(Int64Array::from(vec![1000i64; m])),
            Arc::new(StringArray::from(vec!["test"; m])),
        ];
        RecordBatch::try_new(tables::ohlcv_daily().schema, cols).expect("bars")
    }

    fn ctx(ds: chrono::NaiveDate) -> TaskContext {
        crate::testutil::ctx(ds)
    }

    async fn run(
        bars: RecordBatch,
        ds: chrono::NaiveDate,
        with: serde_json::Value,
    ) -> OpResult<OutputBatches> {
        let op = EtsForecast.configure(&with).expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars]);
        op.run(&ctx(ds), inputs).await
    }

    #[tokio::test]
    async fn forecasts_every_code_and_horizon_with_ordered_quantiles() {
        let ds = d("2024-06-28");
        let out = run(
            bars(&["000001", "000002"], 120, ds),
            ds,
            serde_json::json!({}),
        )
        .await
        .expect("run");
        let b = &out.batches("forecasts").expect("port")[0];
        assert_eq!(b.num_rows(), 6);
        assert_eq!(b.schema(), tables::ets_forecasts().schema);
        let (q10, q50, q90) = (
            f64_col(b, "q10").unwrap(),
            f64_col(b, "q50").unwrap(),
            f64_col(b, "q90").unwrap(),
        );
        let (up, flat, down) = (
            f64_col(b, "prob_up").unwrap(),
            f64_col(b, "prob_flat").unwrap(),
            f64_col(b, "prob_down").unwrap(),
        );
        for i in 0..b.num_rows() {
            assert!(q10.value(i) < q50.value(i) && q50.value(i) < q90.value(i));
            assert!((up.value(i) + flat.value(i) + down.value(i) - 1.0).abs() < 1e-9);
        }
        assert!(str_col(b, "model").unwrap().value(0).starts_with("ets:A"));
        // Target dates are trading days after the base date.
        let target = date_col(b, "target_date").unwrap();
        assert_eq!(target.value(0), days(d("2024-07-01")));
    }

    #[tokio::test]
    async fn rows_after_ds_change_nothing() {
        let ds = d("2024-06-28");
        let base = run(bars(&["000001"], 120, ds), ds, serde_json::json!({}))
            .await
            .expect("run");
        // The same history plus 10 later days: the rows after ds are not used.
        let later = bars(&["000001"], 130, d("2024-07-12"));
        let out = run(later, ds, serde_json::json!({})).await.expect("run");
        assert_eq!(base.batches("forecasts"), out.batches("forecasts"));
    }

    #[tokio::test]
    async fn short_histories_are_counted_and_nothing_to_do_is_skipped() {
        let ds = d("2024-06-28");
        let err = run(bars(&["000001"], 30, ds), ds, serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, OpError::Skipped(_)), "{err}");
        assert!(err.to_string().contains("60 closes"), "{err}");
    }

    #[test]
    fn bad_params_name_the_field() {
        let e = EtsForecast
            .configure(&serde_json::json!({"horizons": [1, 61]}))
            .err()
            .expect("h61");
        assert_eq!(e.field, "horizons");
        let e = EtsForecast
            .configure(&serde_json::json!({"min_context": 5}))
            .err()
            .expect("min");
        assert_eq!(e.field, "min_context");
    }
}
