//! `momentum.minute`: intraday momentum class per code from 1-minute bars (`ohlcv_minute`)
//! into `minute_momentum`.
//!
//! For each code, the bars of day `ds` only, sorted by time:
//! 1. Aggregate to 5-minute bars aligned to the clock (09:00–09:04, 09:05–09:09, …): first
//!    open, max high, min low, last close, summed volume. A bucket is complete when it holds
//!    5 minute bars; the trailing bucket (the one still forming) is dropped when incomplete.
//!    An incomplete bucket in the middle of the day (a missing minute) is kept: the market
//!    moved on, the bar is final.
//! 2. Classify the last five 5-minute bars (25 minutes): `green` = close > open count,
//!    `volume_ratio` = mean volume of those five / mean 5-minute volume of the last twelve
//!    (60 minutes; fewer when the day is younger).
//!    * strong_up: 5 of 5 green and ratio ≥ 1.5 (`strong_ratio`)
//!    * weak_up: ≥ 3 green and ratio ≥ 1.0 (`weak_ratio`)
//!    * strong_down: 0 green and ratio ≥ 1.5
//!    * weak_down: ≤ 2 green and ratio < 1.0
//!    * neutral: anything else, fewer than 25 minute bars (`min_minute_bars`), fewer than five
//!      5-minute bars, or no volume in the last hour.
//!
//! Bad bars (non-finite or non-positive prices, negative volume) are skipped and counted
//! `rejected.bad_minute_bar`; a second bar with the same timestamp is counted
//! `rejected.duplicate_minute`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::dates::days;
use crate::tables;

const KST_OFFSET_MS: i64 = 9 * 3_600_000;
const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteBar {
    /// Epoch milliseconds.
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar5 {
    /// Timestamp of the bucket's last minute bar.
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub minutes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    StrongUp,
    WeakUp,
    Neutral,
    WeakDown,
    StrongDown,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StrongUp => "strong_up",
            Self::WeakUp => "weak_up",
            Self::Neutral => "neutral",
            Self::WeakDown => "weak_down",
            Self::StrongDown => "strong_down",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "d_min")]
    pub min_minute_bars: usize,
    #[serde(default = "d_strong")]
    pub strong_ratio: f64,
    #[serde(default = "d_weak")]
    pub weak_ratio: f64,
}

fn d_min() -> usize {
    25
}
fn d_strong() -> f64 {
    1.5
}
fn d_weak() -> f64 {
    1.0
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_minute_bars: d_min(),
            strong_ratio: d_strong(),
            weak_ratio: d_weak(),
        }
    }
}

/// Clock-aligned 5-minute bucket of a timestamp (KST minute of day / 5).
fn bucket(ts: i64) -> i64 {
    (ts + KST_OFFSET_MS).div_euclid(MINUTE_MS * 5)
}

/// Aggregates sorted 1-minute bars into 5-minute bars; the last bucket is dropped unless it
/// holds all 5 minutes.
pub fn aggregate_5m(bars: &[MinuteBar]) -> Vec<Bar5> {
    let mut out: Vec<Bar5> = Vec::new();
    let mut cur: Option<(i64, Bar5)> = None;
    for b in bars {
        let k = bucket(b.ts);
        match &mut cur {
            Some((key, agg)) if *key == k => {
                agg.ts = b.ts;
                agg.high = agg.high.max(b.high);
                agg.low = agg.low.min(b.low);
                agg.close = b.close;
                agg.volume += b.volume;
                agg.minutes += 1;
            }
            _ => {
                if let Some((_, done)) = cur.take() {
                    out.push(done);
                }
                cur = Some((
                    k,
                    Bar5 {
                        ts: b.ts,
                        open: b.open,
                        high: b.high,
                        low: b.low,
                        close: b.close,
                        volume: b.volume,
                        minutes: 1,
                    },
                ));
            }
        }
    }
    if let Some((_, last)) = cur
        && last.minutes == 5
    {
        out.push(last);
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct Momentum {
    pub class: Class,
    pub n_minute_bars: usize,
    pub n_bars_5m: usize,
    pub green: Option<usize>,
    pub volume_ratio: Option<f64>,
    pub as_of: Option<i64>,
}

/// Classifies one code's day from its sorted 1-minute bars.
pub fn classify(bars: &[MinuteBar], t: &Thresholds) -> Momentum {
    let five = aggregate_5m(bars);
    let mut m = Momentum {
        class: Class::Neutral,
        n_minute_bars: bars.len(),
        n_bars_5m: five.len(),
        green: None,
        volume_ratio: None,
        as_of: bars.last().map(|b| b.ts),
    };
    if bars.len() < t.min_minute_bars || five.len() < 5 {
        return m;
    }
    let last5 = &five[five.len() - 5..];
    let last12 = &five[five.len().saturating_sub(12)..];
    let green = last5.iter().filter(|b| b.close > b.open).count();
    let mean = |xs: &[Bar5]| xs.iter().map(|b| b.volume as f64).sum::<f64>() / xs.len() as f64;
    let hour = mean(last12);
    m.green = Some(green);
    if hour <= 0.0 {
        return m;
    }
    let ratio = mean(last5) / hour;
    m.volume_ratio = Some(ratio);
    m.class = if green == 5 && ratio >= t.strong_ratio {
        Class::StrongUp
    } else if green == 0 && ratio >= t.strong_ratio {
        Class::StrongDown
    } else if green >= 3 && ratio >= t.weak_ratio {
        Class::WeakUp
    } else if green <= 2 && ratio < t.weak_ratio {
        Class::WeakDown
    } else {
        Class::Neutral
    };
    m
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> OpResult<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| OpError::permanent(format!("ohlcv_minute.{name} missing or mistyped")))
}

/// Minute bars left out of `minute_momentum`, by reason (`bad_minute_bar`, `duplicate_minute`).
pub type LeftOut = BTreeMap<&'static str, u64>;

/// The `minute_momentum` rows for day `ds` from minute bars, plus counters and the bars left out.
pub fn compute(
    batches: &[RecordBatch],
    ds: NaiveDate,
    t: &Thresholds,
) -> OpResult<(RecordBatch, BTreeMap<String, i64>, LeftOut)> {
    let mut counters: BTreeMap<String, i64> = BTreeMap::new();
    let mut rejected = LeftOut::new();
    let mut by_code: BTreeMap<String, Vec<MinuteBar>> = BTreeMap::new();
    let day = days(ds);
    for b in batches {
        let code = col::<StringArray>(b, "code")?;
        let date = col::<Date32Array>(b, "date")?;
        let ts = col::<TimestampMillisecondArray>(b, "ts")?;
        let f = |n: &str| col::<Float64Array>(b, n);
        let (o, h, l, c) = (f("open")?, f("high")?, f("low")?, f("close")?);
        let v = col::<Int64Array>(b, "volume")?;
        for i in 0..b.num_rows() {
            if date.is_null(i) || date.value(i) != day {
                continue;
            }
            let bar = MinuteBar {
                ts: ts.value(i),
                open: o.value(i),
                high: h.value(i),
                low: l.value(i),
                close: c.value(i),
                volume: v.value(i),
            };
            let prices = [bar.open, bar.high, bar.low, bar.close];
            if prices.iter().any(|p| !p.is_finite() || *p <= 0.0) || bar.volume < 0 {
                *rejected.entry("bad_minute_bar").or_default() += 1;
                continue;
            }
            by_code
                .entry(code.value(i).to_string())
                .or_default()
                .push(bar);
        }
    }
    let mut rows = Vec::with_capacity(by_code.len());
    for (code, mut bars) in by_code {
        bars.sort_by_key(|b| b.ts);
        let before = bars.len();
        bars.dedup_by_key(|b| b.ts);
        let dups = (before - bars.len()) as u64;
        if dups > 0 {
            *rejected.entry("duplicate_minute").or_default() += dups;
        }
        let m = classify(&bars, t);
        *counters
            .entry(format!("class.{}", m.class.as_str()))
            .or_default() += 1;
        rows.push((code, m));
    }
    counters.insert("codes".into(), rows.len() as i64);
    let batch = RecordBatch::try_new(
        tables::minute_momentum().schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )) as ArrayRef,
            Arc::new(Date32Array::from(vec![day; rows.len()])),
            Arc::new(
                TimestampMillisecondArray::from(rows.iter().map(|r| r.1.as_of).collect::<Vec<_>>())
                    .with_timezone("Asia/Seoul"),
            ),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.n_minute_bars as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.1.n_bars_5m as i64),
            )),
            Arc::new(Int64Array::from(
                rows.iter()
                    .map(|r| r.1.green.map(|g| g as i64))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.1.volume_ratio).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.class.as_str()),
            )),
        ],
    )?;
    Ok((batch, counters, rejected))
}

pub struct MinuteMomentum;

struct Configured {
    t: Thresholds,
}

#[async_trait]
impl Operator for MinuteMomentum {
    fn kind(&self) -> &'static str {
        "momentum.minute"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "Intraday momentum class (strong/weak up/down, neutral) from the last five 5-minute bars"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "min_minute_bars",
                "usize",
                "25",
                "fewer minute bars in the day -> neutral",
            ),
            ParamSpec::optional(
                "strong_ratio",
                "f64",
                "1.5",
                "recent / 60-minute volume for strong classes",
            ),
            ParamSpec::optional(
                "weak_ratio",
                "f64",
                "1.0",
                "recent / 60-minute volume for weak classes",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![InputPort::new(
            "bars",
            tables::ohlcv_minute().schema,
            "1-minute bars",
        )]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::minute_momentum(), "momentum", WriteMode::Merge)
                .doc("one class per code and day"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let t: Thresholds = parse_params(params)?;
        if !(t.strong_ratio >= t.weak_ratio && t.weak_ratio >= 0.0) {
            return Err(ConfigError::new(
                "strong_ratio",
                "need strong_ratio >= weak_ratio >= 0",
            ));
        }
        Ok(Box::new(Configured { t }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let (batch, counters, rejected) = compute(inputs.batches("bars")?, ctx.ds, &self.t)?;
        for (k, v) in counters {
            ctx.counters.add(&k, v);
        }
        // No rejects table: the bars are kept out of `momentum` (counted as `rejected.<reason>`).
        for (reason, n) in rejected {
            ctx.rejected("momentum", reason, n);
        }
        Ok(OutputBatches::new().with("momentum", vec![batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-12-16 09:00 KST in epoch ms.
    const OPEN: i64 = 1_734_307_200_000;

    /// Minute bars from 09:00: each 5-minute block is green (`true`) or red, with a volume per
    /// minute.
    fn day(blocks: &[(bool, i64)], extra_minutes: usize) -> Vec<MinuteBar> {
        let mut out = Vec::new();
        let mut px = 100.0;
        for (k, (green, vol)) in blocks.iter().enumerate() {
            for m in 0..5 {
                let step = if *green { 0.1 } else { -0.1 };
                let open = px;
                px += step;
                out.push(MinuteBar {
                    ts: OPEN + ((k * 5 + m) as i64) * MINUTE_MS,
                    open,
                    high: open.max(px) + 0.05,
                    low: open.min(px) - 0.05,
                    close: px,
                    volume: *vol,
                });
            }
        }
        for m in 0..extra_minutes {
            out.push(MinuteBar {
                ts: OPEN + ((blocks.len() * 5 + m) as i64) * MINUTE_MS,
                open: px,
                high: px,
                low: px,
                close: px,
                volume: 1,
            });
        }
        out
    }

    /// Seven quiet blocks (volume 100/min), then five blocks as given.
    fn session(last5: [(bool, i64); 5]) -> Vec<MinuteBar> {
        let mut blocks = vec![(true, 100); 7];
        blocks.extend(last5);
        day(&blocks, 0)
    }

    #[test]
    fn five_minute_bars_take_first_open_extremes_last_close_and_summed_volume() {
        let bars = day(&[(true, 10), (false, 20)], 3);
        let five = aggregate_5m(&bars);
        assert_eq!(five.len(), 2, "the trailing 3-minute bucket is dropped");
        let first = five[0];
        assert_eq!(first.open, bars[0].open);
        assert_eq!(first.close, bars[4].close);
        assert_eq!(first.volume, 50);
        assert_eq!(first.minutes, 5);
        let hi = bars[..5].iter().map(|b| b.high).fold(f64::MIN, f64::max);
        let lo = bars[..5].iter().map(|b| b.low).fold(f64::MAX, f64::min);
        assert_eq!((first.high, first.low), (hi, lo));
        assert_eq!(five[1].volume, 100);
        assert_eq!(five[1].ts, bars[9].ts);
    }

    #[test]
    fn buckets_follow_the_clock_and_a_missing_minute_inside_the_day_is_kept() {
        let mut bars = day(&[(true, 10), (true, 10), (true, 10)], 0);
        bars.remove(6); // 09:06 missing: the 09:05 bucket has 4 minutes but is final
        let five = aggregate_5m(&bars);
        assert_eq!(five.len(), 3);
        assert_eq!(five[1].minutes, 4);
        assert_eq!(five[1].volume, 40);
    }

    #[test]
    fn strong_up_needs_five_green_bars_and_heavy_volume() {
        let m = classify(&session([(true, 300); 5]), &Thresholds::default());
        assert_eq!(m.class, Class::StrongUp);
        assert_eq!(m.green, Some(5));
        // ratio = 1500 / ((7*500 + 5*1500)/12) = 1500 / 916.67
        assert!((m.volume_ratio.unwrap() - 1500.0 / (11_000.0 / 12.0)).abs() < 1e-9);
    }

    #[test]
    fn weak_up_is_three_or_more_green_with_normal_volume() {
        let m = classify(
            &session([
                (true, 100),
                (false, 100),
                (true, 100),
                (true, 100),
                (false, 100),
            ]),
            &Thresholds::default(),
        );
        assert_eq!((m.class, m.green), (Class::WeakUp, Some(3)));
        // five green but volume not heavy enough for strong: weak_up
        let m = classify(&session([(true, 120); 5]), &Thresholds::default());
        assert_eq!(m.class, Class::WeakUp);
    }

    #[test]
    fn strong_down_is_no_green_bar_with_heavy_volume() {
        let m = classify(&session([(false, 400); 5]), &Thresholds::default());
        assert_eq!((m.class, m.green), (Class::StrongDown, Some(0)));
    }

    #[test]
    fn weak_down_is_two_or_fewer_green_with_light_volume() {
        let m = classify(
            &session([
                (false, 50),
                (true, 50),
                (false, 50),
                (true, 50),
                (false, 50),
            ]),
            &Thresholds::default(),
        );
        assert_eq!((m.class, m.green), (Class::WeakDown, Some(2)));
    }

    #[test]
    fn everything_else_and_short_days_are_neutral() {
        // 2 green with heavy volume: neither weak_down (needs light volume) nor an up class.
        let m = classify(
            &session([
                (false, 300),
                (true, 300),
                (false, 300),
                (true, 300),
                (false, 300),
            ]),
            &Thresholds::default(),
        );
        assert_eq!(m.class, Class::Neutral);
        // 3 green but light volume.
        let m = classify(
            &session([(true, 50), (true, 50), (true, 50), (false, 50), (false, 50)]),
            &Thresholds::default(),
        );
        assert_eq!(m.class, Class::Neutral);
        // 24 minute bars: too few, whatever they look like.
        let short: Vec<MinuteBar> = day(&[(true, 1000); 5], 0)[..24].to_vec();
        let m = classify(&short, &Thresholds::default());
        assert_eq!((m.class, m.n_minute_bars), (Class::Neutral, 24));
    }

    /// One session of 005930 on `ds` (reversed, one duplicate minute, one NaN close) and one
    /// bar of 000660 the day before.
    fn sample(ds: NaiveDate) -> RecordBatch {
        let mut bars = session([(true, 300); 5]);
        bars.reverse(); // input order is not trusted
        let dup = bars[0];
        bars.push(dup);
        let mut bad = bars[1];
        bad.close = f64::NAN;
        bars.push(bad);
        let n = bars.len();
        let mut dates = vec![days(ds); n];
        // one bar of the previous day for another code: ignored
        bars.push(bars[2]);
        dates.push(days(ds) - 1);
        let codes: Vec<&str> = (0..=n)
            .map(|i| if i < n { "005930" } else { "000660" })
            .collect();
        RecordBatch::try_new(
            tables::ohlcv_minute().schema,
            vec![
                Arc::new(StringArray::from(codes)) as ArrayRef,
                Arc::new(Date32Array::from(dates)),
                Arc::new(
                    TimestampMillisecondArray::from(bars.iter().map(|b| b.ts).collect::<Vec<_>>())
                        .with_timezone("Asia/Seoul"),
                ),
                Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.open))),
                Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.high))),
                Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.low))),
                Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.close))),
                Arc::new(Int64Array::from_iter_values(bars.iter().map(|b| b.volume))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn compute_uses_only_ds_sorts_dedupes_and_counts_bad_bars() {
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        let (out, counters, rejected) = compute(&[sample(ds)], ds, &Thresholds::default()).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(rejected["duplicate_minute"], 1);
        assert_eq!(rejected["bad_minute_bar"], 1);
        assert_eq!(counters["class.strong_up"], 1);
        let class = out.column_by_name("class").unwrap();
        let class = class.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(class.value(0), "strong_up");
    }

    #[tokio::test]
    async fn left_out_bars_keep_their_counters_and_are_observed_as_rejects_of_momentum() {
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        let batch = sample(ds);
        let op = MinuteMomentum
            .configure(&serde_json::json!({}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_minute", batch.schema(), vec![batch]);
        let ctx = crate::testutil::ctx(ds);
        op.run(&ctx, inputs).await.expect("run");
        let c = ctx.counters.snapshot();
        assert_eq!(c["rejected.duplicate_minute"], 1);
        assert_eq!(c["rejected.bad_minute_bar"], 1);
        let rejected: Vec<(String, String, u64)> = ctx
            .observations
            .snapshot()
            .into_iter()
            .filter_map(|o| match o {
                krxflow_core::Observation::Rejected { port, reason, n } => Some((port, reason, n)),
                _ => None,
            })
            .collect();
        assert_eq!(
            rejected,
            [
                ("momentum".to_string(), "bad_minute_bar".to_string(), 1),
                ("momentum".to_string(), "duplicate_minute".to_string(), 1),
            ]
        );
    }
}
