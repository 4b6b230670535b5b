//! The track record: matured predictions against real closes, the weights learned from them,
//! and each member's rolling performance. Every table is dated by the day its rows became
//! known, so a backfilled day D sees only the record known at D's close.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use krxflow_core::TableDef;

use super::forecasts::forecast_head;

/// One row per matured prediction and model (`ensemble` and each member).
pub fn prediction_outcomes() -> TableDef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = forecast_head();
    fields.push(Field::new("model", DataType::Utf8, false));
    fields.extend(["point", "q10", "q90"].into_iter().map(f));
    fields.push(Field::new("predicted_direction", DataType::Utf8, false));
    fields.extend(["actual_close", "actual_return"].into_iter().map(f));
    fields.push(Field::new("actual_direction", DataType::Utf8, false));
    fields.push(Field::new("direction_hit", DataType::Boolean, false));
    fields.extend(["abs_error", "abs_pct_error"].into_iter().map(f));
    fields.push(Field::new("inside_interval", DataType::Boolean, false));
    fields.extend(
        ["pinball_q10", "pinball_q50", "pinball_q90"]
            .into_iter()
            .map(f),
    );
    fields.push(Field::new("weight", DataType::Float64, true));
    fields.push(Field::new("user_triggered", DataType::Boolean, false));
    TableDef::new("prediction_outcomes", Arc::new(Schema::new(fields)))
        .keys(&["code", "base_date", "horizon", "model"])
        .date_column("target_date")
        .doc("matured predictions (ensemble and each member) against the real close: direction hit (±0.3% band), errors, interval hit, pinball losses")
}

/// The weight of each member per (code, horizon), one row per update day (`as_of`): the
/// latest row on or before a day is the weight that day's ensemble uses.
pub fn ensemble_weights() -> TableDef {
    let opt = |n: &str| Field::new(n, DataType::Float64, true);
    let schema = Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("as_of", DataType::Date32, false),
        Field::new("weight", DataType::Float64, false),
        Field::new("prior", DataType::Float64, false),
        opt("empirical"),
        opt("prev_weight"),
        Field::new("sample_count", DataType::Int64, false),
        opt("hit_rate"),
        opt("mae"),
        opt("pinball"),
        Field::new("method", DataType::Utf8, false),
    ]);
    TableDef::new("ensemble_weights", Arc::new(schema))
        .keys(&["code", "horizon", "model", "as_of"])
        .date_column("as_of")
        .doc("member weights per (code, horizon) by update day: the skill inputs, the shrinkage prior and the previous weight")
}

/// Each model's (`ensemble` and members) rolling record per horizon.
pub fn model_performance() -> TableDef {
    let opt = |n: &str| Field::new(n, DataType::Float64, true);
    let schema = Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("as_of", DataType::Date32, false),
        Field::new("window_days", DataType::Int32, false),
        Field::new("n", DataType::Int64, false),
        opt("hit_rate"),
        opt("mae"),
        opt("mape"),
        opt("coverage"),
        opt("pinball"),
    ]);
    TableDef::new("model_performance", Arc::new(schema))
        .keys(&["model", "horizon", "as_of"])
        .date_column("as_of")
        .doc("per model and horizon over the trailing window: hit rate, MAE, MAPE, q10-q90 coverage, pinball loss, n")
}
