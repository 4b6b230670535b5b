//! `ingest.synthetic`: a deterministic, seeded **SYNTHETIC** KRX-like universe.
//!
//! Nothing here is real market data. It exists so the whole pipeline runs on a fresh machine
//! with no downloads, and so tests have data with known properties:
//!
//! * daily log return = beta x market factor + idiosyncratic fat-tailed shock (a normal mixed
//!   with a 3x-wider normal 5% of the time), per-ticker annualised volatility 20–60%,
//!   beta 0.5–1.5; prices rounded to KRX tick sizes; OHLC consistent;
//! * volume log-normal, higher on large moves;
//! * headlines (Korean, templated) with a sentiment in {-1, 0, +1}; **the next trading day's
//!   return gets a drift of +0.2% per unit of that day's summed sentiment** (sentiment weakly
//!   leads returns), so sentiment features have something real to find.
//!
//! No look-ahead and idempotence: every random draw comes from a counter-based hash of
//! (seed, ticker, date, stream), and the walk starts at the fixed `start` date, so the row for
//! date d is a pure function of (seed, ticker, d, calendar) — independent of `ds` and
//! `lookback_days`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::common::dates::days as epoch_day;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticParams {
    #[serde(default = "d_tickers")]
    pub tickers: u32,
    #[serde(default = "d_seed")]
    pub seed: u64,
    #[serde(default = "d_start")]
    pub start: NaiveDate,
    #[serde(default = "d_lookback")]
    pub lookback_days: u32,
    #[serde(default = "d_news")]
    pub news_per_day: f64,
    /// Next-day log-return drift per unit of a day's summed headline sentiment.
    #[serde(default = "d_drift")]
    pub sentiment_drift: f64,
    /// Emit only from `overlap_days` trading days before the bars table's watermark (the rows
    /// before it are already there and never change).
    #[serde(default = "d_incremental")]
    pub incremental: bool,
    #[serde(default = "d_overlap")]
    pub overlap_days: u32,
}

fn d_incremental() -> bool {
    true
}
fn d_overlap() -> u32 {
    5
}

fn d_tickers() -> u32 {
    20
}
fn d_seed() -> u64 {
    42
}
fn d_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2015, 1, 2).unwrap_or_default()
}
fn d_lookback() -> u32 {
    120
}
fn d_news() -> f64 {
    0.3
}
fn d_drift() -> f64 {
    SENTIMENT_DRIFT
}

/// Next-day drift per unit of summed headline sentiment (the default of `sentiment_drift`).
pub const SENTIMENT_DRIFT: f64 = 0.002;

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Counter-based random numbers keyed by (seed, ticker, day, stream).
#[derive(Clone, Copy)]
struct Draw {
    key: u64,
}

impl Draw {
    fn new(seed: u64, ticker: u64, day: i64, stream: u64) -> Self {
        let k =
            mix(seed ^ mix(ticker.wrapping_mul(0x1000_0000_01B3) ^ mix(day as u64 ^ mix(stream))));
        Self { key: k }
    }
    /// Uniform in (0, 1), the `i`-th of this key.
    fn uniform(&self, i: u64) -> f64 {
        let bits = mix(self.key ^ mix(i + 1)) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller), the `i`-th pair's first value.
    fn normal(&self, i: u64) -> f64 {
        let u1 = self.uniform(2 * i);
        let u2 = self.uniform(2 * i + 1);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// KRX tick size for a price (rules in force since 2023).
pub fn tick_size(price: f64) -> f64 {
    match price {
        p if p < 2_000.0 => 1.0,
        p if p < 5_000.0 => 5.0,
        p if p < 20_000.0 => 10.0,
        p if p < 50_000.0 => 50.0,
        p if p < 200_000.0 => 100.0,
        p if p < 500_000.0 => 500.0,
        _ => 1_000.0,
    }
}

fn round_tick(p: f64) -> f64 {
    let t = tick_size(p);
    ((p / t).round() * t).max(t)
}

const SECTORS: [&str; 6] = ["전자", "바이오", "화학", "금융", "자동차", "게임"];
const POSITIVE: [&str; 4] = [
    "{name}, 분기 영업이익 급증",
    "{name}, 대규모 수주 계약 체결",
    "{name} 목표주가 상향…실적 개선 기대",
    "{name}, 신제품 흥행에 매출 최대",
];
const NEGATIVE: [&str; 4] = [
    "{name}, 실적 부진 우려 확대",
    "{name} 목표주가 하향",
    "{name}, 유상증자 결정에 투자심리 위축",
    "{name}, 주요 고객사 이탈 악재",
];
const NEUTRAL: [&str; 4] = [
    "{name}, 정기 주주총회 개최",
    "{name} 신임 대표이사 선임",
    "{name}, 사업보고서 제출",
    "{name}, 기업설명회 일정 공지",
];

/// Company names of the labelled corpus: never a universe ticker's (those are `합성<sector>NN`),
/// so a model trained on it learns the wording, not the names.
const CORPUS_PREFIXES: [&str; 8] = [
    "가람", "누리", "다온", "미래", "보람", "새봄", "한결", "푸른",
];

/// A labelled corpus of SYNTHETIC headlines: `n` (title, label) pairs worded like the
/// universe's news, about other companies, with labels `neg`/`neu`/`pos` in the news stream's
/// proportions (35% positive, 25% negative). It plays the part the hand-labelled headlines
/// play for real news: what `sentiment.train_lexical` learns from on the synthetic universe.
pub fn labelled_headlines(seed: u64, n: u32) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|k| {
            let d = Draw::new(seed, u64::from(k), -2, 5);
            let u = d.uniform(0);
            let (label, pool) = if u < 0.35 {
                ("pos", &POSITIVE)
            } else if u < 0.6 {
                ("neg", &NEGATIVE)
            } else {
                ("neu", &NEUTRAL)
            };
            let pick = |x: f64, len: usize| (x * len as f64) as usize % len;
            let name = format!(
                "{}{}",
                CORPUS_PREFIXES[pick(d.uniform(2), CORPUS_PREFIXES.len())],
                SECTORS[pick(d.uniform(3), SECTORS.len())]
            );
            (
                pool[pick(d.uniform(1), pool.len())].replace("{name}", &name),
                label,
            )
        })
        .collect()
}

/// One synthetic ticker's fixed characteristics.
#[derive(Debug, Clone)]
pub struct Ticker {
    pub code: String,
    pub name: String,
    pub market: &'static str,
    vol: f64,
    beta: f64,
    start_price: f64,
    base_volume: f64,
}

/// The `i`-th ticker of the universe with `seed` (code, name, market and its walk's constants).
pub fn ticker(seed: u64, i: u32) -> Ticker {
    let d = Draw::new(seed, u64::from(i), -1, 7);
    Ticker {
        code: format!("{:06}", 900_001 + i),
        name: format!("합성{}{:02}", SECTORS[i as usize % SECTORS.len()], i + 1),
        market: if i % 3 == 2 { "KOSDAQ" } else { "KOSPI" },
        vol: 0.20 + 0.40 * d.uniform(0),
        beta: 0.5 + d.uniform(1),
        start_price: (5_000f64.ln() + (300_000f64.ln() - 5_000f64.ln()) * d.uniform(2)).exp(),
        base_volume: (11.0 + 3.0 * d.uniform(3)).exp(),
    }
}

/// A generated day for one ticker.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthBar {
    pub date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// A generated headline.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthNews {
    pub date: NaiveDate,
    /// Milliseconds since the epoch (UTC) of the KST publication time.
    pub published_ms: i64,
    pub sentiment: i8,
    pub title: String,
}

/// Generates one ticker's history over `days` (ascending trading days from `start`).
pub fn generate(
    seed: u64,
    t: &Ticker,
    idx: u32,
    days: &[NaiveDate],
    news_per_day: f64,
    sentiment_drift: f64,
) -> (Vec<SynthBar>, Vec<SynthNews>) {
    let sigma = t.vol / 252f64.sqrt();
    let mut bars = Vec::with_capacity(days.len());
    let mut news = Vec::new();
    let mut close = round_tick(t.start_price);
    let mut prev_sentiment = 0i32;
    for &date in days {
        let day = i64::from(epoch_day(date));
        let market = Draw::new(seed, u64::MAX, day, 1);
        let own = Draw::new(seed, u64::from(idx), day, 2);
        let m = 0.012 * market.normal(0);
        let wide = if own.uniform(10) < 0.05 { 3.0 } else { 1.0 };
        let r =
            t.beta * m + sigma * wide * own.normal(0) + sentiment_drift * f64::from(prev_sentiment);
        let prev_close = close;
        let open_raw = prev_close * (r * own.uniform(11) + 0.2 * sigma * own.normal(1)).exp();
        let close_raw = prev_close * r.exp();
        close = round_tick(close_raw);
        let open = round_tick(open_raw);
        let top = open.max(close);
        let bottom = open.min(close);
        let high = round_tick(top * (0.5 * sigma * own.normal(2).abs()).exp()).max(top);
        let low = round_tick(bottom * (-0.5 * sigma * own.normal(3).abs()).exp()).min(bottom);
        let volume =
            (t.base_volume * (0.3 * own.normal(4)).exp() * (1.0 + 20.0 * r.abs())).round() as i64;
        bars.push(SynthBar {
            date,
            open,
            high,
            low,
            close,
            volume: volume.max(1),
        });
        // Headlines of the day: 0, 1 or 2 with mean `news_per_day`.
        let nd = Draw::new(seed, u64::from(idx), day, 3);
        let n = (0..2)
            .filter(|k| nd.uniform(*k) < news_per_day / 2.0)
            .count();
        let mut sum = 0i32;
        for k in 0..n as u64 {
            let u = nd.uniform(10 + k);
            let (s, pool) = if u < 0.35 {
                (1i8, &POSITIVE)
            } else if u < 0.6 {
                (-1i8, &NEGATIVE)
            } else {
                (0i8, &NEUTRAL)
            };
            let title = pool[(nd.uniform(20 + k) * pool.len() as f64) as usize % pool.len()]
                .replace("{name}", &t.name);
            let minute = 7 * 60 + (nd.uniform(30 + k) * 13.0 * 60.0) as u32; // 07:00..20:00 KST
            // KST is UTC+9 all year (no daylight saving).
            let published = (day * 1440 + i64::from(minute) - 9 * 60) * 60_000;
            // Two draws of the same day can land on the same headline and minute: that is
            // one story (its id would repeat), not two.
            let repeat = news
                .last()
                .is_some_and(|p: &SynthNews| p.published_ms == published && p.title == title);
            if repeat {
                continue;
            }
            sum += i32::from(s);
            news.push(SynthNews {
                date,
                published_ms: published,
                sentiment: s,
                title,
            });
        }
        prev_sentiment = sum;
    }
    (bars, news)
}

fn news_id(code: &str, n: &SynthNews) -> String {
    let mut h = Sha256::new();
    for part in ["synthetic", code, &n.published_ms.to_string(), &n.title] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct IngestSynthetic;

struct Configured {
    p: SyntheticParams,
}

#[async_trait]
impl Operator for IngestSynthetic {
    fn kind(&self) -> &'static str {
        "ingest.synthetic"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "SYNTHETIC KRX-like universe: daily bars, Korean headlines whose sentiment weakly leads returns, the universe"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "tickers",
                "u32",
                "20",
                "number of synthetic tickers (1..=2000), codes 900001..",
            ),
            ParamSpec::optional("seed", "u64", "42", "random seed"),
            ParamSpec::optional("start", "date", "2015-01-02", "origin of every price walk"),
            ParamSpec::optional(
                "lookback_days",
                "u32",
                "120",
                "trading days emitted, ending at ds",
            ),
            ParamSpec::optional(
                "news_per_day",
                "f64",
                "0.3",
                "mean headlines per ticker and day (0..=2)",
            ),
            ParamSpec::optional(
                "sentiment_drift",
                "f64",
                "0.002",
                "next-day log-return drift per unit of a day's summed headline sentiment (0..=0.05)",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "emit only from overlap_days before the bars watermark (lookback_days on the first run)",
            ),
            ParamSpec::optional(
                "overlap_days",
                "u32",
                "5",
                "trading days re-emitted before the watermark",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::ohlcv_daily(), "bars", WriteMode::Merge)
                .doc("daily bars")
                .with_watermark(),
            OutputPort::for_table(&tables::news(), "news", WriteMode::Merge).doc("headlines"),
            OutputPort::for_table(&tables::universe(), "universe", WriteMode::Merge)
                .doc("codes and names"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: SyntheticParams = parse_params(params)?;
        if p.tickers == 0 || p.tickers > 2000 {
            return Err(ConfigError::new(
                "tickers",
                format!("must be 1..=2000, got {}", p.tickers),
            ));
        }
        if p.lookback_days == 0 {
            return Err(ConfigError::new("lookback_days", "must be >= 1"));
        }
        if !(0.0..=2.0).contains(&p.news_per_day) {
            return Err(ConfigError::new("news_per_day", "must be within 0..=2"));
        }
        if !(0.0..=0.05).contains(&p.sentiment_drift) {
            return Err(ConfigError::new(
                "sentiment_drift",
                "must be within 0..=0.05",
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

/// Generates the three output batches for partition `ds`.
pub fn synthesize(
    p: &SyntheticParams,
    calendar: &dyn Calendar,
    ds: NaiveDate,
) -> OpResult<(RecordBatch, RecordBatch, RecordBatch)> {
    if ds < p.start {
        return Err(OpError::permanent(format!(
            "ds {ds} is before the synthetic start {}",
            p.start
        )));
    }
    let days = calendar.trading_days(p.start, ds);
    let keep_from = days.len().saturating_sub(p.lookback_days as usize);
    let (mut codes, mut dates, mut o, mut h, mut l, mut c, mut v) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut n_id, mut n_code, mut n_date, mut n_ts, mut n_title, mut n_url) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut universe = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.tickers {
        let t = ticker(p.seed, i);
        let (bars, news) = generate(p.seed, &t, i, &days, p.news_per_day, p.sentiment_drift);
        for b in &bars[keep_from..] {
            codes.push(t.code.clone());
            dates.push(epoch_day(b.date));
            o.push(b.open);
            h.push(b.high);
            l.push(b.low);
            c.push(b.close);
            v.push(b.volume);
        }
        let first = days.get(keep_from).copied().unwrap_or(ds);
        for n in news.iter().filter(|n| n.date >= first) {
            let id = news_id(&t.code, n);
            n_url.push(format!("synthetic://news/{id}"));
            n_id.push(id);
            n_code.push(t.code.clone());
            n_date.push(epoch_day(n.date));
            n_ts.push(n.published_ms);
            n_title.push(n.title.clone());
        }
        universe.0.push(t.code.clone());
        universe.1.push(t.name.clone());
        universe.2.push(t.market.to_string());
    }
    let n = codes.len();
    let bars = RecordBatch::try_new(
        tables::ohlcv_daily().schema,
        vec![
            Arc::new(StringArray::from(codes)) as ArrayRef,
            Arc::new(Date32Array::from(dates)),
            Arc::new(Float64Array::from(o)),
            Arc::new(Float64Array::from(h)),
            Arc::new(Float64Array::from(l)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Int64Array::from(v)),
            Arc::new(StringArray::from(vec!["synthetic"; n])),
        ],
    )?;
    let nn = n_id.len();
    let news = RecordBatch::try_new(
        tables::news().schema,
        vec![
            Arc::new(StringArray::from(n_id)) as ArrayRef,
            Arc::new(StringArray::from(n_code)),
            Arc::new(Date32Array::from(n_date)),
            Arc::new(TimestampMillisecondArray::from(n_ts).with_timezone("Asia/Seoul")),
            Arc::new(StringArray::from(vec!["synthetic"; nn])),
            Arc::new(StringArray::from(n_title)),
            Arc::new(StringArray::from(vec![None::<&str>; nn])),
            Arc::new(StringArray::from(n_url)),
        ],
    )?;
    let universe = RecordBatch::try_new(
        tables::universe().schema,
        vec![
            Arc::new(StringArray::from(universe.0)) as ArrayRef,
            Arc::new(StringArray::from(universe.1)),
            Arc::new(StringArray::from(universe.2)),
        ],
    )?;
    Ok((bars, news, universe))
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let mut p = self.p.clone();
        let calendar = ctx.calendar.clone();
        let ds = ctx.ds;
        if let Some(w) = ctx.watermarks.get("bars").filter(|_| p.incremental) {
            let from = calendar.add_trading_days(*w, -i64::from(p.overlap_days));
            let n = calendar.trading_days(from, ds).len() as u32;
            p.lookback_days = p.lookback_days.min(n.max(1));
            ctx.counters.add("incremental_runs", 1);
        }
        let (bars, news, universe) =
            tokio::task::spawn_blocking(move || synthesize(&p, calendar.as_ref(), ds))
                .await
                .map_err(|e| OpError::permanent(format!("generator: {e}")))??;
        ctx.counters.add("bars", bars.num_rows() as i64);
        ctx.counters.add("headlines", news.num_rows() as i64);
        Ok(OutputBatches::new()
            .with("bars", vec![bars])
            .with("news", vec![news])
            .with("universe", vec![universe]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::d;
    use arrow::array::Array;
    use krxflow_core::WeekdayCalendar;

    fn params(lookback: u32) -> SyntheticParams {
        SyntheticParams {
            tickers: 5,
            seed: 42,
            start: d("2015-01-02"),
            lookback_days: lookback,
            incremental: true,
            overlap_days: 5,
            news_per_day: 0.3,
            sentiment_drift: SENTIMENT_DRIFT,
        }
    }

    fn rows(b: &RecordBatch) -> Vec<(String, i32, f64, f64, f64, f64, i64)> {
        let s = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let f = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let code = s(0);
        let date = b
            .column(1)
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap()
            .clone();
        let vol = b
            .column(6)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let (o, h, l, c) = (f(2), f(3), f(4), f(5));
        (0..b.num_rows())
            .map(|i| {
                (
                    code.value(i).to_string(),
                    date.value(i),
                    o.value(i),
                    h.value(i),
                    l.value(i),
                    c.value(i),
                    vol.value(i),
                )
            })
            .collect()
    }

    #[test]
    fn rows_for_a_date_do_not_depend_on_ds_or_lookback() {
        let cal = WeekdayCalendar::default();
        let (a, _, _) = synthesize(&params(60), &cal, d("2024-12-16")).unwrap();
        let (b, _, _) = synthesize(&params(300), &cal, d("2025-03-14")).unwrap();
        let later: std::collections::HashMap<_, _> = rows(&b)
            .into_iter()
            .map(|r| ((r.0.clone(), r.1), r))
            .collect();
        let earlier = rows(&a);
        assert_eq!(earlier.len(), 5 * 60);
        for r in &earlier {
            assert_eq!(
                later.get(&(r.0.clone(), r.1)),
                Some(r),
                "row differs for {} {}",
                r.0,
                r.1
            );
        }
    }

    #[test]
    fn news_ids_are_unique_over_a_large_universe() {
        // 400 tickers x 1500 days once produced two identical headlines at the same minute
        // (the same story twice), which `merge` on id rightly refused.
        let cal = WeekdayCalendar::default();
        let mut p = params(1500);
        p.tickers = 400;
        let (_, news, _) = synthesize(&p, &cal, d("2026-11-20")).unwrap();
        let ids = news
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let unique: std::collections::HashSet<&str> = ids.iter().flatten().collect();
        assert!(news.num_rows() > 100_000);
        assert_eq!(unique.len(), news.num_rows());
    }

    #[test]
    fn same_params_give_identical_batches() {
        let cal = WeekdayCalendar::default();
        let x = synthesize(&params(30), &cal, d("2024-12-16")).unwrap();
        let y = synthesize(&params(30), &cal, d("2024-12-16")).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn bars_are_consistent_dated_up_to_ds_and_skip_weekends() {
        let cal = WeekdayCalendar::default();
        let ds = d("2024-12-16");
        let (b, news, uni) = synthesize(&params(250), &cal, ds).unwrap();
        let max = epoch_day(ds);
        for (code, date, o, h, l, c, v) in rows(&b) {
            assert!(
                l <= o.min(c) && o.max(c) <= h,
                "{code} {date}: {o} {h} {l} {c}"
            );
            assert!(l > 0.0 && v > 0);
            assert!(date <= max);
            let day = crate::common::dates::date_of(date);
            assert!(cal.is_trading_day(day));
        }
        assert!(news.num_rows() > 0);
        assert_eq!(uni.num_rows(), 5);
        let published = news
            .column(3)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert!(published.iter().all(|t| t.is_some()));
    }

    #[test]
    fn the_labelled_corpus_is_seeded_worded_like_the_news_and_names_no_universe_ticker() {
        let a = labelled_headlines(3, 500);
        assert_eq!(a, labelled_headlines(3, 500), "same seed, same corpus");
        assert_ne!(a, labelled_headlines(4, 500));
        let count = |l: &str| a.iter().filter(|(_, x)| *x == l).count();
        assert!((150..=200).contains(&count("pos")), "{}", count("pos"));
        assert!((95..=155).contains(&count("neg")), "{}", count("neg"));
        for (title, label) in &a {
            let pool = match *label {
                "pos" => &POSITIVE,
                "neg" => &NEGATIVE,
                _ => &NEUTRAL,
            };
            let wording = |t: &str| t.replace("{name}", "");
            assert!(
                pool.iter().any(|t| title.contains(&wording(t))),
                "{title} is worded like a {label} headline"
            );
            assert!(!title.contains("합성"), "{title} names a universe ticker");
        }
    }

    #[test]
    fn headline_sentiment_leads_next_day_returns() {
        let cal = WeekdayCalendar::default();
        let days = cal.trading_days(d("2015-01-02"), d("2024-12-16"));
        let (mut after_pos, mut after_neg) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let t = ticker(7, i);
            let (bars, news) = generate(7, &t, i, &days, 1.0, SENTIMENT_DRIFT);
            let mut net: std::collections::HashMap<NaiveDate, i32> = Default::default();
            for n in &news {
                *net.entry(n.date).or_default() += i32::from(n.sentiment);
            }
            for w in bars.windows(2) {
                let r = w[1].close / w[0].close - 1.0;
                match net.get(&w[0].date).copied().unwrap_or(0) {
                    s if s > 0 => after_pos.push(r),
                    s if s < 0 => after_neg.push(r),
                    _ => {}
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(after_pos.len() > 1000 && after_neg.len() > 1000);
        assert!(
            mean(&after_pos) > mean(&after_neg) + 0.002,
            "{} vs {}",
            mean(&after_pos),
            mean(&after_neg)
        );
    }

    #[test]
    fn bad_params_name_the_field() {
        let err = IngestSynthetic
            .configure(&serde_json::json!({"tickers": 0}))
            .err()
            .unwrap();
        assert_eq!(err.field, "tickers");
        let err = IngestSynthetic
            .configure(&serde_json::json!({"tickers": "x"}))
            .err()
            .unwrap();
        assert_eq!(err.field, "tickers");
    }
}
