//! LightGBM forecasts: `lgbm.train` fits a regression (h-day return) and a direction classifier
//! (down / flat / up) per (code, horizon) or pooled across the universe; `lgbm.predict` applies
//! the newest models trained through a date before the partition.
//!
//! Both read `features_daily` (the features) and `ohlcv_daily` (closes: training labels
//! `close[t+h] / close[t] − 1` over the code's own trading days, and the base close a forecast
//! is expressed in). Artifacts live in the lake's object store under
//! `models/lgbm/<scope>/<code>/h<H>/<version>/` (`regression.txt`, `direction.txt`,
//! `metrics.json`); every model pair is a `model_registry` row named `lgbm/<scope>/<code>/h<H>`.

mod fit;
pub mod predict;
pub mod target;
pub mod train;
pub(crate) mod train_rows;

use std::collections::HashMap;

use arrow::array::{Array, BooleanArray, RecordBatch};
use chrono::NaiveDate;
use krxflow_core::OpResult;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cols::{date_col, f64_col, str_col};
use crate::tables::FEATURES;

/// `code` used for the pooled model's registry name and artifact path.
pub const POOLED_CODE: &str = "_all";

/// One model per ticker (the seed behaviour) or one across the universe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    PerTicker,
    Pooled,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PerTicker => "per_ticker",
            Scope::Pooled => "pooled",
        }
    }
}

/// Registry name of a model pair.
pub fn model_name(scope: Scope, code: &str, horizon: u32) -> String {
    format!("lgbm/{}/{code}/h{horizon}", scope.as_str())
}

/// The feature columns used when a DAG does not list its own: every documented feature.
pub fn default_features() -> Vec<String> {
    FEATURES.iter().map(|(n, _)| n.to_string()).collect()
}

/// Hash of an ordered feature list: a model only applies to the exact list it was trained on.
pub fn feature_hash(features: &[String]) -> String {
    let mut h = Sha256::new();
    for f in features {
        h.update(f.as_bytes());
        h.update(b"\n");
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex[..16].to_string()
}

/// Checks a feature list against the feature table's known columns.
pub fn validate_features(features: &[String]) -> Result<(), String> {
    if features.is_empty() {
        return Err("must list at least one feature".into());
    }
    let known = default_features();
    for f in features {
        if !known.contains(f) {
            return Err(format!(
                "`{f}` is not a feature of features_daily (known: {})",
                known.join(", ")
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for f in features {
        if !seen.insert(f) {
            return Err(format!("`{f}` is listed twice"));
        }
    }
    Ok(())
}

/// Each code's bars as parallel (date, close) vectors sorted by date.
pub struct Closes {
    by_code: HashMap<String, (Vec<i32>, Vec<f64>)>,
}

impl Closes {
    pub fn from_bars(bars: &RecordBatch) -> OpResult<Self> {
        let mut by_code: HashMap<String, Vec<(i32, f64)>> = HashMap::new();
        if bars.num_rows() > 0 {
            let codes = str_col(bars, "code")?;
            let dates = date_col(bars, "date")?;
            let closes = f64_col(bars, "close")?;
            for i in 0..bars.num_rows() {
                if codes.is_null(i) || dates.is_null(i) || closes.is_null(i) {
                    continue;
                }
                let c = closes.value(i);
                if c.is_finite() && c > 0.0 {
                    by_code
                        .entry(codes.value(i).to_string())
                        .or_default()
                        .push((dates.value(i), c));
                }
            }
        }
        Ok(Self {
            by_code: by_code
                .into_iter()
                .map(|(code, mut v)| {
                    v.sort_by_key(|r| r.0);
                    v.dedup_by_key(|r| r.0);
                    (code, v.into_iter().unzip())
                })
                .collect(),
        })
    }

    /// The close of `code` on `date`, if it traded.
    pub fn close(&self, code: &str, date: i32) -> Option<f64> {
        let (d, c) = self.by_code.get(code)?;
        d.binary_search(&date).ok().map(|i| c[i])
    }

    /// `close[t+h] / close[t] − 1` over the code's own bars, when `t+h` is in the table.
    pub fn forward_return(&self, code: &str, date: i32, h: u32) -> Option<f64> {
        let (d, c) = self.by_code.get(code)?;
        let i = d.binary_search(&date).ok()?;
        let j = i.checked_add(h as usize)?;
        c.get(j).map(|f| f / c[i] - 1.0)
    }
}

/// Feature rows (non-warm-up) as a row-major matrix with their codes and dates.
pub struct FeatureRows {
    pub codes: Vec<String>,
    pub dates: Vec<i32>,
    pub x: Vec<f64>,
    pub n_features: usize,
}

impl FeatureRows {
    /// Rows of `features` that pass `keep(code, date)` and are not warm-up; missing values NaN.
    pub fn from_batch(
        features: &RecordBatch,
        names: &[String],
        keep: impl Fn(&str, i32) -> bool,
    ) -> OpResult<Self> {
        let mut out = FeatureRows {
            codes: Vec::new(),
            dates: Vec::new(),
            x: Vec::new(),
            n_features: names.len(),
        };
        if features.num_rows() == 0 {
            return Ok(out);
        }
        let codes = str_col(features, "code")?;
        let dates = date_col(features, "date")?;
        let warm = features
            .column_by_name("warmup")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>());
        let cols = names
            .iter()
            .map(|n| f64_col(features, n))
            .collect::<OpResult<Vec<_>>>()?;
        for i in 0..features.num_rows() {
            if codes.is_null(i) || dates.is_null(i) {
                continue;
            }
            if warm.is_some_and(|w| w.is_valid(i) && w.value(i)) {
                continue;
            }
            let (code, date) = (codes.value(i), dates.value(i));
            if !keep(code, date) {
                continue;
            }
            out.codes.push(code.to_string());
            out.dates.push(date);
            for c in &cols {
                out.x.push(if c.is_null(i) || !c.value(i).is_finite() {
                    f64::NAN
                } else {
                    c.value(i)
                });
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// What `lgbm.train` writes next to each model pair and `lgbm.predict` checks before use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub model: String,
    pub scope: Scope,
    pub code: String,
    pub horizon: u32,
    pub version: String,
    pub trained_through: NaiveDate,
    pub features: Vec<String>,
    pub feature_hash: String,
    pub flat_band: f64,
    /// The regression's first training and validation dates.
    pub train_from: NaiveDate,
    pub valid_from: NaiveDate,
    /// The classifier's (its lookback may differ; cards written before: the regression's).
    #[serde(default)]
    pub direction_train_from: Option<NaiveDate>,
    #[serde(default)]
    pub direction_valid_from: Option<NaiveDate>,
    pub regression: krxflow_models::lgbm::GbmFit,
    pub direction: krxflow_models::lgbm::GbmFit,
    /// Accuracy on validation of always answering the training set's most frequent direction.
    pub valid_majority_accuracy: f64,
    pub params: serde_json::Value,
    /// What the regression learned (cards written before targets existed: raw).
    #[serde(default)]
    pub target: target::Target,
    /// `target: rank`: the line from the regression's score to a return.
    #[serde(default)]
    pub return_map: Option<target::ReturnMap>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray};

    use super::*;
    use crate::tables;

    fn bars(rows: &[(&str, i32, f64)]) -> RecordBatch {
        let n = rows.len();
        RecordBatch::try_new(
            tables::ohlcv_daily().schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )) as ArrayRef,
                Arc::new(Date32Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![1.0; n])),
                Arc::new(Float64Array::from(vec![1.0; n])),
                Arc::new(Float64Array::from(vec![1.0; n])),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(arrow::array::Int64Array::from(vec![1; n])),
                Arc::new(StringArray::from(vec!["t"; n])),
            ],
        )
        .expect("bars")
    }

    #[test]
    fn forward_returns_step_over_the_codes_own_trading_days() {
        // A gap (halt) between days 3 and 7: the 1-day-ahead close of day 3 is day 7's.
        let b = bars(&[
            ("A", 3, 100.0),
            ("A", 1, 90.0),
            ("A", 7, 110.0),
            ("B", 3, 10.0),
        ]);
        let c = Closes::from_bars(&b).expect("closes");
        assert_eq!(c.close("A", 3), Some(100.0));
        assert!((c.forward_return("A", 3, 1).expect("h1") - 0.1).abs() < 1e-12);
        assert!((c.forward_return("A", 1, 2).expect("h2") - (110.0 / 90.0 - 1.0)).abs() < 1e-12);
        assert_eq!(c.forward_return("A", 7, 1), None, "no future bar: no label");
        assert_eq!(c.forward_return("B", 3, 1), None);
        assert_eq!(c.forward_return("C", 3, 1), None);
    }

    #[test]
    fn feature_lists_are_checked_and_hashed_in_order() {
        let a = vec!["ret_1d".to_string(), "rsi14".to_string()];
        let b = vec!["rsi14".to_string(), "ret_1d".to_string()];
        assert_ne!(feature_hash(&a), feature_hash(&b));
        assert!(validate_features(&a).is_ok());
        let err = validate_features(&["close".to_string()]).expect_err("unknown");
        assert!(err.contains("`close` is not a feature"), "{err}");
        assert!(validate_features(&[]).is_err());
        assert!(validate_features(&[a[0].clone(), a[0].clone()]).is_err());
    }
}
