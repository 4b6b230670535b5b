//! Every table the pipeline writes, declared once: schema, keys, date column, doc. One file per
//! family; each table is a function `fn <table>() -> TableDef`. Operators build their output
//! ports from these definitions ([`krxflow_core::OutputPort::for_table`]) and their input
//! ports from the definitions' schemas, so a table's columns and keys exist in one place.
//!
//! Adding a table: one function in its family file and one line in [`all`] (then
//! `KRXFLOW_BLESS=1 cargo test -p krxflow-pipelines --lib contract` regenerates the table list
//! of `storage/README.md`).

mod evaluation;
mod features;
mod forecasts;
mod market;
mod models;
mod news;

pub use evaluation::*;
pub use features::*;
pub use forecasts::*;
pub use market::*;
pub use models::*;
pub use news::*;

use krxflow_core::TableDef;

/// The catalog entries: every table above.
/// The fields of `def` named in `keep`, in the table's order: the schema of an input port
/// that needs (and, when [`krxflow_core::InputPort::projected`], reads) only these columns.
pub fn subset(def: &TableDef, keep: &[&str]) -> arrow::datatypes::SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = def
        .schema
        .fields()
        .iter()
        .filter(|f| keep.contains(&f.name().as_str()))
        .map(|f| f.as_ref().clone())
        .collect();
    std::sync::Arc::new(arrow::datatypes::Schema::new(fields))
}

pub fn all() -> Vec<TableDef> {
    vec![
        ohlcv_daily(),
        ohlcv_rejects(),
        index_daily(),
        index_rejects(),
        universe(),
        universe_rejects(),
        ohlcv_minute(),
        news(),
        news_rejects(),
        news_scores(),
        sentiment_daily(),
        features_returns(),
        features_daily(),
        minute_momentum(),
        model_registry(),
        training_rejects(),
        lgbm_metrics(),
        chronos_forecasts(),
        ets_forecasts(),
        ets_models(),
        lgbm_predictions(),
        linear_predictions(),
        lstm_predictions(),
        predictions(),
        prediction_members(),
        prediction_outcomes(),
        ensemble_weights(),
        model_performance(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_unique_name_keys_in_its_schema_and_a_doc() {
        let defs = all();
        let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a table is declared twice");
        for d in &defs {
            assert!(!d.doc.is_empty(), "{} has no doc", d.name);
            for col in d
                .keys
                .iter()
                .chain(&d.date_column)
                .chain(&d.partition_column)
            {
                assert!(
                    d.schema.field_with_name(col).is_ok(),
                    "{}: key/date column `{col}` is not in the schema",
                    d.name
                );
            }
        }
    }
}
