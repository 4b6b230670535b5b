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

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::tables::{
    FLAT_BAND, features_daily_schema, index_daily_schema, ohlcv_daily_schema,
    sentiment_daily_schema,
};

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
    (
        "sent_n_articles",
        "articles counting for day t (sentiment table present; 0 when none)",
    ),
    ("sent_mean", "mean article score in [-1, 1] for day t"),
    ("sent_weighted", "source-weighted mean score for day t"),
    (
        "sent_pos_ratio",
        "positive labels / scored articles for day t",
    ),
    (
        "sent_neg_ratio",
        "negative labels / scored articles for day t",
    ),
    (
        "sent_decay3",
        "w[t] + 0.5 w[t-1] + 0.25 w[t-2], w = sent_weighted (0 when no scored news), over the code's bar days",
    ),
];

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

/// The SQL over `bars` (sorted, with `_row`), `mkt` (index returns by date) and `sent`
/// (`sentiment_daily`).
fn feature_sql(with_index: bool, with_sentiment: bool, horizons: &[u32]) -> String {
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
    let (sent_join, n_articles) = if with_sentiment {
        (
            "LEFT JOIN sent ON r.code = sent.code AND r.date = sent.date",
            "CAST(coalesce(s_n, 0) AS DOUBLE)",
        )
    } else {
        (
            "LEFT JOIN (SELECT CAST(NULL AS VARCHAR) AS code, CAST(NULL AS DATE) AS date, CAST(NULL AS BIGINT) AS n_articles, CAST(NULL AS DOUBLE) AS mean_score, CAST(NULL AS DOUBLE) AS weighted_score, CAST(NULL AS DOUBLE) AS pos_ratio, CAST(NULL AS DOUBLE) AS neg_ratio) sent ON r.code = sent.code AND r.date = sent.date",
            "CAST(NULL AS DOUBLE)",
        )
    };
    let decay = if with_sentiment {
        format!(
            "coalesce(s_w, 0) + 0.5 * coalesce(lag(s_w, 1) {W}, 0) + 0.25 * coalesce(lag(s_w, 2) {W}, 0)"
        )
    } else {
        "CAST(NULL AS DOUBLE)".to_string()
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
         j AS (SELECT r.*, mkt.mkt_ret_1d, mkt.mkt_ret_5d, mkt.mkt_ret_20d,
                      sent.n_articles AS s_n, sent.mean_score AS s_mean, sent.weighted_score AS s_w,
                      sent.pos_ratio AS s_pos, sent.neg_ratio AS s_neg
               FROM r {mkt_join} {sent_join})
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
            close / c20 - 1 - mkt_ret_20d AS rel_strength_20d,
            {n_articles} AS sent_n_articles, s_mean AS sent_mean, s_w AS sent_weighted,
            s_pos AS sent_pos_ratio, s_neg AS sent_neg_ratio, {decay} AS sent_decay3
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
    sentiment: Option<&RecordBatch>,
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
    let with_sentiment = match sentiment {
        Some(st) => {
            ctx.register_table(
                "sent",
                Arc::new(MemTable::try_new(st.schema(), vec![vec![st.clone()]])?),
            )?;
            true
        }
        None => false,
    };
    let horizons: &[u32] = if targets { &[1, 3, 5] } else { &[] };
    let sql = feature_sql(with_index, with_sentiment, horizons);
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
            && !matches!(name, "code" | "date")
            && !OPTIONAL_FEATURES.contains(&name);
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
            InputPort::new("bars", ohlcv_daily_schema(), "daily bars"),
            InputPort::new("index", index_daily_schema(), "market index bars").optional(),
            InputPort::new(
                "sentiment",
                sentiment_daily_schema(),
                "daily news sentiment",
            )
            .optional(),
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
            .date_column("date")
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
        let mut out = build_features(
            &bars,
            index.as_ref(),
            sentiment.as_ref(),
            &self.p.index_code,
            self.p.with_targets,
        )
        .await?;
        if let Some(from) = self.emit_from(
            ctx.ds,
            ctx.watermarks.get("features").copied(),
            ctx.calendar.as_ref(),
        ) {
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

    use crate::testutil::d;
    use arrow::array::{BooleanArray, Date32Array, Int64Array};
    use krxflow_core::Calendar;

    fn day(x: chrono::NaiveDate) -> i32 {
        (x - chrono::NaiveDate::default()).num_days() as i32
    }

    /// Deterministic bars for `codes` on `n` weekdays from 2024-01-01.
    fn fixture(codes: &[&str], n: usize) -> (RecordBatch, RecordBatch, RecordBatch) {
        let cal = krxflow_core::WeekdayCalendar::default();
        let dates = cal.trading_days(d("2024-01-01"), d("2026-01-01"));
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
            ohlcv_daily_schema(),
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
            index_daily_schema(),
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
            sentiment_daily_schema(),
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

    /// Rows of `b` dated on or before `last`.
    fn upto(b: &RecordBatch, last: i32) -> RecordBatch {
        let dates = b
            .column_by_name("date")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap();
        let keep: BooleanArray = dates.iter().map(|x| Some(x.unwrap() <= last)).collect();
        arrow::compute::filter_record_batch(b, &keep).unwrap()
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
    async fn sql_features_match_hand_computed_values() {
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
        let schema = schema();
        for (name, _) in FEATURES {
            assert!(
                schema.field_with_name(name).is_ok(),
                "{name} not in the table"
            );
        }
    }
}
