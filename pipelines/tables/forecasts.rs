//! Forecast tables. Every one is keyed by (code, base_date, horizon), dated by `base_date`,
//! and starts with the same columns ([`forecast_head`]); each also carries prob_up, prob_flat
//! and prob_down (±0.3% band).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use krxflow_core::TableDef;

/// The key, the target and the close the forecast starts from: code, base_date, horizon,
/// target_date, base_close.
pub fn forecast_head() -> Vec<Field> {
    vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("base_date", DataType::Date32, false),
        Field::new("horizon", DataType::Int32, false),
        Field::new("target_date", DataType::Date32, false),
        Field::new("base_close", DataType::Float64, false),
    ]
}

fn probabilities() -> Vec<Field> {
    ["prob_up", "prob_flat", "prob_down"]
        .into_iter()
        .map(|n| Field::new(n, DataType::Float64, false))
        .collect()
}

fn forecast_table(name: &str, fields: Vec<Field>, doc: &str) -> TableDef {
    TableDef::new(name, Arc::new(Schema::new(fields)))
        .keys(&["code", "base_date", "horizon"])
        .date_column("base_date")
        .doc(doc)
}

/// The columns of a quantile forecaster's table: the head, nine quantile prices q10..q90,
/// median, expected_return, the probabilities, conf, context_len and model.
fn quantile_forecast_fields() -> Vec<Field> {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = forecast_head();
    fields.extend((1..=9).map(|q| f(&format!("q{q}0"))));
    fields.extend([f("median"), f("expected_return")]);
    fields.extend(probabilities());
    fields.push(f("conf"));
    fields.push(Field::new("context_len", DataType::Int32, false));
    fields.push(Field::new("model", DataType::Utf8, false));
    fields
}

/// Chronos-Bolt forecasts: per (code, base_date, horizon), the nine quantile prices and what
/// follows from them.
pub fn chronos_forecasts() -> TableDef {
    forecast_table(
        "chronos_forecasts",
        quantile_forecast_fields(),
        "Chronos-Bolt quantile forecasts (q10..q90 prices), expected return, up/flat/down probabilities, conf",
    )
}

/// AutoETS forecasts on log closes (the embedded member): the columns of `chronos_forecasts`.
pub fn ets_forecasts() -> TableDef {
    forecast_table(
        "ets_forecasts",
        quantile_forecast_fields(),
        "AutoETS quantile forecasts on log closes (q10..q90 prices), expected return, up/flat/down probabilities, conf",
    )
}

/// The columns of a return forecaster's table: the head, predicted_return, predicted_close,
/// q10, q90 (prices), the probabilities and model_version.
fn return_forecast_fields() -> Vec<Field> {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = forecast_head();
    fields.extend(
        ["predicted_return", "predicted_close", "q10", "q90"]
            .into_iter()
            .map(f),
    );
    fields.extend(probabilities());
    fields.push(Field::new("model_version", DataType::Utf8, false));
    fields
}

/// LightGBM forecasts: per (code, base_date, horizon), prices and direction probabilities.
pub fn lgbm_predictions() -> TableDef {
    forecast_table(
        "lgbm_predictions",
        return_forecast_fields(),
        "LightGBM forecasts: return, close, residual q10/q90 and up/flat/down probabilities",
    )
}

/// The pooled linear ranker's forecasts (`pipelines/linear`): the columns of `lgbm_predictions`.
pub fn linear_predictions() -> TableDef {
    forecast_table(
        "linear_predictions",
        return_forecast_fields(),
        "linear ranker forecasts: return, close, residual q10/q90 and up/flat/down probabilities",
    )
}

/// The LSTM member's forecasts (`pipelines/lstm`): the columns of `lgbm_predictions`.
pub fn lstm_predictions() -> TableDef {
    forecast_table(
        "lstm_predictions",
        return_forecast_fields(),
        "LSTM forecasts: return, close, residual q10/q90 and up/flat/down probabilities",
    )
}

/// The ensemble's forecast: per (code, base_date, horizon), the weighted point, interval and
/// probabilities of the members present (see `pipelines/ensemble`).
pub fn predictions() -> TableDef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = forecast_head();
    fields.extend(["point", "q10", "q90"].into_iter().map(f));
    fields.extend(probabilities());
    fields.push(Field::new("direction", DataType::Utf8, false));
    fields.push(f("expected_return"));
    fields.push(Field::new("sources_used", DataType::Utf8, false));
    fields.push(Field::new("n_members", DataType::Int32, false));
    fields.push(Field::new("user_triggered", DataType::Boolean, false));
    forecast_table(
        "predictions",
        fields,
        "ensemble forecasts: weighted point close, q10/q90, up/flat/down probabilities, direction, members used",
    )
}

/// Each member's part in a prediction: its point, interval, probabilities and the weight it
/// got, so every member can be scored later without joining tables that have moved on.
pub fn prediction_members() -> TableDef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields = forecast_head();
    fields.push(Field::new("model", DataType::Utf8, false));
    fields.extend(["point", "q10", "q90"].into_iter().map(f));
    fields.extend(probabilities());
    fields.push(f("weight"));
    fields.push(Field::new("weight_source", DataType::Utf8, false));
    fields.push(Field::new("interval_source", DataType::Utf8, false));
    TableDef::new("prediction_members", Arc::new(Schema::new(fields)))
        .keys(&["code", "base_date", "horizon", "model"])
        .date_column("base_date")
        .doc("each member's point, q10/q90, probabilities and weight in a prediction (weight_source: learned or prior)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forecast_table_shares_the_head_and_the_probabilities() {
        for def in [
            chronos_forecasts(),
            ets_forecasts(),
            lgbm_predictions(),
            linear_predictions(),
            lstm_predictions(),
            predictions(),
            prediction_members(),
        ] {
            let names: Vec<&str> = def
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            let head: Vec<String> = forecast_head().iter().map(|f| f.name().clone()).collect();
            assert_eq!(names[..head.len()], head, "{}", def.name);
            for p in ["prob_up", "prob_flat", "prob_down"] {
                assert!(names.contains(&p), "{} lacks {p}", def.name);
            }
        }
    }
}
