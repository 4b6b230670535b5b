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
//!
//! With `refit: weekly` and the optional `models` input (`ets_models`, fitted weekly by
//! `ets.fit`), a code whose newest model was fitted through a day before D, at most
//! `max_model_age_days` calendar days before D, is not searched again: the model's state is carried through the closes after the
//! fit ([`Model::update`]: same parameters and σ²) and forecast from there (`series.updated`).
//! Any other code is fitted on the day (`series.fitted`), so a missing or stale weekly fit
//! costs time, never a forecast; a stored row that is not a usable model is counted
//! `models.unusable` (and logged) and its code fitted on the day too. A model fitted through D itself is never used for D: re-running
//! a day after a later fit gives the same forecasts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::ets::{Model, Params, State, Trend};
use serde::Deserialize;

use super::quantiles::{QuantileRow, closes_as_of, quantile_forecasts_batch};
use crate::cols::{date_col, f64_col, str_col, typed};
use crate::common::dates::days;
use crate::common::parallel::map_chunked;
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
    /// `daily` (the default) fits every series every day; `weekly` updates the stored weekly
    /// models instead (faster; in the 2023 walk-forward it ranked worse: docs/quality.md).
    #[serde(default)]
    pub refit: Refit,
    /// With `refit: weekly`, the oldest model (calendar days from its last close to D) that is
    /// updated instead of refitted.
    #[serde(default = "default_max_model_age")]
    pub max_model_age_days: u32,
}

/// How often the parameters are searched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refit {
    /// Every series every day.
    #[default]
    Daily,
    /// On Sundays (`ets.fit`); weekdays carry the state through the new closes.
    Weekly,
}

pub(super) fn default_context() -> usize {
    250
}
pub(super) fn default_min_context() -> usize {
    60
}
fn default_max_model_age() -> u32 {
    10
}

/// The `with:` entries of the series both ETS operators take (`forecast.ets`, `ets.fit`).
pub(super) fn series_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::optional(
            "context_length",
            "usize",
            "250",
            "closes of history per series",
        ),
        ParamSpec::optional("min_context", "usize", "60", "fewer closes: no model"),
        ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
        ParamSpec::optional("workers", "usize", "0 (cores)", "series fitted at once"),
    ]
}

/// `min_context` must leave the model data to fit and fit within `context_length`.
pub(super) fn check_context(context_length: usize, min_context: usize) -> Result<(), ConfigError> {
    if min_context < 10 || context_length < min_context {
        return Err(ConfigError::new(
            "min_context",
            "min_context must be >= 10 and <= context_length",
        ));
    }
    Ok(())
}

/// Longest horizon accepted: an ETS forecast this far out is the trend and a wide interval.
pub const MAX_HORIZON: u32 = 60;

pub struct EtsForecast;

#[async_trait]
impl Operator for EtsForecast {
    fn kind(&self) -> &'static str {
        "forecast.ets"
    }
    /// 2: weekly models (`ets_models`) updated instead of refitted.
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "AutoETS quantile forecasts of log closes (embedded, no weights), batched over codes"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut specs = series_params();
        specs.extend([
            ParamSpec::optional(
                "horizons",
                "list<u32>",
                "[1, 3, 5]",
                "trading days ahead (<= 60)",
            ),
            ParamSpec::optional(
                "refit",
                "daily|weekly",
                "daily",
                "search the parameters every day, or update the weekly models (ets_models)",
            ),
            ParamSpec::optional(
                "max_model_age_days",
                "u32",
                "10",
                "with refit: weekly, the oldest model (days since its last close) updated instead of refitted",
            ),
        ]);
        specs
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            super::quantiles::closes_port(),
            InputPort::new(
                "models",
                tables::ets_models().schema,
                "weekly fits (ets.fit) to update instead of refitting",
            )
            .optional(),
        ]
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
        check_context(p.context_length, p.min_context)?;
        Ok(Box::new(Configured { p: Arc::new(p) }))
    }
}

struct Configured {
    p: Arc<EtsParams>,
}

/// One series to forecast: code, its base close, its closes (oldest first), and the weekly
/// model with how many of the newest closes came after its fit.
struct Series {
    code: String,
    close: f64,
    closes: Vec<f64>,
    stored: Option<(Model, usize, usize)>,
}

/// A series that could not be forecast: code, why.
type Failure = (String, String);
/// One series' rows (and whether a stored model was updated), or why it has none.
type Forecast = Result<(Vec<QuantileRow>, bool), Failure>;

/// Series fitted together ([`Model::fit_many`] runs their searches in lockstep); the unit of
/// work each thread takes.
pub(super) const GROUP: usize = 32;

/// The forecasts of a group of series, in order: a stored weekly model updated with the closes
/// since its fit, the others fitted together.
fn forecast_group(group: &[Series], p: &EtsParams) -> Vec<Forecast> {
    let to_fit: Vec<&[f64]> = group
        .iter()
        .filter(|s| s.stored.is_none())
        .map(|s| s.closes.as_slice())
        .collect();
    let mut fits = Model::fit_many(&to_fit).into_iter();
    group
        .iter()
        .map(|s| {
            let fail = |e: krxflow_models::ModelError| (s.code.clone(), e.to_string());
            let (model, context_len, updated) = match s.stored {
                Some((m, seen, new)) => {
                    let later = &s.closes[s.closes.len() - new..];
                    (m.update(later).map_err(fail)?, seen + new, true)
                }
                None => {
                    let fitted = fits.next().ok_or_else(|| {
                        (s.code.clone(), "no fit returned for the series".to_string())
                    })?;
                    (fitted.map_err(fail)?, s.closes.len(), false)
                }
            };
            forecast_rows(s, &model, context_len, p)
                .map(|rows| (rows, updated))
                .map_err(fail)
        })
        .collect()
}

/// One series' rows: the model's quantiles at each horizon.
fn forecast_rows(
    s: &Series,
    model: &Model,
    context_len: usize,
    p: &EtsParams,
) -> krxflow_models::ModelResult<Vec<QuantileRow>> {
    let steps = p.horizons.iter().copied().max().unwrap_or(1) as usize;
    let f = model.forecast(steps)?;
    Ok(p.horizons
        .iter()
        .map(|&h| QuantileRow {
            code: s.code.clone(),
            horizon: h,
            close: s.close,
            q: f.quantiles[h as usize - 1],
            context_len,
            model: format!("ets:{}", f.model),
        })
        .collect())
}

/// Each code's newest usable model from `ets_models`: fitted through a day before `ds` and no
/// more than `max_age` calendar days before it; and how many rows in that window do not
/// describe a model (an unknown model name, a non-finite number, a negative σ²): those are
/// left out, counted and logged, and their codes fitted on the day.
fn stored_models(b: &RecordBatch, ds: NaiveDate, max_age: u32) -> OpResult<(StoredModels, i64)> {
    let mut out = StoredModels::new();
    let mut unusable = 0i64;
    if b.num_rows() == 0 || max_age == 0 {
        return Ok((out, unusable));
    }
    let (to, from) = (days(ds), days(ds) - max_age as i32);
    let code = str_col(b, "code")?;
    let through = date_col(b, "fitted_through")?;
    let name = str_col(b, "model")?;
    let col = |c: &str| f64_col(b, c);
    let (alpha, beta, phi) = (col("alpha")?, col("beta")?, col("phi")?);
    let (level, slope, sigma2) = (col("level")?, col("slope")?, col("sigma2")?);
    let closes = typed::<Int64Array>(b, "closes", "Int64")?;
    for i in 0..b.num_rows() {
        let t = through.value(i);
        if t >= to || t < from || code.is_null(i) {
            continue;
        }
        let Some(trend) = Trend::from_model_name(name.value(i)) else {
            tracing::warn!(
                code = code.value(i),
                model = name.value(i),
                "ets_models: unknown model"
            );
            unusable += 1;
            continue;
        };
        let m = Model {
            trend,
            params: Params {
                alpha: alpha.value(i),
                beta: beta.value(i),
                phi: phi.value(i),
            },
            state: State {
                level: level.value(i),
                slope: slope.value(i),
            },
            sigma2: sigma2.value(i),
        };
        let numbers = [
            m.params.alpha,
            m.params.beta,
            m.params.phi,
            m.state.level,
            m.state.slope,
            m.sigma2,
        ];
        if !numbers.iter().all(|v| v.is_finite()) || m.sigma2 < 0.0 {
            tracing::warn!(
                code = code.value(i),
                ?numbers,
                "ets_models: not a usable model"
            );
            unusable += 1;
            continue;
        }
        let seen = usize::try_from(closes.value(i)).unwrap_or(0);
        match out.get(code.value(i)) {
            Some(&(held, _, _)) if held >= t => {}
            _ => {
                out.insert(code.value(i).to_string(), (t, m, seen));
            }
        }
    }
    Ok((out, unusable))
}

/// Code -> (fitted_through, the model, closes it was fitted on).
type StoredModels = HashMap<String, (i32, Model, usize)>;

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.batches("bars")?;
        let p = self.p.clone();
        let models = match (p.refit, inputs.has("models")) {
            (Refit::Weekly, true) => {
                let (models, unusable) =
                    stored_models(&inputs.concat("models")?, ctx.ds, p.max_model_age_days)?;
                ctx.counters.add("models.unusable", unusable);
                models
            }
            _ => HashMap::new(),
        };
        let mut series: Vec<Series> = Vec::new();
        let mut short = 0i64;
        for (code, v) in closes_as_of(bars, ctx.ds, &p.codes)? {
            let Some(&(_, close)) = v.last() else {
                continue;
            };
            // A weekly model is updated with the closes after its fit.
            let stored = models.get(&code).map(|&(through, m, seen)| {
                let new = v.len() - v.partition_point(|r| r.0 <= through);
                (m, seen, new)
            });
            if stored.is_none() && v.len() < p.min_context {
                short += 1;
                continue;
            }
            let tail = &v[v.len().saturating_sub(p.context_length)..];
            let stored = stored.filter(|&(_, _, new)| new <= tail.len());
            series.push(Series {
                code,
                close,
                closes: tail.iter().map(|r| r.1).collect(),
                stored,
            });
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
        let q = p.clone();
        let results = tokio::task::spawn_blocking(move || {
            let groups: Vec<&[Series]> = series.chunks(GROUP).collect();
            map_chunked(&groups, q.workers, &|| cancel.is_cancelled(), |g| {
                forecast_group(g, &q)
            })
        })
        .await
        .map_err(|e| OpError::permanent(format!("ETS thread: {e}")))??
        .into_iter()
        .flatten();
        let (mut rows, mut failed, mut updated) = (Vec::new(), 0i64, 0i64);
        let mut forecast = 0i64;
        for r in results {
            match r {
                Ok((v, was_updated)) => {
                    rows.extend(v);
                    forecast += 1;
                    updated += i64::from(was_updated);
                }
                Err((code, why)) => {
                    tracing::warn!(code, why, "forecast.ets: series not forecast");
                    failed += 1;
                }
            }
        }
        ctx.counters.add("skipped.fit_failed", failed);
        ctx.counters.add("series", forecast);
        ctx.counters.add("series.updated", updated);
        ctx.counters.add("series.fitted", forecast - updated);
        ctx.inference("ets", started.elapsed());
        let batch = quantile_forecasts_batch(tables::ets_forecasts().schema, &rows, ctx)?;
        Ok(OutputBatches::new().with("forecasts", vec![batch]))
    }

    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &std::collections::BTreeMap<String, NaiveDate>,
        _calendar: &dyn krxflow_core::Calendar,
    ) -> Option<NaiveDate> {
        // Only the weekly models young enough to be used (none with the daily default: a
        // model fitted through ds is never used for ds, so the scan skips every stored file);
        // the closes are read whole.
        let age = match self.p.refit {
            Refit::Weekly => i64::from(self.p.max_model_age_days),
            Refit::Daily => 0,
        };
        (port == "models").then(|| ds - chrono::Duration::days(age))
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
        run_with(bars, None, ds, with).await.0
    }

    /// The operator on `bars` and, when given, stored `models`; its counters.
    async fn run_with(
        bars: RecordBatch,
        models: Option<RecordBatch>,
        ds: chrono::NaiveDate,
        with: serde_json::Value,
    ) -> (
        OpResult<OutputBatches>,
        std::collections::BTreeMap<String, i64>,
    ) {
        let op = EtsForecast.configure(&with).expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars]);
        if let Some(m) = models {
            inputs.insert("models", "ets_models", m.schema(), vec![m]);
        }
        let c = ctx(ds);
        let out = op.run(&c, inputs).await;
        (out, c.counters.snapshot())
    }

    /// `ets.fit`'s models for a run on `ds` over `bars`.
    async fn fit(bars: RecordBatch, ds: chrono::NaiveDate) -> RecordBatch {
        let op = super::super::ets_fit::EtsFit
            .configure(&serde_json::json!({}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars]);
        let out = op.run(&ctx(ds), inputs).await.expect("fit");
        out.batches("models").expect("port")[0].clone()
    }

    #[tokio::test]
    async fn a_weekly_model_is_updated_with_the_closes_after_its_fit() {
        // Fitted on Sunday 06-23 through Friday 06-21; forecast on Friday 06-28.
        let (sunday, ds) = (d("2024-06-23"), d("2024-06-28"));
        let all = bars(&["000001", "000002"], 130, ds);
        let models = fit(all.clone(), sunday).await;
        assert_eq!(models.num_rows(), 2);
        assert_eq!(
            date_col(&models, "fitted_through").unwrap().value(0),
            days(d("2024-06-21"))
        );
        // The default searches the parameters every day, stored models or not.
        let (_, counters) =
            run_with(all.clone(), Some(models.clone()), ds, serde_json::json!({})).await;
        assert_eq!(
            (counters["series.updated"], counters["series.fitted"]),
            (0, 2)
        );
        let weekly = serde_json::json!({"refit": "weekly"});
        let (out, counters) = run_with(all.clone(), Some(models.clone()), ds, weekly).await;
        let out = out.expect("run");
        assert_eq!(
            (counters["series.updated"], counters["series.fitted"]),
            (2, 0)
        );
        // What the model gives after the five closes that followed its fit.
        let series = closes_as_of(std::slice::from_ref(&all), ds, &[]).expect("closes");
        let closes: Vec<f64> = series["000001"].iter().map(|r| r.1).collect();
        let (stored, unusable) = stored_models(&models, ds, 10).expect("models");
        assert_eq!(unusable, 0);
        let (_, m, seen) = stored["000001"];
        assert_eq!(seen, 125, "fitted on the closes through 06-21");
        let expected = m
            .update(&closes[closes.len() - 5..])
            .and_then(|m| m.forecast(5))
            .expect("update");
        let b = &out.batches("forecasts").expect("port")[0];
        assert_eq!(str_col(b, "code").unwrap().value(0), "000001");
        assert_eq!(
            f64_col(b, "q50").unwrap().value(0),
            expected.quantiles[0][4]
        );
        assert_eq!(
            b.column_by_name("context_len").map(|c| c.len()),
            Some(b.num_rows())
        );
        // Close to what a fit on the day gives: a small part of the interval's width.
        let fresh = run(all, ds, serde_json::json!({})).await.expect("fresh");
        let fresh = &fresh.batches("forecasts").expect("port")[0];
        let (a, f) = (f64_col(b, "q50").unwrap(), f64_col(fresh, "q50").unwrap());
        let width =
            f64_col(fresh, "q90").unwrap().value(0) - f64_col(fresh, "q10").unwrap().value(0);
        assert!((a.value(0) - f.value(0)).abs() < 0.1 * width);
    }

    #[tokio::test]
    async fn a_model_fitted_through_the_day_or_too_old_is_not_used_for_it() {
        let ds = d("2024-06-28");
        let all = bars(&["000001"], 130, ds);
        let fresh = run(all.clone(), ds, serde_json::json!({}))
            .await
            .expect("fresh");
        // Fitted later (through ds itself): re-running ds gives what it gave before.
        let weekly = || serde_json::json!({"refit": "weekly"});
        let later = fit(all.clone(), d("2024-06-30")).await;
        let (out, counters) = run_with(all.clone(), Some(later), ds, weekly()).await;
        assert_eq!(
            out.expect("run").batches("forecasts"),
            fresh.batches("forecasts")
        );
        assert_eq!(counters["series.fitted"], 1);
        // Fitted 3 weeks before: too old for the default 10 days, fitted on the day.
        let old = fit(all.clone(), d("2024-06-09")).await;
        let (out, counters) = run_with(all.clone(), Some(old.clone()), ds, weekly()).await;
        assert_eq!(
            out.expect("run").batches("forecasts"),
            fresh.batches("forecasts")
        );
        assert_eq!(counters["series.updated"], 0);
        // Allowed with a longer limit.
        let with = serde_json::json!({"refit": "weekly", "max_model_age_days": 30});
        let (_, counters) = run_with(all, Some(old), ds, with).await;
        assert_eq!(counters["series.updated"], 1);
    }

    #[tokio::test]
    async fn a_stored_row_that_is_not_a_model_is_counted_and_its_code_fitted_on_the_day() {
        let (sunday, ds) = (d("2024-06-23"), d("2024-06-28"));
        let all = bars(&["000001", "000002"], 130, ds);
        let models = fit(all.clone(), sunday).await;
        // 000001's sigma2 becomes NaN, as a hand-edited or corrupted table could hold.
        let i = models.schema().index_of("sigma2").expect("sigma2");
        let mut cols = models.columns().to_vec();
        let sigma2 = f64_col(&models, "sigma2").unwrap();
        cols[i] = Arc::new(Float64Array::from_iter_values(
            (0..models.num_rows()).map(|r| if r == 0 { f64::NAN } else { sigma2.value(r) }),
        ));
        let bad = RecordBatch::try_new(models.schema(), cols).expect("batch");
        let weekly = serde_json::json!({"refit": "weekly"});
        let (out, counters) = run_with(all, Some(bad), ds, weekly).await;
        let out = out.expect("run");
        assert_eq!(out.batches("forecasts").expect("port")[0].num_rows(), 6);
        assert_eq!(
            (
                counters["models.unusable"],
                counters["series.updated"],
                counters["series.fitted"]
            ),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn ets_fit_fits_only_codes_still_trading_and_counts_the_rest() {
        let sunday = d("2024-06-23");
        let trading = bars(&["000001", "000002"], 130, d("2024-06-21"));
        // A code whose last bar is a week older, and one too short to fit.
        let stopped = bars(&["000003"], 130, d("2024-06-14"));
        let short = bars(&["000004"], 20, d("2024-06-21"));
        let all = arrow::compute::concat_batches(&trading.schema(), [&trading, &stopped, &short])
            .expect("concat");
        let op = super::super::ets_fit::EtsFit
            .configure(&serde_json::json!({}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_daily", all.schema(), vec![all]);
        let c = ctx(sunday);
        let out = op.run(&c, inputs).await.expect("fit");
        let m = &out.batches("models").expect("port")[0];
        let codes: Vec<&str> = (0..m.num_rows())
            .map(|i| str_col(m, "code").unwrap().value(i))
            .collect();
        assert_eq!(codes, ["000001", "000002"]);
        let n = c.counters.snapshot();
        assert_eq!(
            (
                n["fitted"],
                n["skipped.not_trading"],
                n["skipped.short_history"]
            ),
            (2, 1, 1)
        );
        assert_eq!(m.schema(), tables::ets_models().schema);
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
    fn the_daily_default_reads_no_stored_model_and_weekly_reads_only_young_ones() {
        let cal = WeekdayCalendar::default();
        let ds = d("2024-06-28");
        let read = |with: serde_json::Value| {
            let op = EtsForecast.configure(&with).expect("params");
            let w = std::collections::BTreeMap::new();
            (
                op.read_from("models", ds, &w, &cal),
                op.read_from("bars", ds, &w, &cal),
            )
        };
        assert_eq!(read(serde_json::json!({})), (Some(ds), None));
        let weekly = read(serde_json::json!({"refit": "weekly"}));
        assert_eq!(weekly, (Some(d("2024-06-18")), None));
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
