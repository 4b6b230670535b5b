//! News: dated headlines, their rejects, per-article sentiment scores and daily sentiment.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use krxflow_core::TableDef;

pub fn news() -> TableDef {
    let schema = Schema::new(vec![
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
    ]);
    TableDef::new("news", Arc::new(schema))
        .keys(&["id"])
        .date_column("date")
        .doc("dated headlines per code (date = KST publication date)")
}

pub fn news_rejects() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]);
    TableDef::new("news_rejects", Arc::new(schema))
        .keys(&["id"])
        .date_column("ds")
        .doc("news records that could not be used (no ticker, no title, bad time) with the raw record; ds = the record's publication date, or the run's day when it has none")
}

/// Per-article sentiment from a scorer (KR-FinBert-SC, the lexical model): score =
/// P(pos) − P(neg) in [-1, 1], label = argmax; `embedding` = FinBERT's attention-masked mean of
/// the last hidden state (768 values for KR-FinBert-SC; null for the lexical model).
pub fn news_scores() -> TableDef {
    let mut fields = news_scores_required().fields().to_vec();
    fields.push(Arc::new(embedding_field()));
    TableDef::new("news_scores", Arc::new(Schema::new(fields)))
        .keys(&["id", "model"])
        .date_column("date")
        .doc("per-article sentiment score and label per model")
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

/// Daily sentiment per (code, trading date the news counts for).
pub fn sentiment_daily() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("n_articles", DataType::Int64, false),
        Field::new("n_scored", DataType::Int64, false),
        Field::new("mean_score", DataType::Float64, true),
        Field::new("weighted_score", DataType::Float64, true),
        Field::new("pos_ratio", DataType::Float64, true),
        Field::new("neg_ratio", DataType::Float64, true),
        Field::new("neu_ratio", DataType::Float64, true),
    ]);
    TableDef::new("sentiment_daily", Arc::new(schema))
        .keys(&["code", "date"])
        .date_column("date")
        .doc("daily news sentiment per code; news after 15:30 KST counts for the next trading day")
}
