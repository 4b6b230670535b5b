//! `linear.train`: one pooled ridge per horizon on every labelled feature row through the
//! run's date (labels `close[t+h] / close[t] − 1` over each code's own bars, as ranks among the
//! date's codes), registered in `model_registry` with its card in the artifact store.
//!
//! The return line and the residual quantiles are taken on the newest `map_days` labelled
//! dates, in sample: a ridge of a few dozen coefficients on tens of thousands of rows hardly
//! fits its noise, and unlike LightGBM's trees it has no validation rounds to stop on.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;
use serde_json::Value;

use super::model::{FitRows, LinearModel, residual_quantiles};
use super::{LinearCard, model_name};
use crate::common::card::sha256_hex;
use crate::common::dates::{date_of, days};
use crate::lgbm::target::{ReturnMap, centred_rank};
use crate::lgbm::train::{age_weights, labels_for, train_inputs, training_batches};
use crate::lgbm::train_rows::RegistryRows;
use crate::lgbm::{Closes, FeatureRows, default_features, feature_hash, validate_features};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// The feature list (default: every documented feature).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The ridge penalty per unit of row weight.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// A row weighs half as much every `half_life_days` trading dates back.
    #[serde(default = "default_half_life")]
    pub half_life_days: f64,
    /// The newest dates the return line and the residuals are taken on.
    #[serde(default = "default_map_days")]
    pub map_days: usize,
    /// Fewer labelled rows for a horizon: no model for it.
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
    #[serde(default)]
    pub codes: Vec<String>,
}

fn default_alpha() -> f64 {
    0.001
}
fn default_half_life() -> f64 {
    500.0
}
fn default_map_days() -> usize {
    150
}
fn default_min_rows() -> usize {
    200
}

impl TrainParams {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::common::horizons::check(&self.horizons)?;
        if let Some(f) = &self.features {
            validate_features(f).map_err(|m| ConfigError::new("features", m))?;
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(ConfigError::new("alpha", "must be a finite number >= 0"));
        }
        if !(self.half_life_days.is_finite() && self.half_life_days > 0.0) {
            return Err(ConfigError::new("half_life_days", "must be > 0"));
        }
        if self.map_days < 5 {
            return Err(ConfigError::new("map_days", "must be at least 5 dates"));
        }
        if self.min_rows < 10 {
            return Err(ConfigError::new("min_rows", "must be at least 10"));
        }
        Ok(())
    }
}

pub struct LinearTrain;

struct Configured {
    p: TrainParams,
}

#[async_trait]
impl Operator for LinearTrain {
    fn kind(&self) -> &'static str {
        "linear.train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "pooled ridge rankers per horizon on the features, through the run's date"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional("horizons", "list<u32>", "[1, 3, 5]", "horizons to fit"),
            ParamSpec::optional("features", "list<string>", "all of FEATURES", "features"),
            ParamSpec::optional("alpha", "f64", "0.001", "ridge penalty per unit of weight"),
            ParamSpec::optional("half_life_days", "f64", "500", "row weight half-life"),
            ParamSpec::optional("map_days", "usize", "150", "dates of the return line"),
            ParamSpec::optional("min_rows", "usize", "200", "fewest labelled rows"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        train_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::model_registry(), "registry", WriteMode::Merge)
                .doc("one row per trained model"),
        ]
    }
    fn configure(&self, params: &Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: TrainParams = parse_params(params)?;
        p.validate()?;
        Ok(Box::new(Configured { p }))
    }
}

/// One horizon's fitted model, before it is stored.
struct Fitted {
    horizon: u32,
    train_from: i32,
    train_rows: usize,
    map_from: i32,
    fit: LinearModel,
}

/// Fits horizon `h` on `rows`, its raw labels `raw`: `Err(reason)` counted as skipped.
fn fit_horizon(
    p: &TrainParams,
    rows: &FeatureRows,
    raw: &[Option<f64>],
    h: u32,
) -> Result<Fitted, &'static str> {
    let ranks = centred_rank(&rows.dates, raw);
    let mut labelled: Vec<usize> = (0..rows.len()).filter(|&i| ranks[i].is_some()).collect();
    if labelled.len() < p.min_rows {
        return Err("too_few_rows");
    }
    labelled
        .sort_by(|&a, &b| (rows.dates[a], &rows.codes[a]).cmp(&(rows.dates[b], &rows.codes[b])));
    let weight: Vec<f64> = age_weights(&labelled, &labelled, &rows.dates, p.half_life_days)
        .into_iter()
        .map(f64::from)
        .collect();
    let label: Vec<f64> = labelled.iter().filter_map(|&i| ranks[i]).collect();
    let data = FitRows {
        x: &rows.x,
        n_features: rows.n_features,
        rows: &labelled,
        label: &label,
        weight: &weight,
    };
    let mut fit = LinearModel::fit(&data, p.alpha).ok_or("singular")?;
    // The newest `map_days` dates: their scores priced by what a rank paid on them.
    let mut distinct: Vec<i32> = labelled.iter().map(|&i| rows.dates[i]).collect();
    distinct.dedup();
    let map_from = distinct[distinct.len().saturating_sub(p.map_days)];
    let recent: Vec<usize> = labelled
        .iter()
        .copied()
        .filter(|&i| rows.dates[i] >= map_from)
        .collect();
    let dates: Vec<i32> = recent.iter().map(|&i| rows.dates[i]).collect();
    let scores: Vec<f64> = recent.iter().map(|&i| fit.score(rows.row(i))).collect();
    let returns: Vec<f64> = recent.iter().map(|&i| raw[i].unwrap_or(f64::NAN)).collect();
    fit.return_map = ReturnMap::fit(&dates, &scores, &returns).ok_or("no_return_line")?;
    let mut residuals: Vec<f64> = scores
        .iter()
        .zip(&returns)
        .map(|(s, r)| r - fit.return_map.apply(*s))
        .filter(|e| e.is_finite())
        .collect();
    fit.residuals = residual_quantiles(&mut residuals);
    Ok(Fitted {
        horizon: h,
        train_from: rows.dates[labelled[0]],
        train_rows: labelled.len(),
        map_from,
        fit,
    })
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = self.p.clone();
        let store = ctx
            .store
            .clone()
            .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
        let (features, bars) = training_batches(&inputs, ctx.ds)?;
        let names = p.features.clone().unwrap_or_else(default_features);
        let names2 = names.clone();
        let p2 = p.clone();
        let (fitted, skipped, n_rows) = tokio::task::spawn_blocking(move || -> OpResult<_> {
            let closes = Closes::from_bars(&bars)?;
            let rows = FeatureRows::from_batch(&features, &names2, |code, _| {
                p2.codes.is_empty() || p2.codes.iter().any(|c| c == code)
            })?;
            let labels = labels_for(&rows, &closes, &p2.horizons);
            let mut fitted = Vec::new();
            let mut skipped: BTreeMap<&'static str, i64> = BTreeMap::new();
            for (&h, raw) in &labels {
                match fit_horizon(&p2, &rows, raw, h) {
                    Ok(f) => fitted.push(f),
                    Err(why) => *skipped.entry(why).or_default() += 1,
                }
            }
            Ok((fitted, skipped, rows.len()))
        })
        .await
        .map_err(|e| OpError::permanent(format!("training thread: {e}")))??;
        ctx.check_cancelled()?;
        ctx.counters.add("feature_rows", n_rows as i64);
        for (why, n) in &skipped {
            ctx.counters.add(&format!("skipped.{why}"), *n);
        }
        if fitted.is_empty() {
            return Err(OpError::skipped(format!(
                "no horizon has {} labelled feature rows through {} ({}): nothing trained",
                p.min_rows,
                ctx.ds,
                skipped
                    .iter()
                    .map(|(w, n)| format!("{w}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let now_ms = Utc::now().timestamp_millis();
        let fhash = feature_hash(&names);
        let mut reg = RegistryRows::default();
        for f in fitted {
            let name = model_name(f.horizon);
            let fit_json = serde_json::to_vec(&f.fit)
                .map_err(|e| OpError::permanent(format!("model: {e}")))?;
            let version = format!(
                "{}-{}",
                ctx.ds.format("%Y%m%d"),
                &sha256_hex(&fit_json)[..10]
            );
            let dir = format!("models/{name}/{version}");
            let card = LinearCard {
                model: name.clone(),
                horizon: f.horizon,
                version: version.clone(),
                trained_through: ctx.ds,
                features: names.clone(),
                feature_hash: fhash.clone(),
                alpha: p.alpha,
                half_life_days: p.half_life_days,
                train_from: date_of(f.train_from),
                train_rows: f.train_rows,
                map_from: date_of(f.map_from),
                fit: f.fit,
            };
            let bytes = serde_json::to_vec_pretty(&card)
                .map_err(|e| OpError::permanent(format!("model card: {e}")))?;
            let hash = sha256_hex(&bytes);
            store.put(&format!("{dir}/model.json"), bytes).await?;
            ctx.record_artifact(format!("{name}:{hash}"));
            let summary = serde_json::json!({
                "train_rows": card.train_rows,
                "train_from": card.train_from,
                "feature_hash": card.feature_hash,
                "alpha": card.alpha,
                "rank_slope": card.fit.return_map.slope,
            });
            reg.push(
                &name,
                &version,
                &dir,
                &hash,
                days(ctx.ds),
                now_ms,
                summary.to_string(),
            );
        }
        ctx.counters.add("models", reg.model.len() as i64);
        Ok(OutputBatches::new().with("registry", vec![reg.batch("linear")?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Result<TrainParams, ConfigError> {
        let p: TrainParams = parse_params(&v)?;
        p.validate().map(|_| p)
    }

    #[test]
    fn bad_params_name_the_field() {
        assert!(params(serde_json::json!({})).is_ok());
        for (v, field) in [
            (serde_json::json!({"alpha": -1.0}), "alpha"),
            (serde_json::json!({"horizons": []}), "horizons"),
            (serde_json::json!({"half_life_days": 0.0}), "half_life_days"),
            (serde_json::json!({"map_days": 2}), "map_days"),
            (serde_json::json!({"features": ["close"]}), "features"),
        ] {
            let e = params(v).expect_err(field);
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    /// Five codes over 300 dates whose next-day return follows `ret_1d`'s rank: the model
    /// must order them by it, price a rank at about what it paid, and refuse too few rows.
    #[test]
    fn a_planted_cross_sectional_rule_is_learned_and_priced() {
        let names = vec!["ret_1d".to_string(), "rsi14".to_string()];
        let (n_dates, codes) = (300, ["A", "B", "C", "D", "E"]);
        let mut rows = FeatureRows {
            codes: Vec::new(),
            dates: Vec::new(),
            x: Vec::new(),
            n_features: 2,
        };
        let mut raw = Vec::new();
        for d in 0..n_dates {
            for (k, c) in codes.iter().enumerate() {
                let signal = (((d * 7 + k * 13) % 11) as f64 - 5.0) / 100.0;
                let noise = (((d * 31 + k * 17) % 23) as f64 - 11.0) / 2000.0;
                rows.codes.push(c.to_string());
                rows.dates.push(d as i32);
                rows.x.extend([signal, 50.0 + noise * 100.0]);
                raw.push(Some(0.3 * signal + noise));
            }
        }
        let p = params(serde_json::json!({ "features": names })).expect("params");
        let f = fit_horizon(&p, &rows, &raw, 1).expect("fit");
        assert_eq!(f.train_rows, n_dates * codes.len());
        assert!(f.fit.coef[0] > 0.0, "{:?}", f.fit.coef);
        assert!(f.fit.return_map.slope > 0.0);
        // Ordered by the signal.
        let lo = f.fit.forecast(&[-0.05, 50.0], 0.003).0;
        let hi = f.fit.forecast(&[0.05, 50.0], 0.003).0;
        assert!(hi > lo, "{lo} {hi}");
        assert_eq!(f.fit.residuals.len(), 99);
        let few = params(serde_json::json!({ "min_rows": 10_000 })).expect("params");
        assert_eq!(
            fit_horizon(&few, &rows, &raw, 1).err(),
            Some("too_few_rows")
        );
    }
}
