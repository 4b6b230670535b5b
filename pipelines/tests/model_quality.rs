//! `weights.update` reports each member's hit rate and new weight as typed
//! `ModelQuality` observations (the `krxflow_prediction_hit_rate` / `krxflow_ensemble_weight`
//! series), with the same values it writes to `ensemble_weights`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use krxflow_core::{
    InputBatches, Observation, Operator, TaskContext, TaskCounters, TaskObservations,
    WeekdayCalendar,
};
use krxflow_pipelines::outcomes::weights::WeightsUpdate;
use krxflow_pipelines::tables;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn days(x: NaiveDate) -> i32 {
    (x - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn ctx(ds: NaiveDate) -> TaskContext {
    TaskContext {
        dag: "test".into(),
        task: "weights".into(),
        ds,
        run_id: "test".into(),
        attempt: 1,
        calendar: Arc::new(WeekdayCalendar::default()),
        cancel: Default::default(),
        counters: Arc::new(TaskCounters::default()),
        observations: Arc::new(TaskObservations::default()),
        artifacts: Arc::new(Mutex::new(Vec::new())),
        watermarks: BTreeMap::new(),
        store: None,
    }
}

/// `prediction_outcomes` rows of 005930, horizon 1: (model, target date, direction hit); every
/// other column a neutral value.
fn outcomes(rows: &[(&str, &str, bool)]) -> RecordBatch {
    let schema = tables::prediction_outcomes().schema;
    let n = rows.len();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match (f.name().as_str(), f.data_type()) {
                ("model", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                ("target_date", _) | ("base_date", _) => Arc::new(Date32Array::from_iter_values(
                    rows.iter().map(|r| days(d(r.1))),
                )),
                ("direction_hit", _) => Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                ("horizon", _) => Arc::new(Int32Array::from(vec![1; n])),
                (_, DataType::Utf8) => Arc::new(StringArray::from(vec!["005930"; n])),
                (_, DataType::Boolean) => Arc::new(BooleanArray::from(vec![false; n])),
                (_, DataType::Float64) => Arc::new(Float64Array::from(vec![0.01; n])),
                (name, t) => panic!("outcomes column {name}: {t} not built by this test"),
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols).expect("outcomes batch")
}

#[tokio::test]
async fn every_member_weight_is_observed_with_its_hit_rate() {
    let ds = d("2024-06-28");
    let batch = outcomes(&[
        ("chronos", "2024-06-24", true),
        ("chronos", "2024-06-25", true),
        ("chronos", "2024-06-26", true),
        ("chronos", "2024-06-27", false),
        ("lgbm", "2024-06-24", true),
        ("lgbm", "2024-06-25", false),
        ("lgbm", "2024-06-26", false),
        ("lgbm", "2024-06-27", false),
        ("ensemble", "2024-06-27", true),
    ]);
    let op = WeightsUpdate
        .configure(&serde_json::json!({}))
        .expect("params");
    let mut inputs = InputBatches::default();
    inputs.insert(
        "outcomes",
        "prediction_outcomes",
        batch.schema(),
        vec![batch],
    );
    let ctx = ctx(ds);
    let out = op.run(&ctx, inputs).await.expect("run");

    let written = &out.batches("weights").expect("weights port")[0];
    let model = written
        .column_by_name("model")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .expect("model");
    let weight = written
        .column_by_name("weight")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        .expect("weight");
    let written: BTreeMap<String, f64> = (0..written.num_rows())
        .map(|i| (model.value(i).to_string(), weight.value(i)))
        .collect();

    let observed: BTreeMap<String, (String, u32, Option<f64>, f64)> = ctx
        .observations
        .snapshot()
        .into_iter()
        .filter_map(|o| match o {
            Observation::ModelQuality {
                code,
                horizon,
                model,
                hit_rate,
                weight,
            } => Some((model, (code, horizon, hit_rate, weight))),
            _ => None,
        })
        .collect();
    assert_eq!(
        observed.keys().collect::<Vec<_>>(),
        ["chronos", "lgbm"],
        "one per member, none for the ensemble"
    );
    assert_eq!(
        observed["chronos"],
        ("005930".into(), 1, Some(0.75), written["chronos"])
    );
    assert_eq!(
        observed["lgbm"],
        ("005930".into(), 1, Some(0.25), written["lgbm"])
    );
    assert!((written["chronos"] + written["lgbm"] - 1.0).abs() < 1e-12);
}
