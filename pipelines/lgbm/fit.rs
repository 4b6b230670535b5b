//! Fitting the model pairs `lgbm.train` planned: one job's regression + direction models
//! ([`fit_job`]), and every job on a pool of worker threads ([`fit_all`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use krxflow_models::lgbm::{self as gbm, GbmTask, Matrix};
use serde_json::Value;

use super::target::{Labels, ReturnMap, Target};
use super::{FeatureRows, Scope, model_name};
use crate::common::direction::Direction;

/// One model's rows (indices into the feature rows) in (date, code) order.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub train_from: i32,
    pub valid_from: i32,
    /// Each training row's weight (`half_life_days`); `None`: every row weighs 1.
    pub weights: Option<Vec<f32>>,
}

/// One model pair to fit: each model's own split (their lookbacks may differ).
#[derive(Debug, Clone)]
pub struct Job {
    pub scope: Scope,
    pub code: String,
    pub horizon: u32,
    pub regression: Split,
    pub direction: Split,
}

/// A fitted pair, before it is stored.
pub struct Fitted {
    pub job: Job,
    pub regression: gbm::GbmFit,
    pub direction: gbm::GbmFit,
    pub majority_accuracy: f64,
    /// `target: rank`: how the regression's score becomes a return.
    pub return_map: Option<ReturnMap>,
}

fn matrix(rows: &FeatureRows, idx: &[usize]) -> Vec<f64> {
    let mut x = Vec::with_capacity(idx.len() * rows.n_features);
    for &i in idx {
        x.extend_from_slice(rows.row(i));
    }
    x
}

fn column(idx: &[usize], lab: &[Option<f64>]) -> Vec<f32> {
    idx.iter()
        .map(|&i| lab[i].unwrap_or(f64::NAN) as f32)
        .collect()
}

/// Fits one job's two models (blocking; call from a worker thread): the regression on `reg`
/// (labels of `cfg.target`), the direction classifier on the classes of the raw returns `raw`.
pub fn fit_job(
    job: Job,
    rows: &FeatureRows,
    (reg, raw): (&[Option<f64>], &[Option<f64>]),
    cfg: &FitConfig,
) -> Result<Fitted, String> {
    let (reg_params, dir_params, flat_band) = (&cfg.reg_params, &cfg.dir_params, cfg.flat_band);
    let nf = rows.n_features;
    let (r_train, r_valid) = (&job.regression.train, &job.regression.valid);
    let (xt, yt) = (matrix(rows, r_train), column(r_train, reg));
    let (xv, yv) = (matrix(rows, r_valid), column(r_valid, reg));
    let cls = |idx: &[usize]| -> Vec<f32> {
        column(idx, raw)
            .iter()
            .map(|r| f32::from(Direction::classify(f64::from(*r), flat_band).class()))
            .collect()
    };
    let (d_train, d_valid) = (&job.direction.train, &job.direction.valid);
    // The classifier's rows are usually the regression's: gather them only when they differ.
    let own = |idx: &Vec<usize>, same: &Vec<usize>| (idx != same).then(|| matrix(rows, idx));
    let (xdt_own, xdv_own) = (own(d_train, r_train), own(d_valid, r_valid));
    let (xdt, xdv) = (
        xdt_own.as_deref().unwrap_or(&xt),
        xdv_own.as_deref().unwrap_or(&xv),
    );
    let (ct, cv) = (cls(d_train), cls(d_valid));
    let mut regression = gbm::train_weighted(
        GbmTask::Regression,
        Matrix {
            x: &xt,
            y: &yt,
            n_features: nf,
        },
        job.regression.weights.as_deref(),
        Matrix {
            x: &xv,
            y: &yv,
            n_features: nf,
        },
        reg_params,
        flat_band,
    )
    .map_err(|e| e.to_string())?;
    let direction = gbm::train_weighted(
        GbmTask::Direction,
        Matrix {
            x: xdt,
            y: &ct,
            n_features: nf,
        },
        job.direction.weights.as_deref(),
        Matrix {
            x: xdv,
            y: &cv,
            n_features: nf,
        },
        dir_params,
        flat_band,
    )
    .map_err(|e| e.to_string())?;
    let mut counts = [0usize; 3];
    for c in &ct {
        counts[*c as usize] += 1;
    }
    let majority = (0..3).max_by_key(|&k| counts[k]).unwrap_or(1) as f32;
    let majority_accuracy =
        cv.iter().filter(|&&c| c == majority).count() as f64 / cv.len().max(1) as f64;
    let return_map = match cfg.target {
        Target::Rank => {
            let returns: Vec<f64> = column(r_valid, raw).iter().map(|&r| f64::from(r)).collect();
            let dates: Vec<i32> = r_valid.iter().map(|&i| rows.dates[i]).collect();
            let map = ReturnMap::fit(&dates, &regression.valid_predictions, &returns)
                .ok_or("too few finite validation scores to map the rank score to a return")?;
            in_return_space(&mut regression, map, &returns, flat_band);
            Some(map)
        }
        Target::Raw | Target::Excess => None,
    };
    Ok(Fitted {
        job,
        regression,
        direction,
        majority_accuracy,
        return_map,
    })
}

/// A rank model's validation metrics restated for the returns it forecasts through `map`.
fn in_return_space(fit: &mut gbm::GbmFit, map: ReturnMap, returns: &[f64], flat_band: f64) {
    let preds: Vec<f64> = fit
        .valid_predictions
        .iter()
        .map(|&s| map.apply(s))
        .collect();
    fit.set_regression_metrics(returns, &preds, flat_band);
    fit.valid_predictions = preds;
}

/// How every job is fitted.
pub struct FitConfig {
    pub reg_params: Value,
    pub dir_params: Value,
    pub flat_band: f64,
    /// Jobs fitted at once.
    pub workers: usize,
    /// What the regression learns.
    pub target: Target,
}

/// A job's result: the fitted pair, or (model, error).
pub type FitOutcome = Result<Fitted, (String, String)>;

/// Fits every job on `cfg.workers` threads; stops early (with `Err`) when `cancelled` says so.
pub fn fit_all(
    jobs: Vec<Job>,
    rows: &FeatureRows,
    labels: &Labels,
    cfg: &FitConfig,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Vec<FitOutcome> {
    let workers = cfg.workers;
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<FitOutcome>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1).min(jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let name = model_name(job.scope, &job.code, job.horizon);
                    let out = if cancelled() {
                        Err((name, "cancelled".to_string()))
                    } else {
                        let h = job.horizon;
                        match (labels.regression.get(&h), labels.direction.get(&h)) {
                            (Some(reg), Some(raw)) => {
                                fit_job(job.clone(), rows, (reg, raw), cfg).map_err(|e| (name, e))
                            }
                            _ => Err((name, "no labels for this horizon".into())),
                        }
                    };
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(out);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(("?".into(), "worker panicked".into())))
        })
        .collect()
}
