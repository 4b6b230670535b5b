//! Trained models: the registry, training rejects and LightGBM validation metrics.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use krxflow_core::TableDef;

/// One row per trained model: where its artifact is, its content hash, the last date of data
/// it may have seen (`trained_through`: runs for ds >= that date can use it) and its metrics.
pub fn model_registry() -> TableDef {
    let schema = Schema::new(vec![
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
    ]);
    TableDef::new("model_registry", Arc::new(schema))
        .keys(&["model", "version"])
        .date_column("trained_through")
        .doc("trained models: artifact path, content hash, trained-through date, metrics")
}

/// One AutoETS model per code and fit (`ets.fit`, weekly): the selected model, its parameters,
/// its state after the last close it saw (`fitted_through`) and σ². `forecast.ets` carries the
/// state through later closes instead of refitting every day; a model is used only for days
/// after `fitted_through`.
pub fn ets_models() -> TableDef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("fitted_through", DataType::Date32, false),
        Field::new("model", DataType::Utf8, false),
    ];
    fields.extend(
        ["alpha", "beta", "phi", "level", "slope", "sigma2"]
            .into_iter()
            .map(f),
    );
    fields.push(Field::new("closes", DataType::Int64, false));
    TableDef::new("ets_models", Arc::new(Schema::new(fields)))
        .keys(&["code", "fitted_through"])
        .date_column("fitted_through")
        .doc("AutoETS per code as fitted weekly: model, alpha/beta/phi, level and slope after fitted_through, sigma2; the daily forecast updates the state")
}

/// Labelled training rows a trainer could not use.
pub fn training_rejects() -> TableDef {
    let schema = Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]);
    TableDef::new("training_rejects", Arc::new(schema))
        .keys(&["model", "source", "line"])
        .date_column("ds")
        .doc("labelled training rows that could not be used, with a reason")
}

/// Validation metrics of each LightGBM model pair (see `pipelines/lgbm`).
pub fn lgbm_metrics() -> TableDef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let schema = Schema::new(vec![
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
    ]);
    TableDef::new("lgbm_metrics", Arc::new(schema))
        .keys(&["scope", "code", "horizon", "version"])
        .date_column("trained_through")
        .doc("validation metrics of each LightGBM model pair (time-ordered split, early stopping)")
}
