//! `features.returns`: 1/5/20-day simple returns and 20-day realised volatility per code.
//!
//! Each row is computed from exactly the rows its formula names (like `features.build`): a
//! return from the close `k` rows earlier in the same code, the volatility as the sample
//! standard deviation (two passes) of the last 20 one-day returns, present only when all 20
//! exist. So a value never depends on where the input started, and later rows never change
//! earlier ones.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::window::sample_sd;
use crate::cols::{date_col, f64_col, str_col};
use crate::common::dates::days;
use crate::tables;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReturnsParams {
    /// Only emit rows dated on or after this date.
    #[serde(default)]
    pub min_date: Option<NaiveDate>,
}

/// Rows in the volatility window.
const VOL_WINDOW: usize = 20;

/// The window's values when every one is present.
fn complete(xs: &[Option<f64>]) -> Option<Vec<f64>> {
    xs.iter().copied().collect()
}

/// `close[i] / close[i - k] - 1` within one code's date-ordered closes.
fn ret(closes: &[Option<f64>], i: usize, k: usize) -> Option<f64> {
    let prev = closes.get(i.checked_sub(k)?).copied()??;
    Some(closes[i]? / prev - 1.0)
}

/// Computes the feature rows for `bars` (any schema with code, date, close), ordered by code
/// and date.
pub fn compute(bars: &RecordBatch, min_date: Option<NaiveDate>) -> OpResult<RecordBatch> {
    let (codes, dates, close) = (
        str_col(bars, "code")?,
        date_col(bars, "date")?,
        f64_col(bars, "close")?,
    );
    let mut order: Vec<usize> = (0..bars.num_rows()).collect();
    order.sort_by(|&a, &b| (codes.value(a), dates.value(a)).cmp(&(codes.value(b), dates.value(b))));
    let from = min_date.map(days);
    let n = order.len();
    let (mut code_out, mut date_out) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut cols: [Vec<Option<f64>>; 4] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut warm = Vec::with_capacity(n);
    for rows in order.chunk_by(|&a, &b| codes.value(a) == codes.value(b)) {
        let closes: Vec<Option<f64>> = rows
            .iter()
            .map(|&r| close.is_valid(r).then(|| close.value(r)))
            .collect();
        let r1: Vec<Option<f64>> = (0..rows.len()).map(|i| ret(&closes, i, 1)).collect();
        for (i, &row) in rows.iter().enumerate() {
            let date = dates.value(row);
            if from.is_some_and(|f| date < f) {
                continue;
            }
            let vol = (i + 1 >= VOL_WINDOW)
                .then(|| complete(&r1[i + 1 - VOL_WINDOW..=i]).map(|w| sample_sd(&w)))
                .flatten();
            let values = [r1[i], ret(&closes, i, 5), ret(&closes, i, 20), vol];
            warm.push(values.iter().any(Option::is_none));
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
            code_out.push(codes.value(row));
            date_out.push(date);
        }
    }
    let [r1, r5, r20, vol] = cols;
    Ok(RecordBatch::try_new(
        tables::features_returns().schema,
        vec![
            Arc::new(StringArray::from(code_out)),
            Arc::new(Date32Array::from(date_out)),
            Arc::new(Float64Array::from(r1)),
            Arc::new(Float64Array::from(r5)),
            Arc::new(Float64Array::from(r20)),
            Arc::new(Float64Array::from(vol)),
            Arc::new(BooleanArray::from(warm)),
        ],
    )?)
}

pub struct FeaturesReturns;

struct Configured {
    p: ReturnsParams,
}

#[async_trait]
impl Operator for FeaturesReturns {
    fn kind(&self) -> &'static str {
        "features.returns"
    }
    fn version(&self) -> u32 {
        // 2: computed in Rust from exactly each row's window (1 used DataFusion window SQL,
        // whose sliding variance could differ in the last bits).
        2
    }
    fn description(&self) -> &'static str {
        "1/5/20-day returns and 20-day realised volatility per code (warm-up rows marked)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::optional(
            "min_date",
            "date",
            "all",
            "only emit rows from this date on",
        )]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![InputPort::new(
            "bars",
            tables::ohlcv_daily().schema,
            "daily bars as of ds",
        )]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::features_returns(), "features", WriteMode::Merge)
                .doc("returns per code and date"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(Configured {
            p: parse_params(params)?,
        }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.concat("bars")?;
        let out = compute(&bars, self.p.min_date)?;
        ctx.counters.add("rows", out.num_rows() as i64);
        Ok(OutputBatches::new().with("features", vec![out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::d;
    use arrow::array::{Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};

    fn bars(code: &str, closes: &[f64], first: NaiveDate) -> RecordBatch {
        let n = closes.len();
        let start = days(first);
        RecordBatch::try_new(
            tables::ohlcv_daily().schema,
            vec![
                Arc::new(StringArray::from(vec![code; n])),
                Arc::new(Date32Array::from_iter_values(
                    (0..n as i32).map(|i| start + i),
                )),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Int64Array::from(vec![1; n])),
                Arc::new(StringArray::from(vec!["t"; n])),
            ],
        )
        .unwrap()
    }

    fn col(b: &RecordBatch, name: &str) -> Float64Array {
        b.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    }

    fn closes() -> Vec<f64> {
        (0..25)
            .map(|i| 100.0 * (1.0 + 0.01 * ((i * 7 % 5) as f64 - 2.0)).powi(i))
            .collect()
    }

    #[test]
    fn values_match_hand_computation() {
        let c = closes();
        let out = compute(&bars("A", &c, d("2024-01-01")), None).unwrap();
        assert_eq!(out.num_rows(), 25);
        let r1 = col(&out, "ret_1d");
        let r5 = col(&out, "ret_5d");
        let v = col(&out, "vol_20d");
        assert!(r1.is_null(0));
        assert!((r1.value(3) - (c[3] / c[2] - 1.0)).abs() < 1e-12);
        assert!((r5.value(7) - (c[7] / c[2] - 1.0)).abs() < 1e-12);
        // vol_20d at row 24: sample std of the 20 returns of rows 5..=24.
        let rets: Vec<f64> = (5..=24).map(|i| c[i] / c[i - 1] - 1.0).collect();
        let mean = rets.iter().sum::<f64>() / 20.0;
        let sd = (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 19.0).sqrt();
        assert!((v.value(24) - sd).abs() < 1e-12);
        assert!(v.is_null(19), "only 19 returns exist at row 19");
        let warm = out
            .column_by_name("warmup")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert!(warm.value(19) && !warm.value(20));
    }

    #[test]
    fn min_date_emits_later_rows_from_windows_that_reach_back() {
        let c = closes();
        let all = compute(&bars("A", &c, d("2024-01-01")), None).unwrap();
        let late = compute(&bars("A", &c, d("2024-01-01")), Some(d("2024-01-22"))).unwrap();
        assert_eq!(late.num_rows(), 4);
        assert_eq!(late, all.slice(21, 4));
        assert!(!col(&late, "vol_20d").is_null(0));
    }

    #[test]
    fn later_rows_do_not_change_earlier_features() {
        let c = closes();
        let short = compute(&bars("A", &c[..22], d("2024-01-01")), None).unwrap();
        let long = compute(&bars("A", &c, d("2024-01-01")), None).unwrap();
        assert_eq!(short, long.slice(0, 22));
    }

    #[test]
    fn codes_do_not_leak_into_each_other() {
        let c = closes();
        let a = bars("A", &c, d("2024-01-01"));
        let b = bars(
            "B",
            &c.iter().map(|x| x * 2.0).collect::<Vec<_>>(),
            d("2024-01-01"),
        );
        let both = arrow::compute::concat_batches(&a.schema(), &[b, a.clone()]).unwrap();
        let out = compute(&both, None).unwrap();
        let only_a = compute(&a, None).unwrap();
        assert_eq!(out.slice(0, 25), only_a);
        assert!(
            col(&out, "ret_1d").is_null(25),
            "first row of B has no previous close"
        );
    }
}
