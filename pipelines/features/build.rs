//! `features.build`: the daily feature table `features_daily` from `ohlcv_daily` (+ the market
//! index when present), optionally with training targets.
//!
//! One pass per code over its (code, date)-sorted slice. Rolling and lagged features are
//! computed for each written row from exactly the rows their formula names (a window's mean
//! and standard deviation are two passes over that window, not a running sum), so a value does
//! not depend on where the read started: an incremental run that reads the last 1,000 trading
//! days writes the same bits as a full refresh, and a daily run computes only the rows it
//! writes. Features defined by a recursion (Wilder's RSI and ATR, the EMAs of MACD) run as one
//! linear pass over the slice.
//!
//! Every feature is documented in [`FEATURES`]. A row is `warmup = true` when any feature that
//! needs history is null for lack of it (never filled with a made-up value).
//!
//! Point-in-time: inputs are read as of `ds` by the engine, so a feature for day D only sees
//! rows dated <= D; targets (`with_targets: true`) use rows after the base date, so rows whose
//! horizon ends after `ds` are excluded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::window::{last_n, mean, sample_sd};
use crate::cols::{date_col, str_col};
use crate::common::dates::days;
use crate::common::direction::Direction;
use crate::tables::{self, FEATURES};

/// Features that may be null without the row being warm-up (external inputs may be absent).
const OPTIONAL_FEATURES: &[&str] = &[
    "mkt_ret_1d",
    "mkt_ret_5d",
    "beta_60d",
    "rel_strength_20d",
    "sent_n_articles",
    "sent_mean",
    "sent_weighted",
    "sent_pos_ratio",
    "sent_neg_ratio",
    "sent_decay3",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildParams {
    /// Add y_ret_h / y_dir_h for these horizons (trading days).
    #[serde(default)]
    pub with_targets: bool,
    /// Only emit rows dated on or after this many trading days before ds (default: all).
    #[serde(default)]
    pub emit_days: Option<u32>,
    /// Index code in the index table used for market features.
    #[serde(default = "default_index")]
    pub index_code: String,
    /// Only upsert rows from `overlap_days` trading days before the table's watermark on:
    /// a daily run rewrites the recent rows (whose targets may have matured) instead of the
    /// whole history. The first run (empty table) writes everything.
    #[serde(default = "default_true")]
    pub incremental: bool,
    #[serde(default = "default_overlap")]
    pub overlap_days: u32,
}

fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    10
}

fn default_index() -> String {
    "KS11".into()
}

/// Wilder-smoothed RSI over one code's closes.
pub fn rsi_wilder(close: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; close.len()];
    if close.len() <= n || n == 0 {
        return out;
    }
    let (mut gain, mut loss) = (0.0, 0.0);
    for i in 1..=n {
        let d = close[i] - close[i - 1];
        if d > 0.0 { gain += d } else { loss -= d }
    }
    gain /= n as f64;
    loss /= n as f64;
    let rsi = |g: f64, l: f64| {
        if l == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + g / l)
        }
    };
    out[n] = Some(rsi(gain, loss));
    for i in n + 1..close.len() {
        let d = close[i] - close[i - 1];
        gain = (gain * (n as f64 - 1.0) + d.max(0.0)) / n as f64;
        loss = (loss * (n as f64 - 1.0) + (-d).max(0.0)) / n as f64;
        out[i] = Some(rsi(gain, loss));
    }
    out
}

/// Exponential moving average seeded with the first value (alpha = 2/(n+1)).
pub fn ema(x: &[f64], n: usize) -> Vec<f64> {
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut out = Vec::with_capacity(x.len());
    let mut prev = None;
    for &v in x {
        let e = match prev {
            None => v,
            Some(p) => alpha * v + (1.0 - alpha) * p,
        };
        out.push(e);
        prev = Some(e);
    }
    out
}

/// MACD (12, 26, 9): (macd, signal, hist); null until the slow EMA has 26 values and the
/// signal 9 MACD values.
/// A feature series with nulls for lack of history.
pub type Series = Vec<Option<f64>>;

pub fn macd(close: &[f64]) -> (Series, Series, Series) {
    let fast = ema(close, 12);
    let slow = ema(close, 26);
    let line: Vec<f64> = fast.iter().zip(&slow).map(|(f, s)| f - s).collect();
    let n = close.len();
    let mut m = vec![None; n];
    let mut s = vec![None; n];
    let mut h = vec![None; n];
    if n < 26 {
        return (m, s, h);
    }
    let sig = ema(&line[25..], 9);
    for i in 25..n {
        m[i] = Some(line[i]);
        if i >= 25 + 8 {
            let sv = sig[i - 25];
            s[i] = Some(sv);
            h[i] = Some(line[i] - sv);
        }
    }
    (m, s, h)
}

/// Wilder ATR(n) normalised by the close.
pub fn atr_norm(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<Option<f64>> {
    let len = close.len();
    let mut out = vec![None; len];
    if len <= n || n == 0 {
        return out;
    }
    let tr = |i: usize| {
        let pc = close[i - 1];
        (high[i] - low[i])
            .max((high[i] - pc).abs())
            .max((low[i] - pc).abs())
    };
    let mut atr = (1..=n).map(tr).sum::<f64>() / n as f64;
    out[n] = Some(atr / close[n]);
    for i in n + 1..len {
        atr = (atr * (n as f64 - 1.0) + tr(i)) / n as f64;
        out[i] = Some(atr / close[i]);
    }
    out
}

/// A feature column, resolved once from its name in [`FEATURES`].
#[derive(Debug, Clone, Copy)]
enum Feature {
    Ret(usize),
    LogRet(usize),
    MaRatio(usize),
    Rsi,
    Macd,
    MacdSignal,
    MacdHist,
    BbPctB,
    Atr,
    Vol20,
    VolumeZ20,
    TurnoverChg,
    HlRange,
    GapOpen,
    High52w,
    Low52w,
    Dow,
    MktRet(usize),
    Beta60,
    RelStrength20,
    SentN,
    SentMean,
    SentWeighted,
    SentPos,
    SentNeg,
    SentDecay3,
}

impl Feature {
    fn of(name: &str) -> Option<Self> {
        use Feature::*;
        Some(match name {
            "ret_1d" => Ret(1),
            "ret_3d" => Ret(3),
            "ret_5d" => Ret(5),
            "ret_10d" => Ret(10),
            "ret_20d" => Ret(20),
            "logret_1d" => LogRet(1),
            "logret_5d" => LogRet(5),
            "logret_20d" => LogRet(20),
            "ma5_ratio" => MaRatio(5),
            "ma20_ratio" => MaRatio(20),
            "ma60_ratio" => MaRatio(60),
            "rsi14" => Rsi,
            "macd" => Macd,
            "macd_signal" => MacdSignal,
            "macd_hist" => MacdHist,
            "bb_pctb" => BbPctB,
            "atr14_norm" => Atr,
            "vol_20d" => Vol20,
            "volume_z20" => VolumeZ20,
            "turnover_chg" => TurnoverChg,
            "hl_range" => HlRange,
            "gap_open" => GapOpen,
            "dist_52w_high" => High52w,
            "dist_52w_low" => Low52w,
            "dow" => Dow,
            "mkt_ret_1d" => MktRet(1),
            "mkt_ret_5d" => MktRet(5),
            "beta_60d" => Beta60,
            "rel_strength_20d" => RelStrength20,
            "sent_n_articles" => SentN,
            "sent_mean" => SentMean,
            "sent_weighted" => SentWeighted,
            "sent_pos_ratio" => SentPos,
            "sent_neg_ratio" => SentNeg,
            "sent_decay3" => SentDecay3,
            _ => return None,
        })
    }
}

/// `None` for zero, like SQL `nullif(x, 0)`.
fn nonzero(x: f64) -> Option<f64> {
    (x != 0.0).then_some(x)
}

/// Index returns (1, 5, 20 rows back) by date for one index code.
type MarketReturns = HashMap<i32, [Option<f64>; 3]>;

fn market_returns(index: &RecordBatch, code: &str) -> OpResult<MarketReturns> {
    let codes = str_col(index, "code")?;
    let dates = date_col(index, "date")?;
    let close = f64_col(index, "close")?;
    let mut rows: Vec<(i32, Option<f64>)> = (0..index.num_rows())
        .filter(|&i| codes.is_valid(i) && codes.value(i) == code && dates.is_valid(i))
        .map(|i| (dates.value(i), close.is_valid(i).then(|| close.value(i))))
        .collect();
    rows.sort_by_key(|r| r.0);
    let mut out = HashMap::with_capacity(rows.len());
    for (i, &(date, c)) in rows.iter().enumerate() {
        let ret = |k: usize| -> Option<f64> {
            let prev = rows.get(i.checked_sub(k)?)?.1?;
            Some(c? / prev - 1.0)
        };
        if out.insert(date, [ret(1), ret(5), ret(20)]).is_some() {
            return Err(OpError::permanent(format!(
                "index `{code}` has two rows for one date (day {date} since 1970-01-01)"
            )));
        }
    }
    Ok(out)
}

/// One `sentiment_daily` row's features.
#[derive(Debug, Clone, Copy)]
struct DaySentiment {
    n: f64,
    mean: Option<f64>,
    weighted: Option<f64>,
    pos: Option<f64>,
    neg: Option<f64>,
}

fn sentiment_by_day(sent: &RecordBatch) -> OpResult<HashMap<(&str, i32), DaySentiment>> {
    let codes = str_col(sent, "code")?;
    let dates = date_col(sent, "date")?;
    let n = f64_col(sent, "n_articles")?;
    let cols = ["mean_score", "weighted_score", "pos_ratio", "neg_ratio"].map(|c| f64_col(sent, c));
    let [mean, weighted, pos, neg] = cols;
    let (mean, weighted, pos, neg) = (mean?, weighted?, pos?, neg?);
    let opt = |a: &Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let mut out = HashMap::with_capacity(sent.num_rows());
    for i in 0..sent.num_rows() {
        if !codes.is_valid(i) || !dates.is_valid(i) {
            continue;
        }
        let day = DaySentiment {
            n: opt(&n, i).unwrap_or(0.0),
            mean: opt(&mean, i),
            weighted: opt(&weighted, i),
            pos: opt(&pos, i),
            neg: opt(&neg, i),
        };
        if out.insert((codes.value(i), dates.value(i)), day).is_some() {
            return Err(OpError::permanent(format!(
                "sentiment has two rows for code {} on one date",
                codes.value(i)
            )));
        }
    }
    Ok(out)
}

/// One code's bars (a contiguous slice of the sorted input) and what its rows look up.
struct CodeBars<'a> {
    date: &'a [i32],
    open: &'a [f64],
    high: &'a [f64],
    low: &'a [f64],
    close: &'a [f64],
    volume: &'a [f64],
    /// close[t]/close[t-1] - 1 (NaN at t = 0, never read there).
    ret1: Vec<f64>,
    turnover: Vec<f64>,
    mkt: Vec<Option<[Option<f64>; 3]>>,
    sent: Vec<Option<DaySentiment>>,
    with_sentiment: bool,
    rsi: Series,
    macd: Series,
    signal: Series,
    hist: Series,
    atr: Series,
}

impl CodeBars<'_> {
    fn lag_close(&self, t: usize, k: usize) -> Option<f64> {
        t.checked_sub(k).map(|i| self.close[i])
    }

    fn mkt(&self, t: usize, k: usize) -> Option<f64> {
        let j = match k {
            1 => 0,
            5 => 1,
            _ => 2,
        };
        self.mkt[t].and_then(|m| m[j])
    }

    fn sent(&self, t: usize) -> Option<&DaySentiment> {
        self.sent[t].as_ref()
    }

    /// cov(ret_1d, mkt_ret_1d) / var(mkt_ret_1d) over the last 60 rows, when all 60 have both.
    fn beta60(&self, t: usize) -> Option<f64> {
        const N: usize = 60;
        if t < N {
            return None;
        }
        let mut r = [0.0; N];
        let mut m = [0.0; N];
        for (k, i) in (t + 1 - N..=t).enumerate() {
            r[k] = self.ret1[i];
            m[k] = self.mkt(i, 1)?;
        }
        let (mr, mm) = (mean(&r), mean(&m));
        let cov = r
            .iter()
            .zip(&m)
            .map(|(a, b)| (a - mr) * (b - mm))
            .sum::<f64>();
        let var = m.iter().map(|b| (b - mm) * (b - mm)).sum::<f64>();
        // Both sums share the divisor n - 1.
        Some(cov / nonzero(var)?)
    }

    fn value(&self, f: Feature, t: usize) -> Option<f64> {
        let c = self.close[t];
        match f {
            Feature::Ret(k) => Some(c / self.lag_close(t, k)? - 1.0),
            Feature::LogRet(k) => Some((c / self.lag_close(t, k)?).ln()),
            Feature::MaRatio(n) => Some(c / mean(last_n(self.close, t, n)?) - 1.0),
            Feature::Rsi => self.rsi[t],
            Feature::Macd => self.macd[t],
            Feature::MacdSignal => self.signal[t],
            Feature::MacdHist => self.hist[t],
            Feature::Atr => self.atr[t],
            Feature::BbPctB => {
                let w = last_n(self.close, t, 20)?;
                let sd = sample_sd(w);
                Some((c - (mean(w) - 2.0 * sd)) / (4.0 * sd))
            }
            Feature::Vol20 => (t >= 20).then(|| sample_sd(&self.ret1[t - 19..=t])),
            Feature::VolumeZ20 => {
                let w = last_n(self.volume, t, 20)?;
                Some((self.volume[t] - mean(w)) / nonzero(sample_sd(w))?)
            }
            Feature::TurnoverChg => {
                Some(self.turnover[t] / nonzero(self.turnover[t.checked_sub(1)?])? - 1.0)
            }
            Feature::HlRange => Some((self.high[t] - self.low[t]) / c),
            Feature::GapOpen => Some(self.open[t] / self.lag_close(t, 1)? - 1.0),
            Feature::High52w => {
                let w = last_n(self.high, t, 250)?;
                Some(c / w.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 1.0)
            }
            Feature::Low52w => {
                let w = last_n(self.low, t, 250)?;
                Some(c / w.iter().copied().fold(f64::INFINITY, f64::min) - 1.0)
            }
            // 1970-01-01 was a Thursday (4); 0 = Sunday.
            Feature::Dow => Some(f64::from((self.date[t] + 4).rem_euclid(7))),
            Feature::MktRet(k) => self.mkt(t, k),
            Feature::Beta60 => self.beta60(t),
            Feature::RelStrength20 => Some(c / self.lag_close(t, 20)? - 1.0 - self.mkt(t, 20)?),
            Feature::SentN => self
                .with_sentiment
                .then(|| self.sent(t).map_or(0.0, |s| s.n)),
            Feature::SentMean => self.sent(t)?.mean,
            Feature::SentWeighted => self.sent(t)?.weighted,
            Feature::SentPos => self.sent(t)?.pos,
            Feature::SentNeg => self.sent(t)?.neg,
            Feature::SentDecay3 => self.with_sentiment.then(|| {
                let w = |k: usize| {
                    t.checked_sub(k)
                        .and_then(|i| self.sent(i))
                        .and_then(|s| s.weighted)
                        .unwrap_or(0.0)
                };
                w(0) + 0.5 * w(1) + 0.25 * w(2)
            }),
        }
    }
}

/// A numeric column as f64 (volume is Int64).
fn f64_col(b: &RecordBatch, name: &str) -> OpResult<Float64Array> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| OpError::permanent(format!("column `{name}` missing")))?;
    let c = arrow::compute::cast(c, &DataType::Float64)?;
    c.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| OpError::permanent(format!("column `{name}` is not numeric")))
}

/// Bars sorted by (code, date).
fn sorted_bars(bars: &RecordBatch) -> OpResult<RecordBatch> {
    let key = |name: &str| -> OpResult<arrow::compute::SortColumn> {
        Ok(arrow::compute::SortColumn {
            values: bars
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| OpError::permanent(format!("bars.{name} missing")))?,
            options: None,
        })
    };
    let idx = arrow::compute::lexsort_to_indices(&[key("code")?, key("date")?], None)?;
    Ok(arrow::compute::take_record_batch(bars, &idx)?)
}

/// Computes the feature batch (schema [`features_daily_schema`]) from bars and optional index
/// and sentiment rows; `targets` adds y_ret/y_dir for horizons 1, 3, 5.
pub async fn build_features(
    bars: &RecordBatch,
    index: Option<&RecordBatch>,
    sentiment: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
) -> OpResult<RecordBatch> {
    compute_features(bars, index, sentiment, index_code, targets, None)
}

/// [`build_features`] for the rows dated on or after `from` only (all when `None`). Every
/// value depends only on the rows its formula names, so the rows returned are exactly those a
/// build over all rows returns for the same dates (the recursive indicators given enough
/// history to forget their seed, see [`INCREMENTAL_HISTORY_DAYS`]).
pub fn compute_features(
    bars: &RecordBatch,
    index: Option<&RecordBatch>,
    sentiment: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
    from: Option<NaiveDate>,
) -> OpResult<RecordBatch> {
    let schema = tables::features_daily().schema;
    if bars.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let features: Vec<Feature> = FEATURES
        .iter()
        .map(|(name, _)| {
            Feature::of(name)
                .ok_or_else(|| OpError::permanent(format!("feature `{name}` not computed")))
        })
        .collect::<OpResult<_>>()?;
    let history: Vec<bool> = FEATURES
        .iter()
        .map(|(name, _)| !OPTIONAL_FEATURES.contains(name))
        .collect();
    let from = from.map(days);

    let sorted = sorted_bars(bars)?;
    let code = str_col(&sorted, "code")?;
    let date = date_col(&sorted, "date")?;
    let [open, high, low, close, volume] =
        ["open", "high", "low", "close", "volume"].map(|c| f64_col(&sorted, c));
    let (open, high, low, close, volume) = (open?, high?, low?, close?, volume?);
    for (name, a) in [
        ("open", &open),
        ("high", &high),
        ("low", &low),
        ("close", &close),
    ] {
        if a.null_count() > 0 {
            return Err(OpError::permanent(format!("bars.{name} has nulls")));
        }
    }
    let mkt = match index {
        Some(ix) if ix.num_rows() > 0 => Some(market_returns(ix, index_code)?),
        _ => None,
    };
    let sent = sentiment.map(sentiment_by_day).transpose()?;

    let n = sorted.num_rows();
    let mut emitted: Vec<u32> = Vec::new();
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); features.len()];
    let mut warmup: Vec<bool> = Vec::new();
    let mut y: [Vec<Option<f64>>; 3] = Default::default();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && code.value(end) == code.value(start) {
            end += 1;
        }
        let c = &close.values()[start..end];
        let dates = &date.values()[start..end];
        let first = from.map_or(0, |f| dates.partition_point(|&d| d < f));
        // With targets a row needs its next close (y_ret_1d): the code's last row is left out.
        let last = if targets {
            end - start - 1
        } else {
            end - start
        };
        if first < last {
            let v = &volume.values()[start..end];
            let (m, s, h) = macd(c);
            let code_str = code.value(start);
            let bars = CodeBars {
                date: dates,
                open: &open.values()[start..end],
                high: &high.values()[start..end],
                low: &low.values()[start..end],
                close: c,
                volume: v,
                ret1: (0..c.len())
                    .map(|t| {
                        if t == 0 {
                            f64::NAN
                        } else {
                            c[t] / c[t - 1] - 1.0
                        }
                    })
                    .collect(),
                turnover: c.iter().zip(v).map(|(c, v)| c * v).collect(),
                mkt: dates
                    .iter()
                    .map(|d| mkt.as_ref().and_then(|m| m.get(d).copied()))
                    .collect(),
                sent: dates
                    .iter()
                    .map(|d| sent.as_ref().and_then(|s| s.get(&(code_str, *d)).copied()))
                    .collect(),
                with_sentiment: sent.is_some(),
                rsi: rsi_wilder(c, 14),
                macd: m,
                signal: s,
                hist: h,
                atr: atr_norm(&high.values()[start..end], &low.values()[start..end], c, 14),
            };
            for t in first..last {
                emitted.push((start + t) as u32);
                let mut warm = false;
                for (k, f) in features.iter().enumerate() {
                    let x = bars.value(*f, t);
                    warm |= history[k] && x.is_none();
                    values[k].push(x);
                }
                warmup.push(warm);
                if targets {
                    for (k, h) in [1usize, 3, 5].into_iter().enumerate() {
                        y[k].push(c.get(t + h).map(|f| f / c[t] - 1.0));
                    }
                }
            }
        }
        start = end;
    }

    let take = arrow::array::UInt32Array::from(emitted);
    let mut cols: Vec<ArrayRef> = vec![
        arrow::compute::take(code, &take, None)?,
        arrow::compute::take(date, &take, None)?,
    ];
    cols.extend(
        values
            .into_iter()
            .map(|v| Arc::new(Float64Array::from(v)) as ArrayRef),
    );
    cols.push(Arc::new(BooleanArray::from(warmup)));
    let rows = take.len();
    for ret in y {
        if targets {
            let dir: StringArray = ret
                .iter()
                .map(|r| r.map(|r| Direction::of_return(r).as_str()))
                .collect();
            cols.push(Arc::new(Float64Array::from(ret)));
            cols.push(Arc::new(dir));
        } else {
            cols.push(arrow::array::new_null_array(&DataType::Float64, rows));
            cols.push(arrow::array::new_null_array(&DataType::Utf8, rows));
        }
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

pub struct BuildFeatures;

struct Configured {
    p: BuildParams,
}

#[async_trait]
impl Operator for BuildFeatures {
    fn kind(&self) -> &'static str {
        "features.build"
    }
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "Daily features (returns, moving averages, RSI, MACD, Bollinger, ATR, volume, 52w, market) and optional targets"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "with_targets",
                "bool",
                "false",
                "add y_ret_{1,3,5}d and y_dir_{1,3,5}d (rows whose 1-day target is after ds are excluded)",
            ),
            ParamSpec::optional(
                "emit_days",
                "u32",
                "all",
                "only upsert rows of the last N trading days up to ds",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "only upsert rows from overlap_days trading days before the table's watermark",
            ),
            ParamSpec::optional(
                "overlap_days",
                "u32",
                "10",
                "trading days rewritten before the watermark (must cover the longest target horizon)",
            ),
            ParamSpec::optional(
                "index_code",
                "string",
                "KS11",
                "index code (in the index table) for market features",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new("bars", tables::ohlcv_daily().schema, "daily bars"),
            InputPort::new("index", tables::index_daily().schema, "market index bars").optional(),
            InputPort::new(
                "sentiment",
                tables::sentiment_daily().schema,
                "daily news sentiment",
            )
            .optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::features_daily(), "features", WriteMode::Merge)
                .doc("one row per code and date")
                .with_watermark(),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: BuildParams = parse_params(params)?;
        if p.with_targets && p.incremental && p.overlap_days < 5 {
            return Err(ConfigError::new(
                "overlap_days",
                "must be >= 5 with targets (the 5-day target matures 5 trading days later)",
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

/// Trading days of history an incremental run reads before ds: more than the longest window
/// (250) plus the overlap, and long enough for the recursive indicators (Wilder 14, EMA 26) to
/// forget their seed: its weight is at most (13/14)^700 ≈ 3e-23, far below f64 resolution.
pub const INCREMENTAL_HISTORY_DAYS: i64 = 1000;

/// Trading days of history an emitted row needs before it (the 250-day window, with margin).
const WARM_DAYS: i64 = 300;

impl Configured {
    /// The first date this run writes: `emit_days` before ds, or the watermark minus the overlap
    /// when incremental; `None` = all history.
    fn emit_from(
        &self,
        ds: NaiveDate,
        watermark: Option<NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        let by_emit = self
            .p
            .emit_days
            .map(|n| cal.add_trading_days(ds, -(i64::from(n) - 1)));
        let by_watermark = watermark
            .filter(|_| self.p.incremental)
            .map(|w| cal.add_trading_days(w, -i64::from(self.p.overlap_days)));
        by_emit.max(by_watermark)
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// A run that writes only recent rows reads the last [`INCREMENTAL_HISTORY_DAYS`] trading
    /// days, a window fixed relative to ds (so a re-run of ds reads the same rows whatever the
    /// watermark); when the rows to write start too early for that window, all history.
    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        watermarks: &BTreeMap<String, NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        if !matches!(port, "bars" | "index" | "sentiment") {
            return None;
        }
        let from = self.emit_from(ds, watermarks.get("features").copied(), cal)?;
        let since = cal.add_trading_days(ds, -INCREMENTAL_HISTORY_DAYS);
        (cal.add_trading_days(from, -WARM_DAYS) >= since).then_some(since)
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.concat("bars")?;
        let index = if inputs.has("index") {
            Some(inputs.concat("index")?)
        } else {
            None
        };
        let sentiment = if inputs.has("sentiment") {
            Some(inputs.concat("sentiment")?)
        } else {
            None
        };
        let from = self.emit_from(
            ctx.ds,
            ctx.watermarks.get("features").copied(),
            ctx.calendar.as_ref(),
        );
        let out = compute_features(
            &bars,
            index.as_ref(),
            sentiment.as_ref(),
            &self.p.index_code,
            self.p.with_targets,
            from,
        )?;
        let warm = out
            .column_by_name("warmup")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::BooleanArray>())
            .map(|b| b.true_count())
            .unwrap_or(0);
        ctx.counters.add("rows", out.num_rows() as i64);
        ctx.counters.add("warmup_rows", warm as i64);
        Ok(OutputBatches::new().with("features", vec![out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::direction::FLAT_BAND;

    #[test]
    fn rsi_matches_a_hand_computed_wilder_series() {
        // 15 closes: 14 changes of +1 then -1 alternating, starting +1.
        let closes: Vec<f64> = (0..16).map(|i| 100.0 + (i % 2) as f64).collect();
        let r = rsi_wilder(&closes, 14);
        assert!(r[13].is_none());
        // changes 1..=14: +1,-1,... -> 7 gains of 1 and 7 losses of 1: RSI 50.
        assert!((r[14].unwrap() - 50.0).abs() < 1e-12);
        // change 15 is +1 -> avg_gain = (0.5*13+1)/14, avg_loss = 0.5*13/14.
        let g = (0.5 * 13.0 + 1.0) / 14.0;
        let l = 0.5 * 13.0 / 14.0;
        assert!((r[15].unwrap() - (100.0 - 100.0 / (1.0 + g / l))).abs() < 1e-12);
    }

    #[test]
    fn ema_and_macd_follow_their_recursions() {
        let x = [1.0, 2.0, 3.0];
        let e = ema(&x, 3); // alpha 0.5
        assert_eq!(e, vec![1.0, 1.5, 2.25]);
        let closes: Vec<f64> = (1..=40).map(|i| i as f64).collect();
        let (m, s, h) = macd(&closes);
        assert!(m[24].is_none() && m[25].is_some());
        assert!(s[32].is_none() && s[33].is_some());
        let fast = ema(&closes, 12);
        let slow = ema(&closes, 26);
        assert!((m[30].unwrap() - (fast[30] - slow[30])).abs() < 1e-12);
        assert!((h[35].unwrap() - (m[35].unwrap() - s[35].unwrap())).abs() < 1e-12);
    }

    #[test]
    fn atr_uses_the_true_range_with_wilder_smoothing() {
        let n = 16;
        let close: Vec<f64> = vec![10.0; n];
        let high: Vec<f64> = vec![11.0; n];
        let mut low: Vec<f64> = vec![9.0; n];
        low[15] = 7.0; // true range 4 on the last day
        let a = atr_norm(&high, &low, &close, 14);
        assert!((a[14].unwrap() - 0.2).abs() < 1e-12); // ATR 2 / close 10
        let atr15 = (2.0 * 13.0 + 4.0) / 14.0;
        assert!((a[15].unwrap() - atr15 / 10.0).abs() < 1e-12);
    }

    use crate::testutil::d;
    use arrow::array::{BooleanArray, Date32Array, Int64Array};
    use krxflow_core::Calendar;

    fn day(x: chrono::NaiveDate) -> i32 {
        days(x)
    }

    /// Deterministic bars for `codes` on `n` weekdays from 2024-01-01.
    fn fixture(codes: &[&str], n: usize) -> (RecordBatch, RecordBatch, RecordBatch) {
        let cal = krxflow_core::WeekdayCalendar::default();
        let dates = cal.trading_days(d("2024-01-01"), d("2030-01-01"));
        let dates = &dates[..n];
        let (mut c, mut dt, mut o, mut h, mut l, mut cl, mut v) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for (k, code) in codes.iter().enumerate() {
            for (i, x) in dates.iter().enumerate() {
                let t = i as f64;
                let close = 100.0 + 10.0 * ((t + k as f64) / 7.0).sin() + t * 0.1;
                c.push(code.to_string());
                dt.push(day(*x));
                o.push(close * (1.0 + 0.01 * (t / 3.0).cos()));
                h.push(close * 1.02);
                l.push(close * 0.97);
                cl.push(close);
                v.push(1000 + ((i * 37 + k * 11) % 200) as i64);
            }
        }
        let bars = RecordBatch::try_new(
            tables::ohlcv_daily().schema,
            vec![
                Arc::new(StringArray::from(c.clone())) as ArrayRef,
                Arc::new(Date32Array::from(dt.clone())),
                Arc::new(Float64Array::from(o)),
                Arc::new(Float64Array::from(h)),
                Arc::new(Float64Array::from(l)),
                Arc::new(Float64Array::from(cl)),
                Arc::new(Int64Array::from(v)),
                Arc::new(StringArray::from(vec!["t"; c.len()])),
            ],
        )
        .unwrap();
        let ix_close: Vec<f64> = (0..n)
            .map(|i| 2500.0 + 30.0 * (i as f64 / 5.0).sin())
            .collect();
        let index = RecordBatch::try_new(
            tables::index_daily().schema,
            vec![
                Arc::new(StringArray::from(vec!["KS11"; n])) as ArrayRef,
                Arc::new(Date32Array::from_iter_values(dates.iter().map(|x| day(*x)))),
                Arc::new(Float64Array::from(vec![None::<f64>; n])),
                Arc::new(Float64Array::from(vec![None::<f64>; n])),
                Arc::new(Float64Array::from(vec![None::<f64>; n])),
                Arc::new(Float64Array::from(ix_close)),
                Arc::new(StringArray::from(vec!["t"; n])),
            ],
        )
        .unwrap();
        // Sentiment on every third day of the first code.
        let sdays: Vec<i32> = dates.iter().step_by(3).map(|x| day(*x)).collect();
        let m = sdays.len();
        let w: Vec<f64> = (0..m).map(|i| ((i % 5) as f64 - 2.0) / 2.0).collect();
        let sentiment = RecordBatch::try_new(
            tables::sentiment_daily().schema,
            vec![
                Arc::new(StringArray::from(vec![codes[0]; m])) as ArrayRef,
                Arc::new(Date32Array::from(sdays)),
                Arc::new(Int64Array::from(vec![2; m])),
                Arc::new(Int64Array::from(vec![2; m])),
                Arc::new(Float64Array::from(w.clone())),
                Arc::new(Float64Array::from(w)),
                Arc::new(Float64Array::from(vec![0.5; m])),
                Arc::new(Float64Array::from(vec![0.5; m])),
                Arc::new(Float64Array::from(vec![0.0; m])),
            ],
        )
        .unwrap();
        (bars, index, sentiment)
    }

    /// Rows of `b` whose date passes `keep`.
    fn dated(b: &RecordBatch, keep: impl Fn(i32) -> bool) -> RecordBatch {
        let dates = b
            .column_by_name("date")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap();
        let keep: BooleanArray = dates.iter().map(|x| Some(keep(x.unwrap()))).collect();
        arrow::compute::filter_record_batch(b, &keep).unwrap()
    }

    /// Rows of `b` dated on or before `last`.
    fn upto(b: &RecordBatch, last: i32) -> RecordBatch {
        dated(b, |d| d <= last)
    }

    fn value(b: &RecordBatch, col: &str, row: usize) -> Option<f64> {
        let c = b.column_by_name(col).unwrap();
        let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
        (!c.is_null(row)).then(|| c.value(row))
    }

    #[tokio::test]
    async fn features_for_day_d_are_identical_after_later_rows_are_appended() {
        let (bars, index, sent) = fixture(&["000001", "000002", "000003"], 320);
        let dates = bars
            .column_by_name("date")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap()
            .value(279);
        let (b_d, i_d, s_d) = (upto(&bars, dates), upto(&index, dates), upto(&sent, dates));
        let at_d = build_features(&b_d, Some(&i_d), Some(&s_d), "KS11", false)
            .await
            .unwrap();
        let later = build_features(&bars, Some(&index), Some(&sent), "KS11", false)
            .await
            .unwrap();
        assert_eq!(at_d.num_rows(), 3 * 280);
        assert_eq!(later.num_rows(), 3 * 320);
        let later_upto_d = upto(&later, dates);
        assert_eq!(
            at_d, later_upto_d,
            "a feature for day <= D changed when rows after D appeared"
        );
        // Targets use the future by definition: with them, rows whose 1-day target is after D
        // are excluded, and every target present at D is final.
        let t_d = build_features(&b_d, Some(&i_d), Some(&s_d), "KS11", true)
            .await
            .unwrap();
        assert_eq!(t_d.num_rows(), 3 * 279);
        let prev_day = bars
            .column_by_name("date")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap()
            .value(278);
        let t_later = upto(
            &build_features(&bars, Some(&index), Some(&sent), "KS11", true)
                .await
                .unwrap(),
            prev_day,
        );
        assert_eq!(t_later.num_rows(), t_d.num_rows());
        for h in [1usize, 3, 5] {
            let col = format!("y_ret_{h}d");
            let known = arrow::compute::is_not_null(t_d.column_by_name(&col).unwrap()).unwrap();
            assert_eq!(
                known.true_count(),
                3 * (280 - h),
                "{col}: targets after D are null"
            );
            let at_d = arrow::compute::filter(t_d.column_by_name(&col).unwrap(), &known).unwrap();
            let final_ =
                arrow::compute::filter(t_later.column_by_name(&col).unwrap(), &known).unwrap();
            assert_eq!(&at_d, &final_, "{col}: every target known at D is final");
        }
    }

    #[tokio::test]
    async fn features_match_hand_computed_values() {
        let (bars, index, sent) = fixture(&["000001"], 70);
        let f = build_features(&bars, Some(&index), Some(&sent), "KS11", true)
            .await
            .unwrap();
        let col = |n: &str| {
            let c = bars.column_by_name(n).unwrap();
            let c = arrow::compute::cast(c, &DataType::Float64).unwrap();
            c.as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        let (o, h, l, c, v) = (
            col("open"),
            col("high"),
            col("low"),
            col("close"),
            col("volume"),
        );
        let t = 64;
        let close = |i: usize| c[i];
        let near = |a: Option<f64>, b: f64, what: &str| {
            let a = a.unwrap_or_else(|| panic!("{what} is null"));
            assert!(
                (a - b).abs() < 1e-9 * b.abs().max(1.0),
                "{what}: {a} vs {b}"
            );
        };
        near(
            value(&f, "ret_5d", t),
            close(t) / close(t - 5) - 1.0,
            "ret_5d",
        );
        near(
            value(&f, "logret_1d", t),
            (close(t) / close(t - 1)).ln(),
            "logret_1d",
        );
        let ma20: f64 = (t - 19..=t).map(close).sum::<f64>() / 20.0;
        near(
            value(&f, "ma20_ratio", t),
            close(t) / ma20 - 1.0,
            "ma20_ratio",
        );
        let sd20 = ((t - 19..=t).map(|i| (close(i) - ma20).powi(2)).sum::<f64>() / 19.0).sqrt();
        near(
            value(&f, "bb_pctb", t),
            (close(t) - (ma20 - 2.0 * sd20)) / (4.0 * sd20),
            "bb_pctb",
        );
        let vm: f64 = (t - 19..=t).map(|i| v[i]).sum::<f64>() / 20.0;
        let vs = ((t - 19..=t).map(|i| (v[i] - vm).powi(2)).sum::<f64>() / 19.0).sqrt();
        near(value(&f, "volume_z20", t), (v[t] - vm) / vs, "volume_z20");
        near(
            value(&f, "gap_open", t),
            o[t] / close(t - 1) - 1.0,
            "gap_open",
        );
        near(
            value(&f, "hl_range", t),
            (h[t] - l[t]) / close(t),
            "hl_range",
        );
        near(
            value(&f, "rsi14", t),
            rsi_wilder(&c, 14)[t].unwrap(),
            "rsi14 in the table = the Wilder recursion",
        );
        near(
            value(&f, "atr14_norm", t),
            atr_norm(&h, &l, &c, 14)[t].unwrap(),
            "atr",
        );
        near(
            value(&f, "macd_signal", t),
            macd(&c).1[t].unwrap(),
            "macd_signal",
        );
        // Market: index closes 2500 + 30 sin(i/5).
        let ix = |i: usize| 2500.0 + 30.0 * (i as f64 / 5.0).sin();
        near(
            value(&f, "mkt_ret_1d", t),
            ix(t) / ix(t - 1) - 1.0,
            "mkt_ret_1d",
        );
        near(
            value(&f, "rel_strength_20d", t),
            close(t) / close(t - 20) - 1.0 - (ix(t) / ix(t - 20) - 1.0),
            "rel_strength_20d",
        );
        // Sentiment on days 0, 3, 6, ...: w = ((k % 5) - 2) / 2 for the k-th sentiment day.
        let w = |i: usize| {
            if i.is_multiple_of(3) {
                (((i / 3) % 5) as f64 - 2.0) / 2.0
            } else {
                0.0
            }
        };
        for t in [63, 64, 65] {
            near(
                value(&f, "sent_decay3", t),
                w(t) + 0.5 * w(t - 1) + 0.25 * w(t - 2),
                "sent_decay3",
            );
        }
        assert_eq!(value(&f, "sent_n_articles", 64), Some(0.0));
        assert_eq!(value(&f, "sent_n_articles", 63), Some(2.0));
        // Warm-up: the 250-day 52-week window is never full in 70 rows.
        let warm = f
            .column_by_name("warmup")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(warm.true_count(), f.num_rows());
        // Targets: up/flat/down with the ±0.3% band.
        let y = f
            .column_by_name("y_dir_1d")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let r = close(t + 1) / close(t) - 1.0;
        let want = if r > FLAT_BAND {
            "up"
        } else if r < -FLAT_BAND {
            "down"
        } else {
            "flat"
        };
        assert_eq!(y.value(t), want);
        assert_eq!(f.num_rows(), 69, "the last row's 1-day target is unknown");
    }

    /// Rows of `b` dated on or after `first`.
    fn since(b: &RecordBatch, first: i32) -> RecordBatch {
        dated(b, |d| d >= first)
    }

    #[test]
    fn a_build_from_a_date_on_a_trailing_window_writes_the_bits_of_a_full_build() {
        let (bars, index, sent) = fixture(&["000001", "000002"], 1300);
        let full = compute_features(&bars, Some(&index), Some(&sent), "KS11", false, None).unwrap();
        let date = |i: usize| {
            bars.column_by_name("date")
                .unwrap()
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(i)
        };
        // What a daily run reads and writes: the last 1,000 rows, the last 10 days written.
        let (read_from, write_from) = (date(300), date(1290));
        let part = compute_features(
            &since(&bars, read_from),
            Some(&since(&index, read_from)),
            Some(&since(&sent, read_from)),
            "KS11",
            false,
            Some(crate::common::dates::date_of(write_from)),
        )
        .unwrap();
        assert_eq!(part.num_rows(), 2 * 10);
        assert_eq!(part, since(&full, write_from), "not bit-identical");

        // Windows that 70 rows cannot fill, by hand on the full build (code 000001 = rows 0..).
        let close = |i: usize| 100.0 + 10.0 * (i as f64 / 7.0).sin() + i as f64 * 0.1;
        let ix = |i: usize| 2500.0 + 30.0 * (i as f64 / 5.0).sin();
        let t = 300;
        let r: Vec<f64> = (t - 59..=t)
            .map(|i| close(i) / close(i - 1) - 1.0)
            .collect();
        let m: Vec<f64> = (t - 59..=t).map(|i| ix(i) / ix(i - 1) - 1.0).collect();
        let (mr, mm) = (mean(&r), mean(&m));
        let cov: f64 = r.iter().zip(&m).map(|(a, b)| (a - mr) * (b - mm)).sum();
        let var: f64 = m.iter().map(|b| (b - mm) * (b - mm)).sum();
        let high52 = (t - 249..=t)
            .map(|i| close(i) * 1.02)
            .fold(f64::MIN, f64::max);
        let low52 = (t - 249..=t)
            .map(|i| close(i) * 0.97)
            .fold(f64::MAX, f64::min);
        for (col, want) in [
            ("beta_60d", cov / var),
            ("dist_52w_high", close(t) / high52 - 1.0),
            ("dist_52w_low", close(t) / low52 - 1.0),
        ] {
            let got = value(&full, col, t).unwrap();
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{col}: {got} vs {want}"
            );
        }
        assert_eq!(
            value(&full, "dist_52w_high", 248),
            None,
            "249 rows: not a 52-week window"
        );
        let warm = full
            .column_by_name("warmup")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert!(
            warm.value(248) && !warm.value(249),
            "warm-up ends when the 250-row window fills"
        );
    }

    #[test]
    fn the_features_doc_lists_exactly_the_computed_features_and_formulas() {
        let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/features.md");
        let doc = std::fs::read_to_string(doc_path).unwrap();
        let rows: Vec<(String, String)> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let (name, rest) = l.split_once("` | ")?;
                Some((name.to_string(), rest.strip_suffix(" |")?.to_string()))
            })
            .collect();
        let want: Vec<(String, String)> = FEATURES
            .iter()
            .map(|(n, f)| (n.to_string(), f.to_string()))
            .collect();
        assert_eq!(rows, want, "docs/features.md is out of date with FEATURES");
        let schema = tables::features_daily().schema;
        for (name, _) in FEATURES {
            assert!(
                schema.field_with_name(name).is_ok(),
                "{name} not in the table"
            );
        }
    }
}
