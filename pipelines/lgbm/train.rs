//! `lgbm.train`: a regression on `y_ret_h` (or its excess over the day's cross-sectional median:
//! `target: excess`, see [`super::target`]) and a 3-class direction model on `y_dir_h` per
//! (code, horizon) (`scope: per_ticker`) or per horizon across the universe (`scope: pooled`).
//!
//! Point-in-time: inputs are read as of `ds`, so a label `close[t+h]/close[t] − 1` exists only
//! when `t+h <= ds`; the models are `trained_through = ds` and `lgbm.predict` uses them only
//! for later days. Validation is the newest `valid_fraction` of the dates (no shuffling), with
//! the `h` dates before it purged from training so that no training label overlaps it.
use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::lgbm::{self as gbm, GbmTask};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

// Fitting lives in `fit.rs`; re-exported at its old paths.
pub use super::fit::{FitConfig, FitOutcome, Fitted, Job, Split, fit_all, fit_job};
use super::target::{Labels, Target};
use super::train_rows::{MetricRows, RegistryRows};
use super::{
    Closes, FeatureRows, ModelCard, POOLED_CODE, Scope, default_features, feature_hash, model_name,
    validate_features,
};
use crate::common::dates::{date_of, days};
use crate::common::direction::FLAT_BAND;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// `per_ticker`, `pooled`, or a list of both.
    #[serde(default = "default_scope", deserialize_with = "one_or_many")]
    pub scope: Vec<Scope>,
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// Feature columns in model order (default: every documented feature).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Only these codes (empty = all).
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default = "default_valid_fraction")]
    pub valid_fraction: f64,
    #[serde(default = "default_early_stopping")]
    pub early_stopping_rounds: u32,
    #[serde(default = "default_min_train")]
    pub min_train_rows: usize,
    #[serde(default = "default_min_valid")]
    pub min_valid_rows: usize,
    /// Only the last N dates of the feature table (its trading days; default: all).
    #[serde(default)]
    pub lookback_days: Option<u32>,
    /// At most this many of the newest dates validate (default: `valid_fraction` of them
    /// however many that is: with years of history, the training rows would end years back).
    #[serde(default)]
    pub valid_days: Option<u32>,
    /// Each training row's weight halves every this many trading days before the newest
    /// labelled date (default: every row weighs 1).
    #[serde(default)]
    pub half_life_days: Option<f64>,
    /// LightGBM parameters overriding the defaults (both models).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The return regression's own `lookback_days` and `params` (over the shared ones).
    #[serde(default)]
    pub regression: ModelOverrides,
    /// The direction classifier's own `lookback_days` and `params` (over the shared ones).
    #[serde(default)]
    pub direction: ModelOverrides,
    /// Models trained at once (per-ticker: each single-threaded); default: the cores.
    #[serde(default)]
    pub workers: Option<usize>,
    /// What the regression learns: `raw` returns, their `excess` over the day's median, or
    /// their `rank` among the day's codes.
    #[serde(default)]
    pub target: Target,
}

/// What one of the two models does differently from the shared settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    /// Only the last N dates of the feature table (instead of the shared `lookback_days`).
    #[serde(default)]
    pub lookback_days: Option<u32>,
    /// Instead of the shared `valid_days`.
    #[serde(default)]
    pub valid_days: Option<u32>,
    /// Instead of the shared `half_life_days`.
    #[serde(default)]
    pub half_life_days: Option<f64>,
    /// LightGBM parameters over the shared `params`.
    #[serde(default)]
    pub params: Map<String, Value>,
}

fn default_scope() -> Vec<Scope> {
    vec![Scope::PerTicker]
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Scope>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Scope),
        Many(Vec<Scope>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) if !v.is_empty() => Ok(v),
        Ok(OneOrMany::Many(_)) => Err(serde::de::Error::custom("scope: list at least one")),
        Err(_) => Err(serde::de::Error::custom(
            "scope: expected per_ticker, pooled or a list of them",
        )),
    }
}
fn default_valid_fraction() -> f64 {
    0.2
}
fn default_early_stopping() -> u32 {
    30
}
fn default_min_train() -> usize {
    200
}
fn default_min_valid() -> usize {
    40
}

impl TrainParams {
    pub fn feature_list(&self) -> Vec<String> {
        self.features.clone().unwrap_or_else(default_features)
    }

    fn overrides(&self, task: GbmTask) -> &ModelOverrides {
        match task {
            GbmTask::Regression => &self.regression,
            GbmTask::Direction => &self.direction,
        }
    }

    /// The trading days of history `task` learns from (`None`: all).
    pub fn lookback(&self, task: GbmTask) -> Option<u32> {
        self.overrides(task).lookback_days.or(self.lookback_days)
    }

    /// How `task` validates and weighs its rows: (`valid_days`, `half_life_days`).
    pub fn window(&self, task: GbmTask) -> (Option<u32>, Option<f64>) {
        let o = self.overrides(task);
        (
            o.valid_days.or(self.valid_days),
            o.half_life_days.or(self.half_life_days),
        )
    }

    /// The LightGBM parameters of `task`: the shared ones, then the model's own.
    pub fn params_for(&self, task: GbmTask) -> Map<String, Value> {
        let mut m = self.params.clone();
        m.extend(self.overrides(task).params.clone());
        m
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::common::horizons::check(&self.horizons)?;
        validate_features(&self.feature_list()).map_err(|m| ConfigError::new("features", m))?;
        if !(0.05..=0.5).contains(&self.valid_fraction) {
            return Err(ConfigError::new(
                "valid_fraction",
                "must be within 0.05..=0.5",
            ));
        }
        if self.early_stopping_rounds == 0 {
            return Err(ConfigError::new("early_stopping_rounds", "must be >= 1"));
        }
        if self.min_train_rows < 10 || self.min_valid_rows < 5 {
            return Err(ConfigError::new(
                "min_train_rows",
                "need min_train_rows >= 10 and min_valid_rows >= 5",
            ));
        }
        for (task, field) in [
            (GbmTask::Regression, "regression"),
            (GbmTask::Direction, "direction"),
        ] {
            gbm::merged_params(task, &self.params_for(task), self.early_stopping_rounds)
                .map_err(|e| ConfigError::new("params", format!("{field}: {e}")))?;
            let (valid_days, half_life) = self.window(task);
            if valid_days.is_some_and(|d| d < 5) {
                return Err(ConfigError::new(
                    "valid_days",
                    format!("{field}: valid_days must be >= 5"),
                ));
            }
            if half_life.is_some_and(|h| !(h.is_finite() && h >= 1.0)) {
                return Err(ConfigError::new(
                    "half_life_days",
                    format!("{field}: half_life_days must be a number of trading days >= 1"),
                ));
            }
            if self.overrides(task).lookback_days == Some(0) {
                return Err(ConfigError::new(
                    "lookback_days",
                    format!("{field}.lookback_days must be >= 1 (leave it out for the shared one)"),
                ));
            }
        }
        if self.lookback_days == Some(0) {
            return Err(ConfigError::new(
                "lookback_days",
                "must be >= 1 (leave it out for all)",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::new("workers", "must be >= 1"));
        }
        Ok(())
    }
}

/// Splits the labelled rows of one group into a time-ordered train / validation pair with a
/// purge of `h` dates between them. `None` when either side is too small.
pub fn split(
    rows: &mut [usize],
    dates: &[i32],
    codes: &[String],
    h: u32,
    (valid_fraction, valid_days): (f64, Option<u32>),
) -> Option<(Vec<usize>, Vec<usize>)> {
    rows.sort_by(|&a, &b| {
        dates[a]
            .cmp(&dates[b])
            .then_with(|| codes[a].cmp(&codes[b]))
    });
    let uniq: Vec<i32> = rows
        .iter()
        .map(|&r| dates[r])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = uniq.len();
    let mut valid_start = ((n as f64) * (1.0 - valid_fraction)).floor() as usize;
    if let Some(d) = valid_days {
        valid_start = valid_start.max(n.saturating_sub(d as usize));
    }
    let purge_start = valid_start.checked_sub(h as usize)?;
    if purge_start == 0 || valid_start >= n {
        return None;
    }
    let (train_end, valid_from) = (uniq[purge_start], uniq[valid_start]);
    let train = rows
        .iter()
        .copied()
        .filter(|&r| dates[r] < train_end)
        .collect();
    let valid = rows
        .iter()
        .copied()
        .filter(|&r| dates[r] >= valid_from)
        .collect();
    Some((train, valid))
}

/// The first of the last `n` distinct `dates` (`None`: there are no more than `n`, or no
/// lookback). Counted on the data's own dates, not on the DAG's calendar: the weekly retrain
/// runs on a daily one.
pub fn lookback_start(dates: &[i32], n: Option<u32>) -> Option<i32> {
    let n = n? as usize;
    let distinct: BTreeSet<i32> = dates.iter().copied().collect();
    (distinct.len() > n)
        .then(|| distinct.iter().rev().nth(n.saturating_sub(1)).copied())
        .flatten()
}

/// One model's labelled rows of a group, split: `None` when either side is too small (the
/// reason counted in `skipped`).
fn split_rows(
    p: &TrainParams,
    task: GbmTask,
    members: &[usize],
    rows: &FeatureRows,
    (lab, from): (&[Option<f64>], Option<i32>),
    h: u32,
    skipped: &mut BTreeMap<String, usize>,
) -> Option<Split> {
    let mut labelled: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| lab[i].is_some() && from.is_none_or(|f| rows.dates[i] >= f))
        .collect();
    let (valid_days, half_life) = p.window(task);
    let fraction = (p.valid_fraction, valid_days);
    let Some((train, valid)) = split(&mut labelled, &rows.dates, &rows.codes, h, fraction) else {
        *skipped.entry("too_few_dates".into()).or_default() += 1;
        return None;
    };
    if train.len() < p.min_train_rows || valid.len() < p.min_valid_rows {
        *skipped.entry("too_few_rows".into()).or_default() += 1;
        return None;
    }
    let (train_from, valid_from) = (rows.dates[train[0]], rows.dates[valid[0]]);
    let weights = half_life.map(|hl| age_weights(&labelled, &train, &rows.dates, hl));
    Some(Split {
        train,
        valid,
        train_from,
        valid_from,
        weights,
    })
}

/// `0.5^(age / half_life)` for each of `train`'s rows, its age counted in the distinct dates of
/// `labelled` (sorted by date) from the newest one.
pub(crate) fn age_weights(
    labelled: &[usize],
    train: &[usize],
    dates: &[i32],
    half_life: f64,
) -> Vec<f32> {
    let mut distinct: Vec<i32> = labelled.iter().map(|&r| dates[r]).collect();
    distinct.dedup();
    let newest = distinct.len().saturating_sub(1);
    train
        .iter()
        .map(|&r| {
            let age = newest - distinct.partition_point(|d| *d < dates[r]);
            0.5f64.powf(age as f64 / half_life) as f32
        })
        .collect()
}

/// Builds the jobs: labelled rows grouped by code (or pooled), split per horizon and model
/// (each model over its own lookback).
pub fn plan(
    p: &TrainParams,
    scope: Scope,
    rows: &FeatureRows,
    labels: &Labels,
    skipped: &mut BTreeMap<String, usize>,
) -> Vec<Job> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..rows.len() {
        let key = match scope {
            Scope::PerTicker => rows.codes[i].clone(),
            Scope::Pooled => POOLED_CODE.to_string(),
        };
        groups.entry(key).or_default().push(i);
    }
    let reg_from = lookback_start(&rows.dates, p.lookback(GbmTask::Regression));
    let dir_from = lookback_start(&rows.dates, p.lookback(GbmTask::Direction));
    let mut jobs = Vec::new();
    for (code, members) in &groups {
        for &h in &p.horizons {
            let (Some(reg), Some(raw)) = (labels.regression.get(&h), labels.direction.get(&h))
            else {
                continue;
            };
            let (r, d) = (GbmTask::Regression, GbmTask::Direction);
            let Some(regression) = split_rows(p, r, members, rows, (reg, reg_from), h, skipped)
            else {
                continue;
            };
            let Some(direction) = split_rows(p, d, members, rows, (raw, dir_from), h, skipped)
            else {
                continue;
            };
            jobs.push(Job {
                scope,
                code: code.clone(),
                horizon: h,
                regression,
                direction,
            });
        }
    }
    jobs
}

pub struct LgbmTrain;

struct Configured {
    p: TrainParams,
}

#[async_trait]
impl Operator for LgbmTrain {
    fn kind(&self) -> &'static str {
        "lgbm.train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "LightGBM return regression + direction classifier per (code, horizon) or pooled; \
         time-ordered validation with early stopping; artifacts + registry rows + metrics"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "scope",
                "per_ticker|pooled",
                "per_ticker",
                "one model per code, or one across codes",
            ),
            ParamSpec::optional(
                "horizons",
                "list<u32>",
                "[1, 3, 5]",
                "target horizons in trading days",
            ),
            ParamSpec::optional(
                "features",
                "list<string>",
                "all of FEATURES",
                "feature columns, in model order",
            ),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional(
                "valid_fraction",
                "f64",
                "0.2",
                "newest fraction of dates used for validation",
            ),
            ParamSpec::optional(
                "early_stopping_rounds",
                "u32",
                "30",
                "rounds without validation improvement before stopping",
            ),
            ParamSpec::optional(
                "min_train_rows",
                "usize",
                "200",
                "fewer labelled training rows: no model",
            ),
            ParamSpec::optional(
                "min_valid_rows",
                "usize",
                "40",
                "fewer validation rows: no model",
            ),
            ParamSpec::optional(
                "lookback_days",
                "u32",
                "all",
                "the feature table's last N dates used (its trading days)",
            ),
            ParamSpec::optional(
                "valid_days",
                "u32",
                "none",
                "at most this many of the newest dates validate",
            ),
            ParamSpec::optional(
                "half_life_days",
                "f64",
                "none",
                "a training row's weight halves every N trading days back",
            ),
            ParamSpec::optional(
                "params",
                "map",
                "{}",
                "LightGBM parameters over the defaults (learning_rate 0.05, num_leaves 15, num_iterations 500, ...)",
            ),
            ParamSpec::optional(
                "regression",
                "{lookback_days, valid_days, half_life_days, params}",
                "{}",
                "the return regression's own history, validation, row weights and LightGBM parameters",
            ),
            ParamSpec::optional(
                "direction",
                "{lookback_days, valid_days, half_life_days, params}",
                "{}",
                "the direction classifier's own history, validation, row weights and LightGBM parameters",
            ),
            ParamSpec::optional("workers", "usize", "cores", "models fitted at once"),
            ParamSpec::optional(
                "target",
                "raw|excess|rank",
                "raw",
                "regression label: the h-day return, its excess over the day's cross-sectional median, or its rank among the day's codes",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        train_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::model_registry(), "registry", WriteMode::Merge)
                .doc("one row per trained model pair"),
            OutputPort::for_table(&tables::lgbm_metrics(), "metrics", WriteMode::Merge)
                .doc("validation metrics per model pair"),
        ]
    }
    fn configure(&self, params: &Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: TrainParams = parse_params(params)?;
        p.validate()?;
        Ok(Box::new(Configured { p }))
    }
}

/// The inputs of a model's training (`lgbm.train`, `linear.train`): the features and the
/// closes the labels come from. Both optional: on a new lake the first Sunday can come before
/// any daily batch wrote them, and the trainer then says `skipped` (see [`training_batches`])
/// instead of failing.
pub(crate) fn train_inputs() -> Vec<InputPort> {
    vec![
        InputPort::new(
            "features",
            tables::features_daily().schema,
            "the feature table",
        )
        .optional(),
        InputPort::new(
            "bars",
            tables::ohlcv_daily().schema,
            "closes for the labels",
        )
        .optional(),
    ]
}

/// The trainers' `features` and `bars`; a port without a table yet (no daily batch has run
/// before the retrain's date) is a skip naming it, since there is nothing to learn from.
pub(crate) fn training_batches(
    inputs: &InputBatches,
    ds: NaiveDate,
) -> OpResult<(RecordBatch, RecordBatch)> {
    for port in ["features", "bars"] {
        if !inputs.has(port) {
            return Err(OpError::skipped(format!(
                "nothing to train on before {ds}: the `{port}` table does not exist yet \
                 (the daily batch writes it)"
            )));
        }
    }
    Ok((inputs.concat("features")?, inputs.concat("bars")?))
}

/// Labels per horizon, aligned with `rows`.
pub fn labels_for(
    rows: &FeatureRows,
    closes: &Closes,
    horizons: &[u32],
) -> BTreeMap<u32, Vec<Option<f64>>> {
    horizons
        .iter()
        .map(|&h| {
            let v = (0..rows.len())
                .map(|i| closes.forward_return(&rows.codes[i], rows.dates[i], h))
                .collect();
            (h, v)
        })
        .collect()
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// Without the LightGBM library the task is `skipped`, saying how to install it.
    fn ready(&self) -> OpResult<()> {
        krxflow_models::lightgbm::runtime().map_err(|e| OpError::skipped(e.to_string()))
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        self.ready()?;
        let p = self.p.clone();
        let store = ctx
            .store
            .clone()
            .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
        let (features, bars) = training_batches(&inputs, ctx.ds)?;
        let names = p.feature_list();
        let fhash = feature_hash(&names);
        let codes: BTreeSet<String> = p.codes.iter().cloned().collect();
        let cancel = ctx.cancel.clone();
        let flat_band = FLAT_BAND;
        let mut configs = Vec::new();
        for &scope in &p.scope {
            let merged = |task| {
                gbm::merged_params(
                    task,
                    &with_threads(&p, task, scope),
                    p.early_stopping_rounds,
                )
                .map_err(|e| OpError::permanent(e.to_string()))
            };
            let workers = match scope {
                Scope::PerTicker => p.workers.unwrap_or_else(cores),
                Scope::Pooled => 1,
            };
            configs.push((
                scope,
                FitConfig {
                    reg_params: merged(GbmTask::Regression)?,
                    dir_params: merged(GbmTask::Direction)?,
                    flat_band,
                    workers,
                    target: p.target,
                },
            ));
        }
        let p2 = p.clone();
        let (fitted, n_rows, skipped) = tokio::task::spawn_blocking(move || -> OpResult<_> {
            let closes = Closes::from_bars(&bars)?;
            let rows = FeatureRows::from_batch(&features, &names, |code, _| {
                codes.is_empty() || codes.contains(code)
            })?;
            let labels = Labels::new(p2.target, &rows, labels_for(&rows, &closes, &p2.horizons));
            let mut skipped = BTreeMap::new();
            let cancelled = || cancel.is_cancelled();
            let mut fitted = Vec::new();
            for (scope, cfg) in &configs {
                let jobs = plan(&p2, *scope, &rows, &labels, &mut skipped);
                fitted.extend(fit_all(jobs, &rows, &labels, cfg, &cancelled));
            }
            Ok((fitted, rows.len(), skipped))
        })
        .await
        .map_err(|e| OpError::permanent(format!("training thread: {e}")))??;
        ctx.check_cancelled()?;
        ctx.counters.add("feature_rows", n_rows as i64);
        for (why, n) in &skipped {
            ctx.counters.add(&format!("skipped.{why}"), *n as i64);
        }
        let mut failures = Vec::new();
        let mut cards = Vec::new();
        for f in fitted {
            match f {
                Ok(f) => cards.push(f),
                Err((name, e)) => failures.push(format!("{name}: {e}")),
            }
        }
        if !failures.is_empty() {
            return Err(OpError::permanent(format!(
                "{} of {} models failed to train: {}",
                failures.len(),
                failures.len() + cards.len(),
                failures.join("; ")
            )));
        }
        if cards.is_empty() {
            return Err(OpError::skipped(format!(
                "no (code, horizon) has enough labelled history through {} \
                 (min_train_rows {}, min_valid_rows {}): nothing trained",
                ctx.ds, p.min_train_rows, p.min_valid_rows
            )));
        }

        let now_ms = Utc::now().timestamp_millis();
        let mut reg = RegistryRows::default();
        let mut met = MetricRows::default();
        for f in cards {
            let scope = f.job.scope;
            let name = model_name(scope, &f.job.code, f.job.horizon);
            let mut h = Sha256::new();
            h.update(f.regression.model_text.as_bytes());
            h.update(f.direction.model_text.as_bytes());
            let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            let version = format!("{}-{}", ctx.ds.format("%Y%m%d"), &hash[..10]);
            let dir = format!(
                "models/lgbm/{}/{}/h{}/{version}",
                scope.as_str(),
                f.job.code,
                f.job.horizon
            );
            let card = ModelCard {
                model: name.clone(),
                scope,
                code: f.job.code.clone(),
                horizon: f.job.horizon,
                version: version.clone(),
                trained_through: ctx.ds,
                features: p.feature_list(),
                feature_hash: fhash.clone(),
                flat_band,
                train_from: date_of(f.job.regression.train_from),
                valid_from: date_of(f.job.regression.valid_from),
                direction_train_from: Some(date_of(f.job.direction.train_from)),
                direction_valid_from: Some(date_of(f.job.direction.valid_from)),
                regression: f.regression.clone(),
                direction: f.direction.clone(),
                valid_majority_accuracy: f.majority_accuracy,
                params: Value::Object(p.params.clone()),
                target: p.target,
                return_map: f.return_map,
            };
            let card_json = serde_json::to_vec_pretty(&card)
                .map_err(|e| OpError::permanent(format!("model card: {e}")))?;
            store
                .put(
                    &format!("{dir}/regression.txt"),
                    f.regression.model_text.into_bytes(),
                )
                .await?;
            store
                .put(
                    &format!("{dir}/direction.txt"),
                    f.direction.model_text.into_bytes(),
                )
                .await?;
            store.put(&format!("{dir}/metrics.json"), card_json).await?;
            ctx.record_artifact(format!("{name}:{hash}"));
            let summary = serde_json::json!({
                "valid_mae": card.regression.valid_mae,
                "valid_direction_accuracy": card.direction.valid_direction_accuracy,
                "valid_logloss": card.direction.valid_logloss,
                "best_iteration": [card.regression.best_iteration, card.direction.best_iteration],
                "feature_hash": card.feature_hash,
                "train_rows": card.regression.train_rows,
                "valid_rows": card.regression.valid_rows,
                "target": card.target.as_str(),
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
            met.push(&card, days(ctx.ds));
        }
        ctx.counters.add("models", reg.model.len() as i64);
        Ok(OutputBatches::new()
            .with("registry", vec![reg.batch("lgbm")?])
            .with("metrics", vec![met.batch()?]))
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Per-ticker models are small: each trains single-threaded and the workers run in parallel.
/// Pooled models use every core. An explicit `num_threads` in `params` wins.
fn with_threads(p: &TrainParams, task: GbmTask, scope: Scope) -> Map<String, Value> {
    let mut m = p.params_for(task);
    if !m.contains_key("num_threads") {
        let n = match scope {
            Scope::PerTicker => 1,
            Scope::Pooled => cores(),
        };
        m.insert("num_threads".into(), n.into());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_time_ordered_with_a_purge_of_h_dates() {
        // 10 dates x 2 codes, shuffled.
        let mut dates = Vec::new();
        let mut codes = Vec::new();
        for d in (0..10).rev() {
            for c in ["B", "A"] {
                dates.push(d);
                codes.push(c.to_string());
            }
        }
        let mut rows: Vec<usize> = (0..20).collect();
        let (train, valid) = split(&mut rows, &dates, &codes, 2, (0.2, None)).expect("split");
        let td: BTreeSet<i32> = train.iter().map(|&r| dates[r]).collect();
        let vd: BTreeSet<i32> = valid.iter().map(|&r| dates[r]).collect();
        // valid = last 20% of 10 dates = {8, 9}; purge 2 dates {6, 7}; train = 0..=5.
        assert_eq!(vd, [8, 9].into_iter().collect());
        assert_eq!(td, (0..6).collect());
        assert!(train.windows(2).all(|w| dates[w[0]] <= dates[w[1]]));
        // Too little history for the purge: no split.
        let mut few: Vec<usize> = (0..6).collect();
        assert!(split(&mut few, &dates, &codes, 5, (0.2, None)).is_none());
        // At most 1 date validates: {9}; purge {7, 8}; train 0..=6.
        let mut rows: Vec<usize> = (0..20).collect();
        let (train, valid) = split(&mut rows, &dates, &codes, 2, (0.2, Some(1))).expect("split");
        let vd: BTreeSet<i32> = valid.iter().map(|&r| dates[r]).collect();
        let td: BTreeSet<i32> = train.iter().map(|&r| dates[r]).collect();
        assert_eq!((vd, td), ([9].into(), (0..7).collect()));
        // A cap above the fraction's count changes nothing.
        let mut rows: Vec<usize> = (0..20).collect();
        let (_, valid) = split(&mut rows, &dates, &codes, 2, (0.2, Some(5))).expect("split");
        assert_eq!(valid.len(), 4);
    }

    #[test]
    fn a_training_row_weighs_half_as_much_every_half_life_of_dates_back() {
        // Dates 0..10, two codes each (in date order, as `split` leaves them); a gap at 5.
        let dates: Vec<i32> = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
            .iter()
            .flat_map(|&d| [d, d])
            .collect();
        let labelled: Vec<usize> = (0..dates.len()).collect();
        let train: Vec<usize> = (0..12).collect(); // dates 0..=6
        let w = age_weights(&labelled, &train, &dates, 2.0);
        // The newest labelled date is 10 (9 distinct dates after date 0); date 6 is 4 back.
        assert_eq!(w[0], 0.5f64.powf(9.0 / 2.0) as f32);
        assert_eq!(w[1], w[0], "rows of one date weigh alike");
        assert_eq!(w[10], 0.25, "two half-lives back");
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn bad_params_name_the_field() {
        let op = LgbmTrain;
        let err = op
            .configure(&serde_json::json!({"horizons": [0]}))
            .err()
            .expect("bad horizon");
        assert_eq!(err.field, "horizons");
        let err = op
            .configure(&serde_json::json!({"features": ["nope"]}))
            .err()
            .expect("bad feature");
        assert_eq!(err.field, "features");
        let err = op
            .configure(&serde_json::json!({"params": {"objective": "binary"}}))
            .err()
            .expect("fixed param");
        assert_eq!(err.field, "params");
        let err = op
            .configure(&serde_json::json!({"scope": "global"}))
            .err()
            .expect("bad scope");
        assert!(err.to_string().contains("scope"), "{err}");
        assert!(
            op.configure(&serde_json::json!({"scope": ["per_ticker", "pooled"]}))
                .is_ok()
        );
        assert!(op.configure(&serde_json::json!({"scope": []})).is_err());
        for (bad, field) in [
            (
                serde_json::json!({"regression": {"half_life_days": 0.5}}),
                "half_life_days",
            ),
            (serde_json::json!({"half_life_days": -3}), "half_life_days"),
            (
                serde_json::json!({"direction": {"valid_days": 2}}),
                "valid_days",
            ),
        ] {
            let err = op.configure(&bad).err().expect("refused");
            assert_eq!(err.field, field, "{bad}: {err}");
        }
        let ok = serde_json::json!({"regression": {"half_life_days": 1000, "valid_days": 150}});
        assert!(op.configure(&ok).is_ok());
    }

    #[test]
    fn the_lookback_counts_the_datas_own_dates() {
        // Dates 10, 11, 14, 15 (a weekend gap) for two codes: the last 3 dates start at 11.
        let dates = [10, 10, 11, 11, 14, 15, 15];
        assert_eq!(lookback_start(&dates, Some(3)), Some(11));
        assert_eq!(lookback_start(&dates, Some(1)), Some(15));
        assert_eq!(
            lookback_start(&dates, Some(4)),
            None,
            "no more than 4 dates"
        );
        assert_eq!(lookback_start(&dates, Some(9)), None);
        assert_eq!(lookback_start(&dates, None), None);
    }

    #[test]
    fn each_model_learns_from_its_own_lookback_and_params() {
        let p: TrainParams = serde_json::from_value(serde_json::json!({
            "scope": "pooled", "horizons": [1], "min_train_rows": 10, "min_valid_rows": 5,
            "params": {"num_leaves": 7},
            "regression": {"lookback_days": 20, "params": {"learning_rate": 0.02}},
        }))
        .expect("params");
        p.validate().expect("valid");
        assert_eq!(p.lookback(GbmTask::Regression), Some(20));
        assert_eq!(p.lookback(GbmTask::Direction), None);
        assert_eq!(p.params_for(GbmTask::Regression)["learning_rate"], 0.02);
        assert_eq!(p.params_for(GbmTask::Regression)["num_leaves"], 7);
        assert!(
            !p.params_for(GbmTask::Direction)
                .contains_key("learning_rate")
        );
        // 50 dates x 3 codes, every row labelled.
        let rows = FeatureRows {
            codes: (0..150).map(|i| format!("C{}", i % 3)).collect(),
            dates: (0..150).map(|i| 100 + i / 3).collect(),
            x: vec![0.0; 150],
            n_features: 1,
        };
        let lab: BTreeMap<u32, Vec<Option<f64>>> = [(1, vec![Some(0.01); 150])].into();
        let labels = Labels::new(Target::Raw, &rows, lab);
        let jobs = plan(&p, Scope::Pooled, &rows, &labels, &mut BTreeMap::new());
        let job = jobs.first().expect("one job");
        // The regression: the last 20 dates (130..=149), 4 of them valid after a 1-date purge.
        assert_eq!(job.regression.train_from, 130);
        assert_eq!(job.regression.valid_from, 146);
        assert!(job.regression.train.iter().all(|&i| rows.dates[i] < 145));
        // The classifier: every date.
        assert_eq!(job.direction.train_from, 100);
        assert_eq!(job.direction.valid_from, 140);
        assert!(job.regression.weights.is_none() && job.direction.weights.is_none());
        // The classifier with at most 3 validation dates and rows halving every 10 dates.
        let windowed = TrainParams {
            direction: ModelOverrides {
                valid_days: Some(3),
                half_life_days: Some(10.0),
                ..ModelOverrides::default()
            },
            ..p.clone()
        };
        let jobs = plan(
            &windowed,
            Scope::Pooled,
            &rows,
            &labels,
            &mut BTreeMap::new(),
        );
        let d = &jobs.first().expect("one job").direction;
        assert_eq!(d.valid_from, 147);
        let w = d.weights.as_ref().expect("weights");
        assert_eq!(w.len(), d.train.len());
        // The oldest training date (100) is 49 dates before the newest (149).
        assert_eq!(w[0], 0.5f64.powf(4.9) as f32);
        assert!(jobs[0].regression.weights.is_none());
        let err = TrainParams {
            direction: ModelOverrides {
                lookback_days: Some(0),
                ..ModelOverrides::default()
            },
            ..p.clone()
        }
        .validate()
        .expect_err("zero lookback");
        assert!(err.to_string().contains("direction.lookback_days"), "{err}");
    }
}
