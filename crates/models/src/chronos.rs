//! Chronos-Bolt through ONNX Runtime: a batch of close series in, 9 quantile paths out.
//!
//! The model folder is what `crates/models/export/chronos_bolt.py` writes: `model.onnx`
//! (input `context` f32 `[B, T]`, NaN = missing; output `quantiles` f32 `[B, 9, H]`) and
//! `config.json` (`context_length`, `prediction_length`, `quantiles`).

use std::path::Path;
use std::sync::Arc;

use ort::value::Tensor;
use serde::Deserialize;

use crate::onnx::{self, Device, SharedSession};
use crate::{ModelError, ModelResult};

#[derive(Debug, Clone, Deserialize)]
pub struct ChronosConfig {
    pub context_length: usize,
    pub prediction_length: usize,
    pub quantiles: Vec<f32>,
}

pub struct ChronosBolt {
    session: Arc<SharedSession>,
    pub config: ChronosConfig,
}

/// Quantile forecasts of one series: `values[q][step]`, levels in `ChronosConfig::quantiles`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantilePaths {
    pub values: Vec<Vec<f32>>,
}

impl ChronosBolt {
    /// Loads `dir/model.onnx` and `dir/config.json`.
    pub fn load(dir: &Path, device: Device, threads: usize) -> ModelResult<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| ModelError::ModelMissing(format!("{}: {e}", cfg_path.display())))?;
        let config: ChronosConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::Artifact(format!("{}: {e}", cfg_path.display())))?;
        if config.quantiles.len() != 9 || config.prediction_length == 0 {
            return Err(ModelError::Artifact(format!(
                "{}: expected 9 quantile levels and a prediction length",
                cfg_path.display()
            )));
        }
        let session = onnx::session(&dir.join("model.onnx"), device, threads)?;
        onnx::expect_io(&session, &["context"], &["quantiles"])?;
        Ok(Self { session, config })
    }

    /// Where the session runs (`cpu` / `cuda`).
    pub fn device(&self) -> &'static str {
        self.session.device
    }

    /// The `[B, T]` context tensor data: the last `context_length` values of each series,
    /// left-padded with NaN to the longest.
    pub fn context(&self, series: &[&[f32]]) -> (usize, Vec<f32>) {
        let t = series
            .iter()
            .map(|s| s.len().min(self.config.context_length))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut data = Vec::with_capacity(series.len() * t);
        for s in series {
            let tail = &s[s.len().saturating_sub(t)..];
            data.extend(std::iter::repeat_n(f32::NAN, t - tail.len()));
            data.extend_from_slice(tail);
        }
        (t, data)
    }

    /// Raw run: `[B, T]` context in, `[B, 9, H]` quantiles out (flat, row-major).
    pub fn run_raw(&self, batch: usize, t: usize, data: Vec<f32>) -> ModelResult<Vec<f32>> {
        let input = Tensor::from_array(([batch, t], data.into_boxed_slice()))
            .map_err(|e| ModelError::Inference(format!("context tensor: {e}")))?;
        let h = self.config.prediction_length;
        self.session.with(|s| {
            let out = s
                .run(ort::inputs!["context" => input])
                .map_err(|e| ModelError::Inference(format!("chronos run: {e}")))?;
            let (shape, values) = out["quantiles"]
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Inference(format!("quantiles: {e}")))?;
            let want = [batch as i64, 9, h as i64];
            if shape.as_ref() != want {
                return Err(ModelError::Inference(format!(
                    "quantiles shape {shape:?}, expected {want:?}"
                )));
            }
            Ok(values.to_vec())
        })
    }

    /// Forecasts every series (one batch).
    pub fn forecast(&self, series: &[&[f32]]) -> ModelResult<Vec<QuantilePaths>> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let (t, data) = self.context(series);
        let flat = self.run_raw(series.len(), t, data)?;
        let h = self.config.prediction_length;
        Ok(flat
            .chunks(9 * h)
            .map(|b| QuantilePaths {
                values: b.chunks(h).map(<[f32]>::to_vec).collect(),
            })
            .collect())
    }
}
