//! Gradient-boosted trees through LightGBM (loaded at run time: [`crate::lightgbm`]).
//!
//! Two model kinds per target: a regression on the h-day return and a 3-class classifier on
//! its direction (down / flat / up). Training uses a time-ordered validation set (the caller
//! passes the newest rows as validation; nothing is shuffled) with early stopping, and the
//! result carries its validation metrics and residual quantiles so that a forecast can carry
//! an interval. Models travel as LightGBM's own text format, which round-trips bit-exactly.
//!
//! Training and prediction are blocking C calls: callers run them inside `spawn_blocking`.
//! Without the LightGBM library both are [`ModelError::RuntimeMissing`].

use crate::lightgbm::{Booster, Dataset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ModelError, ModelResult};

/// Direction classes, in the classifier's label order.
pub const DIRECTIONS: [&str; 3] = ["down", "flat", "up"];

/// Which model of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GbmTask {
    /// Regression on the return.
    Regression,
    /// 3-class classifier on the direction (labels 0 down, 1 flat, 2 up).
    Direction,
}

/// Row-major feature matrix with its labels. Missing values are NaN (LightGBM's missing).
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub x: &'a [f64],
    pub y: &'a [f32],
    pub n_features: usize,
}

impl Matrix<'_> {
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    fn check(&self, what: &str) -> ModelResult<()> {
        if self.n_features == 0 {
            return Err(ModelError::Training(format!("{what}: no features")));
        }
        if self.y.is_empty() {
            return Err(ModelError::Training(format!("{what}: no rows")));
        }
        if self.x.len() != self.y.len() * self.n_features {
            return Err(ModelError::Training(format!(
                "{what}: {} values for {} rows x {} features",
                self.x.len(),
                self.y.len(),
                self.n_features
            )));
        }
        Ok(())
    }
}

/// The defaults every model starts from; YAML params override them key by key.
pub fn default_params(task: GbmTask) -> Map<String, Value> {
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match task {
        GbmTask::Regression => {
            set("objective", "regression".into());
            set("metric", "l2".into());
        }
        GbmTask::Direction => {
            set("objective", "multiclass".into());
            set("num_class", 3.into());
            set("metric", "multi_logloss".into());
        }
    }
    set("learning_rate", 0.05.into());
    set("num_leaves", 15.into());
    set("min_data_in_leaf", 20.into());
    set("feature_fraction", 0.8.into());
    set("bagging_fraction", 0.8.into());
    set("bagging_freq", 1.into());
    set("lambda_l2", 1.0.into());
    set("num_iterations", 500.into());
    set("seed", 42.into());
    set("deterministic", true.into());
    set("force_row_wise", true.into());
    set("verbosity", (-1).into());
    m
}

/// Keys the caller may not override (they define what the model is).
const FIXED: &[&str] = &["objective", "num_class", "metric"];

/// `default_params(task)` with `overrides` applied; an override of a fixed key is an error.
pub fn merged_params(
    task: GbmTask,
    overrides: &Map<String, Value>,
    early_stopping_rounds: u32,
) -> ModelResult<Value> {
    let mut m = default_params(task);
    for (k, v) in overrides {
        if FIXED.contains(&k.as_str()) {
            return Err(ModelError::Training(format!(
                "parameter `{k}` is set by the model kind and cannot be overridden"
            )));
        }
        if !(v.is_number() || v.is_boolean() || v.is_string()) {
            return Err(ModelError::Training(format!(
                "parameter `{k}` must be a number, bool or string"
            )));
        }
        if v.as_str().is_some_and(|s| s.contains(char::is_whitespace)) {
            return Err(ModelError::Training(format!(
                "parameter `{k}` must not contain whitespace"
            )));
        }
        m.insert(k.clone(), v.clone());
    }
    m.insert(
        "early_stopping_rounds".to_string(),
        early_stopping_rounds.into(),
    );
    Ok(Value::Object(m))
}

/// A trained model and what validation said about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GbmFit {
    pub task: GbmTask,
    /// LightGBM's model text.
    #[serde(skip)]
    pub model_text: String,
    /// Boosting rounds kept (after early stopping's rollback).
    pub best_iteration: i32,
    pub train_rows: usize,
    pub valid_rows: usize,
    /// Regression: validation mean absolute error of the return.
    pub valid_mae: Option<f64>,
    /// Regression: 10% / 90% quantiles of validation residuals (actual − predicted).
    pub residual_q10: Option<f64>,
    pub residual_q90: Option<f64>,
    /// Direction accuracy on validation (classifier: argmax; regression: the sign of the
    /// predicted return with the flat band).
    pub valid_direction_accuracy: f64,
    /// Classifier: validation multi-class log loss.
    pub valid_logloss: Option<f64>,
    /// The trained booster's own predictions on the validation rows (before any save).
    #[serde(skip)]
    pub valid_predictions: Vec<f64>,
}

impl GbmFit {
    /// A regression's validation metrics from its actual and predicted returns: MAE, the
    /// direction accuracy with the flat band, and the residual (actual − predicted) quantiles
    /// its interval is built from.
    pub fn set_regression_metrics(&mut self, actual: &[f64], preds: &[f64], flat_band: f64) {
        let n = actual.len().max(1) as f64;
        let mut residuals: Vec<f64> = actual.iter().zip(preds).map(|(y, p)| y - p).collect();
        self.valid_mae = Some(residuals.iter().map(|r| r.abs()).sum::<f64>() / n);
        let hits = actual
            .iter()
            .zip(preds)
            .filter(|(y, p)| direction_class(**y, flat_band) == direction_class(**p, flat_band))
            .count();
        self.valid_direction_accuracy = hits as f64 / n;
        residuals.sort_by(f64::total_cmp);
        self.residual_q10 = Some(quantile_sorted(&residuals, 0.1));
        self.residual_q90 = Some(quantile_sorted(&residuals, 0.9));
    }
}

/// Returns within this of the band's edge count as on the edge (flat): a move of exactly
/// 0.3% computed from prices (10,000 -> 10,030) is 0.0030000000000000027 in floating point.
pub const BAND_EDGE_TOLERANCE: f64 = 1e-9;

/// The direction class of a return with a ±`flat_band` flat zone (edges included).
pub fn direction_class(ret: f64, flat_band: f64) -> u8 {
    if ret > flat_band + BAND_EDGE_TOLERANCE {
        2
    } else if ret < -flat_band - BAND_EDGE_TOLERANCE {
        0
    } else {
        1
    }
}

/// Trains one model on `train` with early stopping on `valid` (which must be the newer rows).
pub fn train(
    task: GbmTask,
    train: Matrix<'_>,
    valid: Matrix<'_>,
    params: &Value,
    flat_band: f64,
) -> ModelResult<GbmFit> {
    train_weighted(task, train, None, valid, params, flat_band)
}

/// [`train`] with each training row's loss weighted by `weights` (one per row; `None`: all 1).
/// Validation rows are not weighted: early stopping judges the newest rows as they are.
pub fn train_weighted(
    task: GbmTask,
    train: Matrix<'_>,
    weights: Option<&[f32]>,
    valid: Matrix<'_>,
    params: &Value,
    flat_band: f64,
) -> ModelResult<GbmFit> {
    train.check("training set")?;
    valid.check("validation set")?;
    if train.n_features != valid.n_features {
        return Err(ModelError::Training(
            "training and validation sets have different feature counts".into(),
        ));
    }
    if task == GbmTask::Direction && train.y.iter().any(|&c| !(c == 0.0 || c == 1.0 || c == 2.0)) {
        return Err(ModelError::Training(
            "direction labels must be 0, 1 or 2".into(),
        ));
    }
    let dtrain = Dataset::from_rows(train.x, train.y, train.n_features, None)?;
    if let Some(w) = weights {
        dtrain.set_weights(w)?;
    }
    let dvalid = Dataset::from_rows(valid.x, valid.y, valid.n_features, Some(&dtrain))?;
    let booster = Booster::train(&dtrain, Some(&dvalid), params)?;
    let model_text = booster.save_string()?;
    let preds = booster.predict(valid.x, PREDICT_PARAMS)?;
    let mut fit = GbmFit {
        task,
        model_text,
        best_iteration: booster.num_iterations(),
        train_rows: train.rows(),
        valid_rows: valid.rows(),
        valid_mae: None,
        residual_q10: None,
        residual_q90: None,
        valid_direction_accuracy: 0.0,
        valid_logloss: None,
        valid_predictions: Vec::new(),
    };
    let n = valid.rows() as f64;
    match task {
        GbmTask::Regression => {
            let actual: Vec<f64> = valid.y.iter().map(|&y| f64::from(y)).collect();
            fit.set_regression_metrics(&actual, &preds, flat_band);
        }
        GbmTask::Direction => {
            let mut hits = 0usize;
            let mut logloss = 0.0;
            for (row, &y) in valid.y.iter().enumerate() {
                let p = &preds[row * 3..row * 3 + 3];
                let arg = argmax(p);
                if arg as f32 == y {
                    hits += 1;
                }
                logloss -= p[y as usize].clamp(1e-15, 1.0).ln();
            }
            fit.valid_direction_accuracy = hits as f64 / n;
            fit.valid_logloss = Some(logloss / n);
        }
    }
    fit.valid_predictions = preds;
    Ok(fit)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Linear-interpolated quantile of a sorted slice (`q` in 0..=1).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Prediction runs on one thread, as training's validation scoring does: per-row results do
/// not depend on it, and a process predicting many small batches in parallel tasks gains
/// nothing from OpenMP threads spinning beside them.
const PREDICT_PARAMS: &str = "num_threads=1";

/// A loaded model, ready to predict. Shareable across threads, so a process can keep the
/// models it loaded (`lgbm.predict` caches them by content hash).
pub struct Gbm {
    booster: Booster,
    /// Serialises every call into the booster: LightGBM's batch prediction initialises state
    /// inside the booster under a shared lock only (lightgbm/src/c_api.cpp, issue 6142).
    calls: std::sync::Mutex<()>,
    n_features: usize,
    n_classes: usize,
}

// SAFETY: `Booster` is `Send`; every call through `&Gbm` into it holds `calls`, so no two
// threads are ever inside LightGBM on the same booster at once.
unsafe impl Sync for Gbm {}

impl Gbm {
    /// Loads LightGBM model text (what [`GbmFit::model_text`] holds).
    pub fn from_text(text: &str) -> ModelResult<Self> {
        let booster = Booster::from_string(text)?;
        let n_features = usize::try_from(booster.num_features())
            .map_err(|_| ModelError::Artifact("negative feature count".into()))?;
        let n_classes = usize::try_from(booster.num_classes())
            .map_err(|_| ModelError::Artifact("negative class count".into()))?;
        Ok(Self {
            booster,
            calls: std::sync::Mutex::new(()),
            n_features,
            n_classes,
        })
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Predictions for row-major `x`: one value per row (regression) or `n_classes` per row.
    pub fn predict(&self, x: &[f64]) -> ModelResult<Vec<f64>> {
        if self.n_features == 0 || !x.len().is_multiple_of(self.n_features) {
            return Err(ModelError::Training(format!(
                "{} values are not rows of {} features",
                x.len(),
                self.n_features
            )));
        }
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let _one_at_a_time = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        self.booster.predict(x, PREDICT_PARAMS)
    }

    /// Values per row of [`Gbm::predict`].
    pub fn outputs_per_row(&self) -> usize {
        self.n_classes.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A learnable synthetic problem: y = 0.02 * x0 - 0.01 * x1 + noise, deterministic.
    fn synthetic(n: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let mut x = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b, c) = (next(), next(), next());
            x.extend([a, b, if c > 0.9 { f64::NAN } else { c }]);
            y.push((0.02 * a - 0.01 * b + 0.006 * next()) as f32);
        }
        (x, y)
    }

    fn params(task: GbmTask) -> Value {
        let mut o = Map::new();
        o.insert("num_threads".into(), 1.into());
        merged_params(task, &o, 30).expect("params")
    }

    /// The first `split` rows of a 3-feature set for training, the rest for validation.
    fn halves<'a>(x: &'a [f64], y: &'a [f32], split: usize) -> (Matrix<'a>, Matrix<'a>) {
        let (xt, xv) = x.split_at(split * 3);
        let (yt, yv) = y.split_at(split);
        let m = |x, y| Matrix {
            x,
            y,
            n_features: 3,
        };
        (m(xt, yt), m(xv, yv))
    }

    /// The rows of `synthetic` with the sign of x0's effect flipped in the newer half, as
    /// after a regime change.
    fn regime_change(n: usize) -> (Vec<f64>, Vec<f32>) {
        let (x, mut y) = synthetic(n, 11);
        for (i, y) in y.iter_mut().enumerate().skip(n / 2) {
            *y -= (0.04 * x[i * 3]) as f32;
        }
        (x, y)
    }

    #[test]
    fn weighted_rows_let_the_newer_regime_win_and_bad_weights_are_refused() {
        let (x, y) = regime_change(3000);
        let (split, old) = (2500, 1250);
        let fit = |w: Option<&[f32]>| {
            let (t, v) = halves(&x, &y, split);
            train_weighted(
                GbmTask::Regression,
                t,
                w,
                v,
                &params(GbmTask::Regression),
                0.003,
            )
        };
        let even = fit(None).expect("unweighted");
        let ones = fit(Some(&vec![1.0; split])).expect("weights of 1");
        assert_eq!(
            ones.model_text, even.model_text,
            "weights of 1 are no weights"
        );
        // The old regime's rows weigh next to nothing: the model learns the new one.
        let w: Vec<f32> = (0..split)
            .map(|i| if i < old { 0.01 } else { 1.0 })
            .collect();
        let recent = fit(Some(&w)).expect("weighted");
        let (e, r) = (even.valid_mae.unwrap(), recent.valid_mae.unwrap());
        assert!(r < 0.8 * e, "weighted MAE {r} against unweighted {e}");
        let short = fit(Some(&w[1..])).expect_err("a weight per row");
        assert!(short.to_string().contains("weights for"), "{short}");
        let mut bad = w.clone();
        bad[7] = f32::NAN;
        let nan = fit(Some(&bad)).expect_err("NaN weight");
        assert!(nan.to_string().contains("not a finite weight"), "{nan}");
    }

    #[test]
    fn regression_learns_a_signal_and_stops_early() {
        let (x, y) = synthetic(1500, 7);
        let split = 1200;
        // A high learning rate overfits the noise quickly: validation loss turns up and
        // training stops (and rolls back) well before num_iterations.
        let mut o = Map::new();
        o.insert("num_threads".into(), 1.into());
        o.insert("learning_rate".into(), 0.3.into());
        let (t, v) = halves(&x, &y, split);
        let fit = train(
            GbmTask::Regression,
            t,
            v,
            &merged_params(GbmTask::Regression, &o, 30).expect("params"),
            0.003,
        )
        .expect("train");
        let mae = fit.valid_mae.expect("mae");
        let naive: f64 = y[split..].iter().map(|v| f64::from(*v).abs()).sum::<f64>() / 300.0;
        assert!(mae < 0.5 * naive, "mae {mae} vs predicting 0: {naive}");
        assert!(
            fit.best_iteration > 0 && fit.best_iteration < 500,
            "{}",
            fit.best_iteration
        );
        assert!(
            fit.valid_direction_accuracy > 0.6,
            "{}",
            fit.valid_direction_accuracy
        );
        let (q10, q90) = (
            fit.residual_q10.expect("q10"),
            fit.residual_q90.expect("q90"),
        );
        assert!(q10 < 0.0 && q90 > 0.0, "{q10} {q90}");
    }

    #[test]
    fn direction_classifier_reports_accuracy_and_logloss() {
        let (x, y) = synthetic(1500, 11);
        let classes: Vec<f32> = y
            .iter()
            .map(|r| f32::from(direction_class(f64::from(*r), 0.003)))
            .collect();
        let (t, v) = halves(&x, &classes, 1200);
        let fit =
            train(GbmTask::Direction, t, v, &params(GbmTask::Direction), 0.003).expect("train");
        assert!(
            fit.valid_direction_accuracy > 0.6,
            "{}",
            fit.valid_direction_accuracy
        );
        let ll = fit.valid_logloss.expect("logloss");
        assert!(ll < 3f64.ln(), "logloss {ll} no better than uniform");
        let gbm = Gbm::from_text(&fit.model_text).expect("load");
        assert_eq!(gbm.outputs_per_row(), 3);
        let p = gbm.predict(&x[..30]).expect("predict");
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn saved_then_loaded_model_predicts_bit_identically() {
        let (x, y) = synthetic(800, 3);
        let (t, v) = halves(&x, &y, 600);
        let fit = train(
            GbmTask::Regression,
            t,
            v,
            &params(GbmTask::Regression),
            0.003,
        )
        .expect("train");
        // The trained booster's predictions vs the same model saved as text and loaded back.
        let loaded = Gbm::from_text(&fit.model_text).expect("load");
        let again = loaded.predict(&x[1800..]).expect("predict");
        assert_eq!(again.len(), 200);
        assert_eq!(fit.valid_predictions.len(), 200);
        for (u, v) in fit.valid_predictions.iter().zip(&again) {
            assert_eq!(u.to_bits(), v.to_bits(), "{u} vs {v}");
        }
        // And a second save of the loaded model is the same text.
        let resaved = Booster::from_string(&fit.model_text)
            .and_then(|b| b.save_string())
            .expect("resave");
        assert_eq!(resaved, fit.model_text);
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let p = params(GbmTask::Regression);
        let err = train(
            GbmTask::Regression,
            Matrix {
                x: &[1.0, 2.0, 3.0],
                y: &[1.0, 2.0],
                n_features: 2,
            },
            Matrix {
                x: &[1.0, 2.0],
                y: &[1.0],
                n_features: 2,
            },
            &p,
            0.003,
        )
        .expect_err("shape mismatch");
        assert!(err.to_string().contains("3 values for 2 rows"), "{err}");
        let mut o = Map::new();
        o.insert("objective".into(), "binary".into());
        let err = merged_params(GbmTask::Regression, &o, 30).expect_err("fixed key");
        assert!(err.to_string().contains("objective"), "{err}");
        assert!(Gbm::from_text("not a model").is_err());
        let err = train(
            GbmTask::Direction,
            Matrix {
                x: &[1.0, 2.0],
                y: &[5.0, 1.0],
                n_features: 1,
            },
            Matrix {
                x: &[1.0],
                y: &[1.0],
                n_features: 1,
            },
            &params(GbmTask::Direction),
            0.003,
        )
        .expect_err("bad class");
        assert!(err.to_string().contains("0, 1 or 2"), "{err}");
    }

    #[test]
    fn quantiles_interpolate() {
        let s = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.5), 2.0);
        assert!((quantile_sorted(&s, 0.1) - 0.4).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
        assert_eq!(argmax(&[0.2, 0.5, 0.3]), 1);
    }
}
