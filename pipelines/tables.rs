//! Every table the pipeline writes, declared once: schema, keys, date column, doc. Operator
//! ports reuse these schema functions.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use krxflow_core::TableDef;

/// ±0.3%: a move inside the band is `flat`.
pub const FLAT_BAND: f64 = 0.003;

pub fn ohlcv_daily_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Int64, false),
        Field::new("source", DataType::Utf8, false),
    ]))
}

pub fn ohlcv_rejects_schema() -> SchemaRef {
    crate::ingest::ohlcv::rejects_schema()
}

/// Market index bars (KOSPI `KS11`, KOSDAQ `KQ11`). Index files often carry only a close, or no
/// volume, so open/high/low are nullable.
pub fn index_daily_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("open", DataType::Float64, true),
        Field::new("high", DataType::Float64, true),
        Field::new("low", DataType::Float64, true),
        Field::new("close", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
    ]))
}

pub fn news_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new(
            "published_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("Asia/Seoul".into())),
            false,
        ),
        Field::new("source", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("body", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
    ]))
}

pub fn news_rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Per-article sentiment from a scorer (KR-FinBert-SC, the lexical model): score =
/// P(pos) − P(neg) in [-1, 1], label = argmax; `embedding` = FinBERT's attention-masked mean of
/// the last hidden state (768 values for KR-FinBert-SC; null for the lexical model).
pub fn news_scores_schema() -> SchemaRef {
    let mut fields = news_scores_required().fields().to_vec();
    fields.push(Arc::new(embedding_field()));
    Arc::new(Schema::new(fields))
}

/// The `embedding` column: a list of f32 (its length is the model's hidden size).
pub fn embedding_field() -> Field {
    Field::new(
        "embedding",
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
        true,
    )
}

/// The news_scores columns readers need (everything but the embedding).
pub fn news_scores_required() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("p_neg", DataType::Float64, true),
        Field::new("p_neu", DataType::Float64, true),
        Field::new("p_pos", DataType::Float64, true),
    ]))
}

/// One row per trained model: where its artifact is, its content hash, the last date of data
/// it may have seen (`trained_through`: runs for ds >= that date can use it) and its metrics.
pub fn model_registry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("trained_through", DataType::Date32, false),
        Field::new(
            "trained_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("metrics", DataType::Utf8, false),
    ]))
}

/// Labelled training rows a trainer could not use.
pub fn training_rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Daily sentiment per (code, trading date the news counts for).
pub fn sentiment_daily_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("n_articles", DataType::Int64, false),
        Field::new("n_scored", DataType::Int64, false),
        Field::new("mean_score", DataType::Float64, true),
        Field::new("weighted_score", DataType::Float64, true),
        Field::new("pos_ratio", DataType::Float64, true),
        Field::new("neg_ratio", DataType::Float64, true),
        Field::new("neu_ratio", DataType::Float64, true),
    ]))
}

pub fn universe_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("market", DataType::Utf8, false),
    ]))
}

pub fn features_returns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ret_1d", DataType::Float64, true),
        Field::new("ret_5d", DataType::Float64, true),
        Field::new("ret_20d", DataType::Float64, true),
        Field::new("vol_20d", DataType::Float64, true),
        Field::new("warmup", DataType::Boolean, false),
    ]))
}

/// Chronos-Bolt forecasts: per (code, base_date, horizon), the nine quantile prices and what
/// follows from them.
pub fn chronos_forecasts_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("base_date", DataType::Date32, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("target_date", DataType::Date32, false),
        f("base_close"),
    ];
    for q in 1..=9 {
        fields.push(f(&format!("q{q}0")));
    }
    for n in [
        "median",
        "expected_return",
        "prob_up",
        "prob_flat",
        "prob_down",
        "conf",
    ] {
        fields.push(f(n));
    }
    fields.push(Field::new("context_len", DataType::Int32, false));
    fields.push(Field::new("model", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Validation metrics of each LightGBM model pair (see `pipelines/lgbm`).
pub fn lgbm_metrics_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("scope", DataType::Utf8, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("trained_through", DataType::Date32, false),
        Field::new("train_rows", DataType::Int64, false),
        Field::new("valid_rows", DataType::Int64, false),
        Field::new("best_iteration_regression", DataType::Int32, false),
        Field::new("best_iteration_direction", DataType::Int32, false),
        f("valid_mae"),
        Field::new("valid_dir_acc_regression", DataType::Float64, false),
        Field::new("valid_dir_acc_classifier", DataType::Float64, false),
        Field::new("valid_dir_acc_majority", DataType::Float64, false),
        f("valid_logloss"),
        f("residual_q10"),
        f("residual_q90"),
        Field::new("feature_hash", DataType::Utf8, false),
    ]))
}

/// LightGBM forecasts: per (code, base_date, horizon), prices and direction probabilities.
pub fn lgbm_predictions_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("base_date", DataType::Date32, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("target_date", DataType::Date32, false),
        f("base_close"),
        f("predicted_return"),
        f("predicted_close"),
        f("q10"),
        f("q90"),
        f("prob_up"),
        f("prob_flat"),
        f("prob_down"),
        Field::new("model_version", DataType::Utf8, false),
    ]))
}

pub fn features_daily_schema() -> SchemaRef {
    crate::features::build::schema()
}

/// The catalog entries.
pub fn all() -> Vec<TableDef> {
    let mut defs = core_tables();
    defs.extend(crate::momentum::minute::table_defs());
    defs
}

fn core_tables() -> Vec<TableDef> {
    vec![
        TableDef::new("ohlcv_daily", ohlcv_daily_schema())
            .keys(&["code", "date"])
            .date_column("date")
            .doc("daily bars per code (accepted rows only)"),
        TableDef::new("ohlcv_rejects", ohlcv_rejects_schema())
            .keys(&["id"])
            .date_column("ds")
            .doc("rejected input rows with a reason code and the raw line"),
        TableDef::new("index_daily", index_daily_schema())
            .keys(&["code", "date"])
            .date_column("date")
            .doc("market index closes (KOSPI, KOSDAQ)"),
        TableDef::new("index_rejects", ohlcv_rejects_schema())
            .keys(&["id"])
            .date_column("ds")
            .doc("rejected index rows (e.g. Yahoo `null` rows) with a reason code and the raw line"),
        TableDef::new("news", news_schema())
            .keys(&["id"])
            .date_column("date")
            .doc("dated headlines per code (date = KST publication date)"),
        TableDef::new("news_rejects", news_rejects_schema())
            .keys(&["id"])
            .date_column("ds")
            .doc("news records that could not be used (no ticker, no title, bad time) with the raw record"),
        TableDef::new("news_scores", news_scores_schema())
            .keys(&["id", "model"])
            .date_column("date")
            .doc("per-article sentiment score and label per model"),
        TableDef::new("model_registry", model_registry_schema())
            .keys(&["model", "version"])
            .date_column("trained_through")
            .doc("trained models: artifact path, content hash, trained-through date, metrics"),
        TableDef::new("training_rejects", training_rejects_schema())
            .keys(&["model", "line"])
            .date_column("ds")
            .doc("labelled training rows that could not be used, with a reason"),
        TableDef::new("sentiment_daily", sentiment_daily_schema())
            .keys(&["code", "date"])
            .date_column("date")
            .doc("daily news sentiment per code; news after 15:30 KST counts for the next trading day"),
        TableDef::new("universe_rejects", ohlcv_rejects_schema())
            .keys(&["id"])
            .date_column("ds")
            .doc("universe listing rows with a bad code or no name"),
        TableDef::new("universe", universe_schema())
            .keys(&["code"])
            .doc("codes, names and markets"),
        TableDef::new("features_returns", features_returns_schema())
            .keys(&["code", "date"])
            .date_column("date")
            .doc("1/5/20-day returns and 20-day volatility per code"),
        TableDef::new("features_daily", features_daily_schema())
            .keys(&["code", "date"])
            .date_column("date")
            .doc("the feature table (see pipelines/features/build.rs FEATURES) with optional targets"),
        TableDef::new("chronos_forecasts", chronos_forecasts_schema())
            .keys(&["code", "base_date", "horizon"])
            .date_column("base_date")
            .doc("Chronos-Bolt quantile forecasts (q10..q90 prices), expected return, up/flat/down probabilities, conf"),
        TableDef::new("lgbm_metrics", lgbm_metrics_schema())
            .keys(&["scope", "code", "horizon", "version"])
            .date_column("trained_through")
            .doc("validation metrics of each LightGBM model pair (time-ordered split, early stopping)"),
        TableDef::new("lgbm_predictions", lgbm_predictions_schema())
            .keys(&["code", "base_date", "horizon"])
            .date_column("base_date")
            .doc("LightGBM forecasts: return, close, residual q10/q90 and up/flat/down probabilities"),
    ]
}
