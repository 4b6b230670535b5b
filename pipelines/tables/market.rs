//! Market data: daily and minute bars, index closes, the universe, and their rejects.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use krxflow_core::TableDef;

use crate::common::rejects;

pub fn ohlcv_daily() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Int64, false),
        Field::new("source", DataType::Utf8, false),
    ]);
    TableDef::new("ohlcv_daily", Arc::new(schema))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("daily bars per code (accepted rows only)")
}

pub fn ohlcv_rejects() -> TableDef {
    TableDef::new("ohlcv_rejects", rejects::schema())
        .keys(&["id"])
        .date_column("ds")
        .doc("rejected input rows with a reason code and the raw line")
}

/// Market index bars (KOSPI `KS11`, KOSDAQ `KQ11`). Index files often carry only a close, or no
/// volume, so open/high/low are nullable.
pub fn index_daily() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("open", DataType::Float64, true),
        Field::new("high", DataType::Float64, true),
        Field::new("low", DataType::Float64, true),
        Field::new("close", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
    ]);
    TableDef::new("index_daily", Arc::new(schema))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("market index closes (KOSPI, KOSDAQ)")
}

pub fn index_rejects() -> TableDef {
    TableDef::new("index_rejects", rejects::schema())
        .keys(&["id"])
        .date_column("ds")
        .doc("rejected index rows (e.g. Yahoo `null` rows) with a reason code and the raw line")
}

pub fn universe() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("market", DataType::Utf8, false),
    ]);
    TableDef::new("universe", Arc::new(schema))
        .keys(&["code"])
        .doc("codes, names and markets")
}

pub fn universe_rejects() -> TableDef {
    TableDef::new("universe_rejects", rejects::schema())
        .keys(&["id"])
        .date_column("ds")
        .doc("universe listing rows with a bad code or no name")
}

pub fn ohlcv_minute() -> TableDef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("Asia/Seoul".into()));
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ts", ts, false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Int64, false),
    ]);
    TableDef::new("ohlcv_minute", Arc::new(schema))
        .keys(&["code", "ts"])
        .date_column("date")
        .doc("1-minute bars per code (date = KST trading date)")
}
