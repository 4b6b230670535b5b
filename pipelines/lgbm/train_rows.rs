//! The rows an `lgbm.train` run writes: one `model_registry` row per model pair
//! ([`RegistryRows`]) and its validation metrics in `lgbm_metrics` ([`MetricRows`]).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use krxflow_core::OpResult;

use super::ModelCard;
use crate::tables;

#[derive(Default)]
pub(crate) struct RegistryRows {
    pub(crate) model: Vec<String>,
    version: Vec<String>,
    path: Vec<String>,
    hash: Vec<String>,
    through: Vec<i32>,
    at: Vec<i64>,
    metrics: Vec<String>,
}

impl RegistryRows {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        model: &str,
        version: &str,
        path: &str,
        hash: &str,
        through: i32,
        at: i64,
        metrics: String,
    ) {
        self.model.push(model.into());
        self.version.push(version.into());
        self.path.push(path.into());
        self.hash.push(hash.into());
        self.through.push(through);
        self.at.push(at);
        self.metrics.push(metrics);
    }

    /// The rows, of registry `kind` (`lgbm`, `linear`).
    pub(crate) fn batch(self, kind: &str) -> OpResult<RecordBatch> {
        let n = self.model.len();
        Ok(RecordBatch::try_new(
            tables::model_registry().schema,
            vec![
                Arc::new(StringArray::from(self.model)) as ArrayRef,
                Arc::new(StringArray::from(vec![kind; n])),
                Arc::new(StringArray::from(self.version)),
                Arc::new(StringArray::from(self.path)),
                Arc::new(StringArray::from(self.hash)),
                Arc::new(Date32Array::from(self.through)),
                Arc::new(TimestampMillisecondArray::from(self.at).with_timezone("UTC")),
                Arc::new(StringArray::from(self.metrics)),
            ],
        )?)
    }
}

#[derive(Default)]
pub(super) struct MetricRows {
    scope: Vec<String>,
    code: Vec<String>,
    horizon: Vec<i32>,
    version: Vec<String>,
    through: Vec<i32>,
    train_rows: Vec<i64>,
    valid_rows: Vec<i64>,
    best_reg: Vec<i32>,
    best_dir: Vec<i32>,
    mae: Vec<Option<f64>>,
    acc_reg: Vec<f64>,
    acc_dir: Vec<f64>,
    acc_majority: Vec<f64>,
    logloss: Vec<Option<f64>>,
    q10: Vec<Option<f64>>,
    q90: Vec<Option<f64>>,
    fhash: Vec<String>,
}

impl MetricRows {
    pub(super) fn push(&mut self, c: &ModelCard, through: i32) {
        self.scope.push(c.scope.as_str().into());
        self.code.push(c.code.clone());
        self.horizon.push(c.horizon as i32);
        self.version.push(c.version.clone());
        self.through.push(through);
        self.train_rows.push(c.regression.train_rows as i64);
        self.valid_rows.push(c.regression.valid_rows as i64);
        self.best_reg.push(c.regression.best_iteration);
        self.best_dir.push(c.direction.best_iteration);
        self.mae.push(c.regression.valid_mae);
        self.acc_reg.push(c.regression.valid_direction_accuracy);
        self.acc_dir.push(c.direction.valid_direction_accuracy);
        self.acc_majority.push(c.valid_majority_accuracy);
        self.logloss.push(c.direction.valid_logloss);
        self.q10.push(c.regression.residual_q10);
        self.q90.push(c.regression.residual_q90);
        self.fhash.push(c.feature_hash.clone());
    }

    pub(super) fn batch(self) -> OpResult<RecordBatch> {
        Ok(RecordBatch::try_new(
            tables::lgbm_metrics().schema,
            vec![
                Arc::new(StringArray::from(self.scope)) as ArrayRef,
                Arc::new(StringArray::from(self.code)),
                Arc::new(Int32Array::from(self.horizon)),
                Arc::new(StringArray::from(self.version)),
                Arc::new(Date32Array::from(self.through)),
                Arc::new(Int64Array::from(self.train_rows)),
                Arc::new(Int64Array::from(self.valid_rows)),
                Arc::new(Int32Array::from(self.best_reg)),
                Arc::new(Int32Array::from(self.best_dir)),
                Arc::new(Float64Array::from(self.mae)),
                Arc::new(Float64Array::from(self.acc_reg)),
                Arc::new(Float64Array::from(self.acc_dir)),
                Arc::new(Float64Array::from(self.acc_majority)),
                Arc::new(Float64Array::from(self.logloss)),
                Arc::new(Float64Array::from(self.q10)),
                Arc::new(Float64Array::from(self.q90)),
                Arc::new(StringArray::from(self.fhash)),
            ],
        )?)
    }
}
