//! The linear ranker, a third member beside LightGBM and ETS: one pooled ridge regression per
//! horizon on the same features and the same label as LightGBM's regression (each date's
//! h-day return ranks), each feature standardised by its training rows' median and scaled
//! MAD and clipped to ±3 (Qlib's `Linear` on `RobustZScoreNorm` features), rows weighted by
//! age as LightGBM's are. `linear.train` fits it on Sundays (`dags/retrain_linear.yaml`; a
//! default member, `KRXFLOW_LINEAR=off` leaves it out); `linear.predict` applies the newest
//! model trained through a date before the partition, writing `linear_predictions` (the
//! columns of `lgbm_predictions`), which the ensemble reads as `member.linear`.
//!
//! Why (`benches/study/linear_member.py`; docs/quality.md, "A linear ranker beside
//! LightGBM"): chosen on 2013–2018, where it ranked the 30 tickers almost as well as LightGBM
//! (0.100 against 0.105 at 1 day) with forecasts only 0.74 rank-correlated with LightGBM's.
//!
//! A card per model (`models/linear/pooled/_all/h<H>/<version>/model.json`, registry kind
//! `linear`, name `linear/pooled/_all/h<H>`) holds the coefficients, the standardisation, the
//! line from score to return and the residual quantiles.

pub(crate) mod model;
pub mod predict;
pub mod train;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use model::LinearModel;

use crate::lgbm::POOLED_CODE;

/// Registry name of the pooled model of horizon `h`.
pub fn model_name(h: u32) -> String {
    format!("linear/pooled/{POOLED_CODE}/h{h}")
}

/// What `linear.train` stores per model and `linear.predict` reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearCard {
    pub model: String,
    pub horizon: u32,
    pub version: String,
    pub trained_through: NaiveDate,
    pub features: Vec<String>,
    pub feature_hash: String,
    pub alpha: f64,
    pub half_life_days: f64,
    /// The first date learned from, the rows learned from, and the first date of those the
    /// return line and the residuals were taken on.
    pub train_from: NaiveDate,
    pub train_rows: usize,
    pub map_from: NaiveDate,
    pub fit: LinearModel,
}
