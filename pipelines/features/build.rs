//! `features.build`: the daily feature table `features_daily` from `ohlcv_daily` (+ the market
//! index when present), optionally with training targets.
//!
//! Rolling and lagged features are DataFusion SQL window functions over the whole input
//! (vectorised, partitioned by code, ordered by date). Features defined by a recursion
//! (Wilder's RSI and ATR, the EMAs of MACD) have no window form: they run as one linear pass
//! over each code's contiguous slice.
//!
//! Every feature is documented in [`FEATURES`]. A row is `warmup = true` when any feature that
//! needs history is null for lack of it (never filled with a made-up value).
//!
//! Point-in-time: inputs are read as of `ds` by the engine, so a feature for day D only sees
//! rows dated <= D; targets (`with_targets: true`) use rows after the base date, so rows whose
//! horizon ends after `ds` are excluded.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::tables::{FLAT_BAND, features_daily_schema, index_daily_schema, ohlcv_daily_schema};

/// (name, formula) of every feature column, in table order.
pub const FEATURES: &[(&str, &str)] = &[
    ("ret_1d", "close[t]/close[t-1] - 1"),
    ("ret_3d", "close[t]/close[t-3] - 1"),
    ("ret_5d", "close[t]/close[t-5] - 1"),
    ("ret_10d", "close[t]/close[t-10] - 1"),
    ("ret_20d", "close[t]/close[t-20] - 1"),
    ("logret_1d", "ln(close[t]/close[t-1])"),
    ("logret_5d", "ln(close[t]/close[t-5])"),
    ("logret_20d", "ln(close[t]/close[t-20])"),
    ("ma5_ratio", "close / mean(close, 5) - 1"),
    ("ma20_ratio", "close / mean(close, 20) - 1"),
    ("ma60_ratio", "close / mean(close, 60) - 1"),
    (
        "rsi14",
        "Wilder RSI(14): 100 - 100/(1 + avg_gain/avg_loss), seeded with the 14-day simple mean",
    ),
    (
        "macd",
        "EMA12(close) - EMA26(close), EMAs seeded with the first close, alpha = 2/(n+1); null for the first 25 rows",
    ),
    ("macd_signal", "EMA9(macd); null until 9 MACD values exist"),
    ("macd_hist", "macd - macd_signal"),
    (
        "bb_pctb",
        "(close - (ma20 - 2 sd20)) / (4 sd20), sd20 = sample std of close over 20",
    ),
    (
        "atr14_norm",
        "Wilder ATR(14) of the true range max(h-l, |h-c[t-1]|, |l-c[t-1]|), / close",
    ),
    ("vol_20d", "sample std of ret_1d over 20 days"),
    (
        "volume_z20",
        "(volume - mean(volume, 20)) / std(volume, 20)",
    ),
    ("turnover_chg", "(close*volume) / (close*volume)[t-1] - 1"),
    ("hl_range", "(high - low) / close"),
    ("gap_open", "open[t] / close[t-1] - 1"),
    ("dist_52w_high", "close / max(high, 250) - 1"),
    ("dist_52w_low", "close / min(low, 250) - 1"),
    (
        "dow",
        "day of week, 0 = Sunday .. 6 = Saturday (KRX trades 1..5)",
    ),
    (
        "mkt_ret_1d",
        "index close[t]/close[t-1] - 1 (index table present)",
    ),
    ("mkt_ret_5d", "index close[t]/close[t-5] - 1"),
    (
        "beta_60d",
        "cov(ret_1d, mkt_ret_1d, 60) / var(mkt_ret_1d, 60)",
    ),
    ("rel_strength_20d", "ret_20d - index ret_20d"),
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
}

fn default_index() -> String {
    "KOSPI".into()
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

fn win(n: usize) -> String {
    format!(
        "OVER (PARTITION BY code ORDER BY date ROWS BETWEEN {} PRECEDING AND CURRENT ROW)",
        n - 1
    )
}

/// `expr` over the last `n` rows, null unless all `n` rows have a value.
fn full(agg: &str, col: &str, n: usize) -> String {
    format!(
        "CASE WHEN count({col}) {w} = {n} THEN {agg}({col}) {w} END",
        w = win(n)
    )
}

/// The SQL over `bars` (sorted, with `_row`) and `mkt` (index returns by date).
fn feature_sql(with_index: bool, horizons: &[u32]) -> String {
    const W: &str = "OVER (PARTITION BY code ORDER BY date)";
    let mut lags = String::new();
    for h in [1, 3, 5, 10, 20] {
        lags.push_str(&format!("lag(close, {h}) {W} AS c{h}, "));
    }
    let mut leads = String::new();
    for h in horizons {
        leads.push_str(&format!("lead(close, {h}) {W} AS f{h}, "));
    }
    let mkt_join = if with_index {
        "LEFT JOIN mkt ON r.date = mkt.date"
    } else {
        "LEFT JOIN (SELECT CAST(NULL AS DATE) AS date, CAST(NULL AS DOUBLE) AS mkt_ret_1d, CAST(NULL AS DOUBLE) AS mkt_ret_5d, CAST(NULL AS DOUBLE) AS mkt_ret_20d) mkt ON r.date = mkt.date"
    };
    let mut targets = String::new();
    for h in horizons {
        targets.push_str(&format!(
            ", f{h} / close - 1 AS y_ret_{h}d, CASE WHEN f{h} IS NULL THEN NULL WHEN f{h} / close - 1 > {FLAT_BAND} THEN 'up' WHEN f{h} / close - 1 < -{FLAT_BAND} THEN 'down' ELSE 'flat' END AS y_dir_{h}d"
        ));
    }
    format!(
        "WITH b AS (
            SELECT code, date, open, high, low, close, CAST(volume AS DOUBLE) AS volume, _row,
                   {lags}{leads}
                   lag(close * CAST(volume AS DOUBLE), 1) {W} AS tv1
            FROM bars),
         r AS (SELECT *, close / c1 - 1 AS ret_1d FROM b),
         j AS (SELECT r.*, mkt.mkt_ret_1d, mkt.mkt_ret_5d, mkt.mkt_ret_20d FROM r {mkt_join})
         SELECT code, date, _row,
            ret_1d, close / c3 - 1 AS ret_3d, close / c5 - 1 AS ret_5d,
            close / c10 - 1 AS ret_10d, close / c20 - 1 AS ret_20d,
            ln(close / c1) AS logret_1d, ln(close / c5) AS logret_5d, ln(close / c20) AS logret_20d,
            close / {ma5} - 1 AS ma5_ratio,
            close / {ma20} - 1 AS ma20_ratio,
            close / {ma60} - 1 AS ma60_ratio,
            (close - ({ma20} - 2 * {sd20})) / (4 * {sd20}) AS bb_pctb,
            {vol20} AS vol_20d,
            (volume - {vma20}) / nullif({vsd20}, 0) AS volume_z20,
            (close * volume) / nullif(tv1, 0) - 1 AS turnover_chg,
            (high - low) / close AS hl_range,
            open / c1 - 1 AS gap_open,
            close / {hi250} - 1 AS dist_52w_high,
            close / {lo250} - 1 AS dist_52w_low,
            CAST(date_part('dow', date) AS DOUBLE) AS dow,
            mkt_ret_1d, mkt_ret_5d,
            CASE WHEN count(ret_1d * mkt_ret_1d) {w60} = 60
                 THEN covar_samp(ret_1d, mkt_ret_1d) {w60} / nullif(var_samp(mkt_ret_1d) {w60}, 0) END AS beta_60d,
            close / c20 - 1 - mkt_ret_20d AS rel_strength_20d
            {targets}
         FROM j ORDER BY _row",
        ma5 = full("avg", "close", 5),
        ma20 = full("avg", "close", 20),
        ma60 = full("avg", "close", 60),
        sd20 = full("stddev", "close", 20),
        vol20 = full("stddev", "ret_1d", 20),
        vma20 = full("avg", "volume", 20),
        vsd20 = full("stddev", "volume", 20),
        hi250 = full("max", "high", 250),
        lo250 = full("min", "low", 250),
        w60 = win(60),
    )
}

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

/// Sorts bars by (code, date) and appends `_row`.
fn sorted_with_row(bars: &RecordBatch) -> OpResult<RecordBatch> {
    let sort_cols = vec![
        arrow::compute::SortColumn {
            values: bars
                .column_by_name("code")
                .cloned()
                .ok_or_else(|| OpError::permanent("bars.code missing"))?,
            options: None,
        },
        arrow::compute::SortColumn {
            values: bars
                .column_by_name("date")
                .cloned()
                .ok_or_else(|| OpError::permanent("bars.date missing"))?,
            options: None,
        },
    ];
    let idx = arrow::compute::lexsort_to_indices(&sort_cols, None)?;
    let sorted = arrow::compute::take_record_batch(bars, &idx)?;
    let rows = arrow::array::Int64Array::from_iter_values(0..sorted.num_rows() as i64);
    let mut fields: Vec<Field> = sorted
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("_row", DataType::Int64, false));
    let mut cols = sorted.columns().to_vec();
    cols.push(Arc::new(rows));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Recursive indicators per code over the sorted batch.
fn recursive_features(sorted: &RecordBatch) -> OpResult<[Vec<Option<f64>>; 5]> {
    let code = sorted
        .column_by_name("code")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| OpError::permanent("code must be Utf8"))?;
    let close = f64_col(sorted, "close")?;
    let high = f64_col(sorted, "high")?;
    let low = f64_col(sorted, "low")?;
    let (close, high, low) = (close.values(), high.values(), low.values());
    let n = sorted.num_rows();
    let mut out: [Vec<Option<f64>>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && code.value(end) == code.value(start) {
            end += 1;
        }
        let c = &close[start..end];
        let (m, s, h) = macd(c);
        out[0].extend(rsi_wilder(c, 14));
        out[1].extend(m);
        out[2].extend(s);
        out[3].extend(h);
        out[4].extend(atr_norm(&high[start..end], &low[start..end], c, 14));
        start = end;
    }
    Ok(out)
}

/// Computes the feature batch (schema [`features_daily_schema`]) from bars and optional index
/// rows; `targets` adds y_ret/y_dir for horizons 1, 3, 5.
pub async fn build_features(
    bars: &RecordBatch,
    index: Option<&RecordBatch>,
    index_code: &str,
    targets: bool,
) -> OpResult<RecordBatch> {
    let schema = features_daily_schema();
    if bars.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let sorted = sorted_with_row(bars)?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "bars",
        Arc::new(MemTable::try_new(
            sorted.schema(),
            vec![vec![sorted.clone()]],
        )?),
    )?;
    let with_index = match index {
        Some(ix) if ix.num_rows() > 0 => {
            ctx.register_table(
                "idx",
                Arc::new(MemTable::try_new(ix.schema(), vec![vec![ix.clone()]])?),
            )?;
            let code = index_code.replace('\'', "''");
            ctx.sql(&format!(
                "CREATE VIEW mkt AS SELECT date,
                    close / lag(close, 1) OVER (ORDER BY date) - 1 AS mkt_ret_1d,
                    close / lag(close, 5) OVER (ORDER BY date) - 1 AS mkt_ret_5d,
                    close / lag(close, 20) OVER (ORDER BY date) - 1 AS mkt_ret_20d
                 FROM idx WHERE code = '{code}'"
            ))
            .await?
            .collect()
            .await?;
            true
        }
        _ => false,
    };
    let horizons: &[u32] = if targets { &[1, 3, 5] } else { &[] };
    let sql = feature_sql(with_index, horizons);
    let result = ctx.sql(&sql).await?.collect().await?;
    let result = arrow::compute::concat_batches(
        &result
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty())),
        &result,
    )?;
    if result.num_rows() != sorted.num_rows() {
        return Err(OpError::permanent(format!(
            "feature query returned {} rows for {} bars (duplicate dates in the index?)",
            result.num_rows(),
            sorted.num_rows()
        )));
    }
    let [rsi, macd_l, macd_s, macd_h, atr] = recursive_features(&sorted)?;
    let recursive = |name: &str| -> Option<ArrayRef> {
        let v = match name {
            "rsi14" => &rsi,
            "macd" => &macd_l,
            "macd_signal" => &macd_s,
            "macd_hist" => &macd_h,
            "atr14_norm" => &atr,
            _ => return None,
        };
        Some(Arc::new(Float64Array::from(v.clone())))
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let mut history_nulls = arrow::array::BooleanArray::from(vec![false; result.num_rows()]);
    for field in schema.fields() {
        let name = field.name().as_str();
        let col: ArrayRef = match name {
            "warmup" => continue,
            _ => match recursive(name) {
                Some(c) => c,
                None => match result.column_by_name(name) {
                    Some(c) => arrow::compute::cast(c, field.data_type())?,
                    None if name.starts_with("y_") => {
                        arrow::array::new_null_array(field.data_type(), result.num_rows())
                    }
                    None => {
                        return Err(OpError::permanent(format!("feature `{name}` not computed")));
                    }
                },
            },
        };
        let is_history_feature = !name.starts_with("y_")
            && !matches!(
                name,
                "code" | "date" | "mkt_ret_1d" | "mkt_ret_5d" | "beta_60d" | "rel_strength_20d"
            );
        if is_history_feature {
            let nulls = arrow::compute::is_null(&col)?;
            history_nulls = arrow::compute::or(&history_nulls, &nulls)?;
        }
        cols.push(col);
    }
    let warm_idx = schema.index_of("warmup")?;
    cols.insert(warm_idx, Arc::new(history_nulls));
    let mut out = RecordBatch::try_new(schema, cols)?;
    if targets {
        // Keep rows whose shortest-horizon target is known (its close is on or before ds).
        if let Some(y1) = out.column_by_name("y_ret_1d") {
            let keep = arrow::compute::is_not_null(y1)?;
            out = arrow::compute::filter_record_batch(&out, &keep)?;
        }
    }
    Ok(out)
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
        1
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
                "index_code",
                "string",
                "KOSPI",
                "index code (in the index table) for market features",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new("bars", ohlcv_daily_schema(), "daily bars"),
            InputPort::new("index", index_daily_schema(), "market index bars").optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::new(
                "features",
                features_daily_schema(),
                WriteMode::Merge,
                "one row per code and date",
            )
            .keys(&["code", "date"])
            .date_column("date"),
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
        let index = if inputs.has("index") {
            Some(inputs.concat("index")?)
        } else {
            None
        };
        let mut out = build_features(
            &bars,
            index.as_ref(),
            &self.p.index_code,
            self.p.with_targets,
        )
        .await?;
        if let Some(n) = self.p.emit_days {
            let from = ctx.calendar.add_trading_days(ctx.ds, -(i64::from(n) - 1));
            let from_days = (from - chrono::NaiveDate::default()).num_days() as i32;
            let dates = out
                .column_by_name("date")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::Date32Array>())
                .ok_or_else(|| OpError::permanent("date must be Date32"))?;
            let keep: arrow::array::BooleanArray = dates
                .iter()
                .map(|d| Some(d.is_some_and(|d| d >= from_days)))
                .collect();
            out = arrow::compute::filter_record_batch(&out, &keep)?;
        }
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

/// The `features_daily` schema: code, date, every feature in [`FEATURES`] order, warmup,
/// targets.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
    ];
    for (name, _) in FEATURES {
        fields.push(Field::new(*name, DataType::Float64, true));
    }
    fields.push(Field::new("warmup", DataType::Boolean, false));
    for h in [1, 3, 5] {
        fields.push(Field::new(format!("y_ret_{h}d"), DataType::Float64, true));
        fields.push(Field::new(format!("y_dir_{h}d"), DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
