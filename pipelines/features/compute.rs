//! The `features_daily` rows from bars (+ index and sentiment rows): the (code, date)-sorted
//! bars cut into one slice per code, the codes shared out to the cores in contiguous runs of
//! about equal work, and each code's written rows filled column by column from
//! [`super::formulas`] into disjoint parts of the output columns, with warm-up flags and
//! optional targets.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use krxflow_core::{OpError, OpResult};

use super::formulas::{CodeBars, ColumnRows, DaySentiment, Feature};
use super::indicators::{atr_norm, macd, rsi_wilder};
use crate::cols::{date_col, str_col};
use crate::common::dates::days;
use crate::common::direction::Direction;
use crate::common::horizons::HORIZONS;
use crate::tables::{self, FEATURES};

/// Features that may be null without the row being warm-up: external inputs may be absent,
/// and the 52-week distances need a year of bars, which a code listed under a year ago (or a
/// panel shorter than a year, such as the full-market one) lacks; LightGBM takes their missing
/// value as such, so such a row is predictable once its 60-day windows are full. A day without
/// a range (high = low: a halt, a locked limit move) has no close location.
const OPTIONAL_FEATURES: &[&str] = &[
    "close_loc",
    "dist_52w_high",
    "dist_52w_low",
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

/// The columns of `ohlcv_daily` the features are computed from (the operator reads only these).
pub const BAR_COLUMNS: [&str; 7] = ["code", "date", "open", "high", "low", "close", "volume"];

/// Bars sorted by (code, date), only [`BAR_COLUMNS`], from the batches as read (one per data
/// file: a day's rows after the compacted history): the batch itself when there is one and it
/// already is sorted (a lake read of one code, a panel written in that order), their
/// concatenation when that is, else the rows bucketed by code (a counting sort over the codes'
/// ranks; a lake's files are in date order), each code's rows by date, and gathered from the
/// batches in that order (one copy, not a concatenation and a sorted copy of it). Rows of one
/// code and date keep their order in the concatenation.
fn sorted_bars(batches: &[RecordBatch]) -> OpResult<RecordBatch> {
    let parts = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            let wanted = BAR_COLUMNS
                .iter()
                .map(|c| {
                    b.schema()
                        .index_of(c)
                        .map_err(|_| OpError::permanent(format!("column `{c}` missing")))
                })
                .collect::<OpResult<Vec<usize>>>()?;
            Ok(b.project(&wanted)?)
        })
        .collect::<OpResult<Vec<RecordBatch>>>()?;
    let Some(first) = parts.first() else {
        return Err(OpError::permanent("no bars"));
    };
    let mut keys_of = Vec::with_capacity(parts.len());
    for b in &parts {
        let (code, date) = (str_col(b, "code")?, date_col(b, "date")?);
        if code.null_count() > 0 || date.null_count() > 0 {
            return Err(OpError::permanent("bars.code or bars.date has nulls"));
        }
        keys_of.push((code, date));
    }
    // Every row in the order of the concatenation: (part, row).
    let rows = || {
        keys_of
            .iter()
            .enumerate()
            .flat_map(|(p, (code, _))| (0..code.len()).map(move |i| (p, i)))
    };
    let key = |(p, i): (usize, usize)| (keys_of[p].0.value(i), keys_of[p].1.value(i));
    let ordered = rows().zip(rows().skip(1)).all(|(a, b)| key(a) <= key(b));
    if ordered {
        return Ok(match parts.as_slice() {
            [one] => one.clone(),
            _ => arrow::compute::concat_batches(&first.schema(), &parts)?,
        });
    }
    // Each row's code as its rank among the codes (the distinct names sorted: a few thousand,
    // where sorting every row's name compared strings n·log n times).
    let mut rank: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    for r in rows() {
        let next = rank.len() as u32;
        rank.entry(key(r).0).or_insert(next);
    }
    let mut names: Vec<&str> = rank.keys().copied().collect();
    names.sort_unstable();
    for (r, name) in names.iter().enumerate() {
        rank.insert(name, r as u32);
    }
    // A stable counting sort by code rank (rows of a code keep their order in the
    // concatenation), then each code's rows by date, stably: the order of sorting by (code,
    // date, place in the concatenation).
    let row_rank: Vec<u32> = rows().map(|r| rank[key(r).0]).collect();
    // Each code's first place in the order.
    let mut starts = vec![0usize; names.len() + 1];
    for &r in &row_rank {
        starts[r as usize + 1] += 1;
    }
    for r in 0..names.len() {
        starts[r + 1] += starts[r];
    }
    let mut order = vec![(0usize, 0usize); row_rank.len()];
    let mut next = starts.clone();
    for (&r, at) in row_rank.iter().zip(rows()) {
        order[next[r as usize]] = at;
        next[r as usize] += 1;
    }
    for code in starts.windows(2) {
        let rows = &mut order[code[0]..code[1]];
        if !rows.windows(2).all(|w| key(w[0]).1 <= key(w[1]).1) {
            rows.sort_by_key(|&r| key(r).1);
        }
    }
    let refs: Vec<&RecordBatch> = parts.iter().collect();
    Ok(arrow::compute::interleave_record_batch(&refs, &order)?)
}

/// One code's rows in the sorted bars: `start..end`, of which rows `first..last` (relative to
/// `start`) are written, at `out` in the output.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    first: usize,
    last: usize,
    out: usize,
}

impl Span {
    fn written(&self) -> usize {
        self.last - self.first
    }
    /// Work, for balancing threads: the recursions run over the whole slice, the windowed
    /// features over the written rows.
    fn cost(&self) -> usize {
        (self.end - self.start) + 8 * self.written()
    }
}

/// The output columns, each one value and one validity flag per written row.
struct Columns {
    values: Vec<Vec<f64>>,
    valid: Vec<Vec<bool>>,
    warmup: Vec<bool>,
    /// Sorted-bars row of each written row.
    rows: Vec<u32>,
}

impl Columns {
    fn new(columns: usize, rows: usize) -> Self {
        Self {
            values: vec![vec![0.0; rows]; columns],
            valid: vec![vec![false; rows]; columns],
            warmup: vec![false; rows],
            rows: vec![0; rows],
        }
    }

    /// Disjoint mutable views of the rows `bounds[i]..bounds[i + 1]` of every column.
    fn split(&mut self, bounds: &[usize]) -> Vec<ColumnsMut<'_>> {
        let parts = bounds.len() - 1;
        let mut out: Vec<ColumnsMut<'_>> = (0..parts).map(|_| ColumnsMut::default()).collect();
        let lens: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
        for col in &mut self.values {
            for (part, s) in out.iter_mut().zip(split_lens(col, &lens)) {
                part.values.push(s);
            }
        }
        for col in &mut self.valid {
            for (part, s) in out.iter_mut().zip(split_lens(col, &lens)) {
                part.valid.push(s);
            }
        }
        for (part, s) in out.iter_mut().zip(split_lens(&mut self.warmup, &lens)) {
            part.warmup = s;
        }
        for (part, s) in out.iter_mut().zip(split_lens(&mut self.rows, &lens)) {
            part.rows = s;
        }
        out
    }
}

/// `x` cut into consecutive mutable pieces of the given lengths.
fn split_lens<'a, T>(x: &'a mut [T], lens: &[usize]) -> Vec<&'a mut [T]> {
    let mut rest = x;
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        out.push(head);
        rest = tail;
    }
    out
}

/// One thread's rows of every output column.
#[derive(Default)]
struct ColumnsMut<'a> {
    values: Vec<&'a mut [f64]>,
    valid: Vec<&'a mut [bool]>,
    warmup: &'a mut [bool],
    rows: &'a mut [u32],
}

/// The sorted bars' columns and what every code's rows look up.
struct Inputs<'a> {
    code: &'a StringArray,
    date: &'a [i32],
    open: &'a [f64],
    high: &'a [f64],
    low: &'a [f64],
    close: &'a [f64],
    volume: &'a [f64],
    mkt: Option<MarketReturns>,
    sent: Option<HashMap<(&'a str, i32), DaySentiment>>,
    features: Vec<Feature>,
    /// Per feature: does a null make the row warm-up?
    history: Vec<bool>,
}

impl Inputs<'_> {
    /// Fills the written rows of `spans` (whose outputs start at `out_base`) into `cols`.
    fn fill(&self, spans: &[Span], out_base: usize, cols: &mut ColumnsMut<'_>) {
        for s in spans {
            let (r0, r1) = (s.out - out_base, s.out - out_base + s.written());
            let (start, end) = (s.start, s.end);
            let c = &self.close[start..end];
            let dates = &self.date[start..end];
            let (m, sig, h) = macd(c);
            let code = self.code.value(start);
            let bars = CodeBars {
                date: dates,
                open: &self.open[start..end],
                high: &self.high[start..end],
                low: &self.low[start..end],
                close: c,
                volume: &self.volume[start..end],
                ret1: (0..c.len())
                    .map(|t| {
                        if t == 0 {
                            f64::NAN
                        } else {
                            c[t] / c[t - 1] - 1.0
                        }
                    })
                    .collect(),
                mkt: self
                    .mkt
                    .as_ref()
                    .map(|mkt| dates.iter().map(|d| mkt.get(d).copied()).collect()),
                sent: self.sent.as_ref().map(|sent| {
                    dates
                        .iter()
                        .map(|d| sent.get(&(code, *d)).copied())
                        .collect()
                }),
                rsi: rsi_wilder(c, 14),
                macd: m,
                signal: sig,
                hist: h,
                atr: atr_norm(&self.high[start..end], &self.low[start..end], c, 14),
            };
            for (k, f) in self.features.iter().enumerate() {
                let mut out = ColumnRows {
                    values: &mut cols.values[k][r0..r1],
                    valid: &mut cols.valid[k][r0..r1],
                };
                bars.fill(*f, s.first..s.last, &mut out);
                if self.history[k] {
                    for (w, ok) in cols.warmup[r0..r1].iter_mut().zip(out.valid.iter()) {
                        *w |= !ok;
                    }
                }
            }
            for (r, t) in cols.rows[r0..r1].iter_mut().zip(s.first..s.last) {
                *r = (start + t) as u32;
            }
        }
    }
}

/// Rows per thread below which one thread does the work (spawning costs more).
const MIN_ROWS_PER_THREAD: usize = 20_000;

/// Computes the feature batch (schema [`features_daily_schema`]) from bars and optional index
/// and sentiment rows; `targets` adds y_ret/y_dir for horizons 1, 3, 5.
pub async fn build_features(
    bars: &RecordBatch,
    index: Option<&RecordBatch>,
    sentiment: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
) -> OpResult<RecordBatch> {
    compute_features(
        std::slice::from_ref(bars),
        index,
        sentiment,
        index_code,
        targets,
        None,
    )
}

/// [`build_features`] for the rows dated on or after `from` only (all when `None`). Every
/// value depends only on the rows its formula names, so the rows returned are exactly those a
/// build over all rows returns for the same dates (the recursive indicators given enough
/// history to forget their seed, see
/// [`INCREMENTAL_HISTORY_DAYS`](super::build::INCREMENTAL_HISTORY_DAYS)). Codes are shared
/// out to the machine's cores; the result does not depend on how many.
pub fn compute_features(
    bars: &[RecordBatch],
    index: Option<&RecordBatch>,
    sentiment: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
    from: Option<NaiveDate>,
) -> OpResult<RecordBatch> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    compute_features_on(bars, index, sentiment, index_code, targets, from, threads)
}

/// [`compute_features`] on at most `threads` threads.
pub fn compute_features_on(
    bars: &[RecordBatch],
    index: Option<&RecordBatch>,
    sentiment: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
    from: Option<NaiveDate>,
    threads: usize,
) -> OpResult<RecordBatch> {
    let schema = tables::features_daily().schema;
    if bars.iter().all(|b| b.num_rows() == 0) {
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
        ("volume", &volume),
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

    // Each code's slice and the rows it writes.
    let n = sorted.num_rows();
    let mut spans = Vec::new();
    let (mut start, mut written) = (0, 0);
    while start < n {
        let mut end = start + 1;
        while end < n && code.value(end) == code.value(start) {
            end += 1;
        }
        let first = from.map_or(0, |f| date.values()[start..end].partition_point(|&d| d < f));
        // With targets a row needs its next close (y_ret_1d): the code's last row is left out.
        let last = if targets {
            end - start - 1
        } else {
            end - start
        };
        if first < last {
            spans.push(Span {
                start,
                end,
                first,
                last,
                out: written,
            });
            written += last - first;
        }
        start = end;
    }

    let inputs = Inputs {
        code,
        date: date.values(),
        open: open.values(),
        high: high.values(),
        low: low.values(),
        close: close.values(),
        volume: volume.values(),
        mkt,
        sent,
        features,
        history,
    };
    let mut cols = Columns::new(inputs.features.len(), written);
    // Contiguous runs of codes of about equal work, one per thread.
    let parts = threads.clamp(1, (written / MIN_ROWS_PER_THREAD).max(1));
    let total: usize = spans.iter().map(Span::cost).sum();
    let mut cuts = vec![0usize];
    let mut acc = 0;
    for (i, s) in spans.iter().enumerate() {
        acc += s.cost();
        if cuts.len() < parts && acc * parts >= total * cuts.len() && i + 1 < spans.len() {
            cuts.push(i + 1);
        }
    }
    cuts.push(spans.len());
    let bounds: Vec<usize> = cuts
        .iter()
        .map(|&i| spans.get(i).map_or(written, |s| s.out))
        .collect();
    let mut views = cols.split(&bounds);
    std::thread::scope(|scope| {
        let inputs = &inputs;
        let mut parts = views.iter_mut().enumerate();
        let head = parts.next();
        for (i, view) in parts {
            let part = &spans[cuts[i]..cuts[i + 1]];
            let base = bounds[i];
            scope.spawn(move || inputs.fill(part, base, view));
        }
        // The first part on this thread.
        if let Some((_, view)) = head {
            inputs.fill(&spans[cuts[0]..cuts[1]], 0, view);
        }
    });
    drop(views);

    let (code_col, date_col): (ArrayRef, ArrayRef) = if written == n {
        // Every row is written, in the sorted order.
        (Arc::new(code.clone()), Arc::new(date.clone()))
    } else {
        let take = arrow::array::UInt32Array::from(std::mem::take(&mut cols.rows));
        (
            arrow::compute::take(code, &take, None)?,
            arrow::compute::take(date, &take, None)?,
        )
    };
    let mut out: Vec<ArrayRef> = vec![code_col, date_col];
    for (values, valid) in cols.values.into_iter().zip(cols.valid) {
        out.push(Arc::new(Float64Array::new(values.into(), nulls(valid))));
    }
    out.push(Arc::new(BooleanArray::from(cols.warmup)));
    for h in HORIZONS.map(|h| h as usize) {
        if targets {
            let ret: Vec<Option<f64>> = spans
                .iter()
                .flat_map(|s| {
                    let c = &inputs.close[s.start..s.end];
                    (s.first..s.last).map(move |t| c.get(t + h).map(|f| f / c[t] - 1.0))
                })
                .collect();
            let dir: StringArray = ret
                .iter()
                .map(|r| r.map(|r| Direction::of_return(r).as_str()))
                .collect();
            out.push(Arc::new(Float64Array::from(ret)));
            out.push(Arc::new(dir));
        } else {
            out.push(arrow::array::new_null_array(&DataType::Float64, written));
            out.push(arrow::array::new_null_array(&DataType::Utf8, written));
        }
    }
    Ok(RecordBatch::try_new(schema, out)?)
}

/// The null buffer of a validity vector (none when every row is valid).
fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    let nulls = NullBuffer::from(valid);
    (nulls.null_count() > 0).then_some(nulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cols::f64_col;
    use crate::common::direction::FLAT_BAND;
    use crate::features::window::mean;
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
            value(&f, "close_loc", t),
            (close(t) - l[t]) / (h[t] - l[t]),
            "close_loc",
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
        // Warm-up: the 60-row windows fill at row 59; the 52-week distances, never full in 70
        // rows, are null without making a row warm-up.
        assert_eq!(value(&f, "dist_52w_high", f.num_rows() - 1), None);
        let warm = f
            .column_by_name("warmup")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(warm.true_count(), 59);
        assert!(warm.value(58) && !warm.value(59));
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

    #[tokio::test]
    async fn a_day_without_a_range_has_no_close_location_and_is_still_predictable() {
        let (bars, index, sent) = fixture(&["000001"], 70);
        // Row 65 locked at one price (a halt, a limit move held all day): high = low = close.
        let close = f64_col(&bars, "close").unwrap().clone();
        let flat = |name: &str| -> ArrayRef {
            let c = f64_col(&bars, name).unwrap();
            Arc::new(Float64Array::from_iter_values(
                (0..c.len()).map(|i| if i == 65 { close.value(i) } else { c.value(i) }),
            ))
        };
        let mut cols = bars.columns().to_vec();
        for name in ["open", "high", "low"] {
            cols[bars.schema().index_of(name).unwrap()] = flat(name);
        }
        let bars = RecordBatch::try_new(bars.schema(), cols).unwrap();
        let f = build_features(&bars, Some(&index), Some(&sent), "KS11", false)
            .await
            .unwrap();
        assert_eq!(value(&f, "close_loc", 65), None);
        assert!(value(&f, "close_loc", 64).is_some_and(|v| (0.0..=1.0).contains(&v)));
        let warm = f.column_by_name("warmup").unwrap();
        let warm = warm.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(
            !warm.value(65),
            "a null close location does not make the row warm-up"
        );
    }

    #[test]
    fn threads_and_input_order_do_not_change_a_bit() {
        let codes: Vec<String> = (0..45).map(|k| format!("{:06}", k + 1)).collect();
        let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
        let (bars, index, sent) = fixture(&codes, 1_500);
        let from = Some(crate::common::dates::date_of(
            date_col(&bars, "date").unwrap().value(300),
        ));
        let on = |bars: &[RecordBatch], threads| {
            compute_features_on(bars, Some(&index), Some(&sent), "KS11", true, from, threads)
                .unwrap()
        };
        let one = on(std::slice::from_ref(&bars), 1);
        // 53,955 written rows: two parts of at least MIN_ROWS_PER_THREAD.
        let three = on(std::slice::from_ref(&bars), 3);
        assert_eq!(one, three, "the result depends on the thread count");
        // The same rows in reverse order take the sorting path.
        let rev = arrow::array::UInt32Array::from_iter_values((0..bars.num_rows() as u32).rev());
        let reversed = arrow::compute::take_record_batch(&bars, &rev).unwrap();
        let from_reversed = on(std::slice::from_ref(&reversed), 3);
        assert_eq!(one, from_reversed, "the result depends on the input order");
        // As read from a lake, in parts (one per data file, an empty one among them): in
        // order, and with the newest day's rows in a part after the rest (the sorting path).
        let n = bars.num_rows();
        let in_order = [
            bars.slice(0, n / 3),
            bars.slice(0, 0),
            bars.slice(n / 3, n - n / 3),
        ];
        assert_eq!(one, on(&in_order, 3), "parts in order");
        let last_day = date_col(&bars, "date")
            .unwrap()
            .values()
            .iter()
            .max()
            .copied();
        let is_last = arrow::compute::kernels::cmp::eq(
            date_col(&bars, "date").unwrap(),
            &arrow::array::Date32Array::new_scalar(last_day.unwrap()),
        )
        .unwrap();
        let before =
            arrow::compute::filter_record_batch(&bars, &arrow::compute::not(&is_last).unwrap())
                .unwrap();
        let day = arrow::compute::filter_record_batch(&bars, &is_last).unwrap();
        assert!(day.num_rows() == 45 && before.num_rows() == n - 45);
        assert_eq!(
            one,
            on(&[before, day], 3),
            "the day's part after the history"
        );
        assert_eq!(one.num_rows(), 45 * (1_500 - 300 - 1));
    }

    /// Rows of `b` dated on or after `first`.
    fn since(b: &RecordBatch, first: i32) -> RecordBatch {
        dated(b, |d| d >= first)
    }

    #[test]
    fn a_build_from_a_date_on_a_trailing_window_writes_the_bits_of_a_full_build() {
        let (bars, index, sent) = fixture(&["000001", "000002"], 1300);
        let full = compute_features(
            std::slice::from_ref(&bars),
            Some(&index),
            Some(&sent),
            "KS11",
            false,
            None,
        )
        .unwrap();
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
            &[since(&bars, read_from)],
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
            warm.value(58) && !warm.value(59) && !warm.value(248),
            "warm-up ends when the 60-row windows fill, not the 52-week one"
        );
    }
}
