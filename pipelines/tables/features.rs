//! Features: returns, the feature table (its documented columns: [`FEATURES`]) and intraday
//! momentum.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use krxflow_core::TableDef;

use crate::common::horizons::HORIZONS;

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
    (
        "close_loc",
        "(close - low) / (high - low): 0 closed at the low, 1 at the high; null when high = low",
    ),
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

pub fn features_returns() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ret_1d", DataType::Float64, true),
        Field::new("ret_5d", DataType::Float64, true),
        Field::new("ret_20d", DataType::Float64, true),
        Field::new("vol_20d", DataType::Float64, true),
        Field::new("warmup", DataType::Boolean, false),
    ]);
    TableDef::new("features_returns", Arc::new(schema))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("1/5/20-day returns and 20-day volatility per code")
}

/// The `features_daily` schema: code, date, every feature in [`FEATURES`] order, warmup, and
/// the targets of every horizon (`y_ret_<h>d`, `y_dir_<h>d`).
pub fn features_daily() -> TableDef {
    let mut fields = vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
    ];
    for (name, _) in FEATURES {
        fields.push(Field::new(*name, DataType::Float64, true));
    }
    fields.push(Field::new("warmup", DataType::Boolean, false));
    for h in HORIZONS {
        fields.push(Field::new(format!("y_ret_{h}d"), DataType::Float64, true));
        fields.push(Field::new(format!("y_dir_{h}d"), DataType::Utf8, true));
    }
    TableDef::new("features_daily", Arc::new(Schema::new(fields)))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("the feature table (see docs/features.md) with optional targets")
}

pub fn minute_momentum() -> TableDef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("Asia/Seoul".into()));
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("as_of", ts, true),
        Field::new("n_minute_bars", DataType::Int64, false),
        Field::new("n_bars_5m", DataType::Int64, false),
        Field::new("green", DataType::Int64, true),
        Field::new("volume_ratio", DataType::Float64, true),
        Field::new("class", DataType::Utf8, false),
    ]);
    TableDef::new("minute_momentum", Arc::new(schema))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("intraday momentum class per code and day from the last 25 minutes")
}
