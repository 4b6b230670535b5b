//! The LSTM member, beside LightGBM, the linear ranker and ETS: one pooled recurrent network
//! over each code's last `seq_len` days of a few daily signals (its own return, gap, range,
//! close location, volume, the market's return, its volatility and the news), with one
//! output per horizon trained on the same label as the linear ranker's (each date's h-day
//! return ranks among the date's codes). Where the linear ranker and LightGBM see one day's
//! row of window summaries, the network reads the days themselves, in order.
//!
//! `lstm.train` fits it on Sundays (`dags/retrain_lstm.yaml`, when `KRXFLOW_LSTM=on`; off
//! by default); `lstm.predict` applies the newest model trained through a date before the
//! partition, writing `lstm_predictions` (the columns of `lgbm_predictions`), which the
//! ensemble reads as `member.lstm`. Each horizon's score becomes a return and an interval as
//! the linear ranker's does (a return line fitted on the newest dates, residual quantiles).
//!
//! A card (`models/lstm/pooled/_all/<version>/model.json`, registry kind `lstm`, name
//! `lstm/pooled/_all`) holds the network, the inputs' standardisation and each horizon's
//! line and residuals.

pub mod predict;
mod sequences;
pub mod train;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::lgbm::POOLED_CODE;
use crate::lgbm::target::ReturnMap;

pub use krxflow_models::lstm::Lstm;

/// Registry name of the pooled network (one for every horizon).
pub fn model_name() -> String {
    format!("lstm/pooled/{POOLED_CODE}")
}

/// The daily signals read by default, in order: each is one day's value, not a window's
/// summary (those the network builds itself).
pub const DEFAULT_INPUTS: &[&str] = &[
    "logret_1d",
    "gap_open",
    "hl_range",
    "close_loc",
    "volume_z20",
    "mkt_ret_1d",
    "vol_20d",
    "ma20_ratio",
    "sent_mean",
    "sent_n_articles",
];

pub fn default_inputs() -> Vec<String> {
    DEFAULT_INPUTS.iter().map(|s| s.to_string()).collect()
}

/// One horizon's output, priced: its line from score to return and its residual quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub horizon: u32,
    pub return_map: ReturnMap,
    pub residuals: Vec<f64>,
}

/// What `lstm.train` stores and `lstm.predict` reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LstmCard {
    pub model: String,
    pub version: String,
    pub trained_through: NaiveDate,
    pub features: Vec<String>,
    pub feature_hash: String,
    pub seq_len: usize,
    /// The inputs' medians and scaled MADs (robust z-scores clipped to ±3, as the linear
    /// ranker's).
    pub centre: Vec<f64>,
    pub scale: Vec<f64>,
    pub net: Lstm,
    /// Output k of the network is `heads[k]`'s horizon.
    pub heads: Vec<Head>,
    pub train_from: NaiveDate,
    pub train_rows: usize,
    pub epochs: usize,
    /// The validation loss (half the squared error per label) of the epoch kept; guessing 0
    /// scores half the labels' variance, about 1/24 ≈ 0.042.
    pub valid_loss: f64,
    pub map_from: NaiveDate,
}

impl LstmCard {
    /// Whether the card's parts agree in size (checked when one is read back).
    pub fn is_consistent(&self) -> bool {
        let n = self.features.len();
        self.net.is_consistent()
            && self.net.n_in == n
            && self.centre.len() == n
            && self.scale.len() == n
            && self.net.n_out == self.heads.len()
            && self.seq_len > 0
    }
}
