//! `sentiment.finbert`: KR-FinBert-SC (ONNX) scores for articles of `news` that have no score
//! from this model yet, written to `news_scores` with the pooled embedding.
//!
//! At most `limit` articles per run, newest first, so a daily run is cheap and a re-run scores
//! nothing twice (idempotent: merge on (id, model)). A missing model folder or ONNX Runtime
//! library is `skipped`: sentiment.daily then uses the other models' scores.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float32Builder, Float64Array, ListBuilder, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::finbert::FinBert;
use krxflow_models::onnx::Device;
use serde::Deserialize;

use crate::cols::{date_col, scored_ids, str_col};
use crate::common::onnx_model::{model_error, model_folder};
use crate::tables;

/// Labels in the model's class order.
const LABELS: [&str; 3] = ["neg", "neu", "pos"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinbertParams {
    /// Folder written by crates/models/export/finbert.py (model.onnx + tokenizer).
    pub model: String,
    /// Value of news_scores.model for these scores.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default)]
    pub device: Device,
    #[serde(default)]
    pub threads: usize,
}

fn default_name() -> String {
    "finbert".into()
}
fn default_max_length() -> usize {
    128
}
fn default_batch() -> usize {
    32
}
fn default_limit() -> usize {
    2000
}

pub struct FinbertScorer;

struct Configured {
    p: FinbertParams,
}

#[async_trait]
impl Operator for FinbertScorer {
    fn kind(&self) -> &'static str {
        "sentiment.finbert"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "KR-FinBert-SC (ONNX) sentiment + embedding for unscored news, length-bucketed batches"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required(
                "model",
                "path",
                "folder from crates/models/export/finbert.py",
            ),
            ParamSpec::optional("name", "string", "finbert", "news_scores.model value"),
            ParamSpec::optional(
                "max_length",
                "usize",
                "128",
                "tokens per article (truncated)",
            ),
            ParamSpec::optional("batch_size", "usize", "32", "articles per ONNX run"),
            ParamSpec::optional(
                "limit",
                "usize",
                "2000",
                "most articles per run (newest first)",
            ),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional(
                "device",
                "cpu|cuda",
                "cpu",
                "execution provider (cuda falls back to cpu)",
            ),
            ParamSpec::optional("threads", "usize", "0 (cores)", "intra-op threads"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new("news", tables::news().schema, "articles"),
            InputPort::new("scores", tables::news_scores_required(), "existing scores").optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::news_scores(), "scores", WriteMode::Merge)
                .doc("per-article scores"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: FinbertParams = parse_params(params)?;
        if !(8..=512).contains(&p.max_length) {
            return Err(ConfigError::new("max_length", "must be within 8..=512"));
        }
        if p.batch_size == 0 {
            return Err(ConfigError::new("batch_size", "must be >= 1"));
        }
        if p.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        Ok(Box::new(Configured { p }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    fn ready(&self) -> OpResult<()> {
        model_folder(&self.p.model, "KR-FinBert-SC", "finbert.py")
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        self.ready()?;
        let p = self.p.clone();
        let dir = PathBuf::from(&p.model);
        let scores = if inputs.has("scores") {
            Some(inputs.concat("scores")?)
        } else {
            None
        };
        let done = scored_ids(scores.as_ref(), &p.name)?;
        let news = inputs.concat("news")?;
        let mut todo: Vec<(i32, String, String, String)> = Vec::new();
        if news.num_rows() > 0 {
            let (ids, codes, titles) = (
                str_col(&news, "id")?,
                str_col(&news, "code")?,
                str_col(&news, "title")?,
            );
            let bodies = str_col(&news, "body").ok();
            let dates = date_col(&news, "date")?;
            for i in 0..news.num_rows() {
                let (id, code) = (ids.value(i), codes.value(i));
                if done.contains(id) || (!p.codes.is_empty() && !p.codes.iter().any(|c| c == code))
                {
                    continue;
                }
                let mut text = titles.value(i).to_string();
                if let Some(b) = bodies
                    && !b.is_null(i)
                {
                    let first = b.value(i).split(['.', '\n']).next().unwrap_or("");
                    if !first.trim().is_empty() {
                        text.push(' ');
                        text.push_str(first.trim());
                    }
                }
                todo.push((dates.value(i), id.to_string(), code.to_string(), text));
            }
        }
        // Newest first, then by id: a deterministic choice of which articles wait.
        todo.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        if todo.len() > p.limit {
            ctx.counters
                .add("deferred.limit", (todo.len() - p.limit) as i64);
            todo.truncate(p.limit);
        }
        ctx.counters.add("already_scored", done.len() as i64);
        let started = std::time::Instant::now();
        let p2 = p.clone();
        let texts: Vec<String> = todo.iter().map(|t| t.3.clone()).collect();
        let scores = tokio::task::spawn_blocking(move || {
            let model =
                FinBert::load(&dir, p2.max_length, p2.device, p2.threads).map_err(model_error)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.score(&refs, p2.batch_size).map_err(model_error)
        })
        .await
        .map_err(|e| OpError::permanent(format!("inference thread: {e}")))??;
        ctx.inference(&p.name, started.elapsed());
        ctx.counters.add("scored", scores.len() as i64);

        let n = scores.len();
        let mut emb = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
            "item",
            DataType::Float32,
            true,
        )));
        for s in &scores {
            emb.values().append_slice(&s.embedding);
            emb.append(true);
        }
        let emb = emb.finish();
        debug_assert_eq!(emb.data_type(), tables::embedding_field().data_type());
        let batch = RecordBatch::try_new(
            tables::news_scores().schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    todo.iter().map(|t| t.1.as_str()),
                )) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    todo.iter().map(|t| t.2.as_str()),
                )),
                Arc::new(Date32Array::from_iter_values(todo.iter().map(|t| t.0))),
                Arc::new(StringArray::from(vec![p.name.as_str(); n])),
                Arc::new(StringArray::from_iter_values(
                    scores.iter().map(|s| LABELS[s.label]),
                )),
                Arc::new(Float64Array::from_iter_values(
                    scores.iter().map(|s| f64::from(s.score)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    scores.iter().map(|s| f64::from(s.p_neg)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    scores.iter().map(|s| f64::from(s.p_neu)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    scores.iter().map(|s| f64::from(s.p_pos)),
                )),
                Arc::new(emb),
            ],
        )?;
        Ok(OutputBatches::new().with("scores", vec![batch]))
    }
}
