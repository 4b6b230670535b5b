//! `sentiment.lexical`: scores the `news` rows that have no score from this model yet with the
//! newest registered model trained on or before ds, into `news_scores` (same schema as the
//! FinBERT scorer; score = P(pos) − P(neg), label = argmax). A re-run scores nothing twice.
//! No model registered = `skipped: <why>`, so downstream falls back to unscored counts.
//!
//! Incremental by default: once `news_scores` holds scores, a run reads only the articles (and
//! scores) dated from `overlap_days` trading days before its newest scored date, instead of
//! every article ever ingested; late articles within that window are still scored. Articles
//! older than that without a score (a model registered long after they arrived, beside
//! another model's scores) are scored by a full refresh (`--reprocess all`).
//!
//! The model is trained by `sentiment.train_lexical` (`lexical_train.rs`, re-exported here at
//! its old paths).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::lexical::{CLASSES, LexicalModel};
use serde::Deserialize;

use super::lexical_train::default_model;
pub use super::lexical_train::{Labelled, TrainLexical, read_labelled};
use crate::cols::{date_col, scored_ids, str_col, ts_col};
use crate::tables;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreParams {
    #[serde(default = "default_model")]
    model: String,
    /// Most articles scored per run (0 = all).
    #[serde(default)]
    limit: usize,
    /// Only these codes (empty = all).
    #[serde(default)]
    codes: Vec<String>,
    /// Read only from `overlap_days` trading days before the newest scored date.
    #[serde(default = "default_true")]
    incremental: bool,
    #[serde(default = "default_overlap")]
    overlap_days: u32,
}

fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    10
}

pub struct LexicalScorer;

struct ConfiguredScorer {
    p: ScoreParams,
}

#[async_trait]
impl Operator for LexicalScorer {
    fn kind(&self) -> &'static str {
        "sentiment.lexical"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "score unscored news with the newest registered lexical model (trained on or before ds)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional("model", "string", "lexical", "registered model name"),
            ParamSpec::optional("limit", "usize", "0", "most articles per run (0 = all)"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "read only the articles from overlap_days before the newest scored date (all on the first run)",
            ),
            ParamSpec::optional(
                "overlap_days",
                "u32",
                "10",
                "trading days read before the newest scored date",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new(
                "news",
                tables::news().schema,
                "articles (none yet: nothing to score)",
            )
            .optional(),
            InputPort::new(
                "registry",
                tables::model_registry().schema,
                "registered models",
            )
            .optional(),
            InputPort::new("scores", tables::news_scores_required(), "existing scores").optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::news_scores(), "scores", WriteMode::Merge)
                .doc("per-article scores")
                .with_watermark(),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(ConfiguredScorer {
            p: parse_params(params)?,
        }))
    }
}

/// The newest registry row for `model`: (path, content hash, version).
fn newest(registry: &RecordBatch, model: &str) -> OpResult<Option<(String, String, String)>> {
    if registry.num_rows() == 0 {
        return Ok(None);
    }
    let names = str_col(registry, "model")?;
    let paths = str_col(registry, "path")?;
    let hashes = str_col(registry, "content_hash")?;
    let versions = str_col(registry, "version")?;
    let at = ts_col(registry, "trained_at")?;
    let mut best: Option<(i64, usize)> = None;
    for i in 0..registry.num_rows() {
        if names.value(i) != model || at.is_null(i) {
            continue;
        }
        if best.is_none_or(|(t, _)| at.value(i) > t) {
            best = Some((at.value(i), i));
        }
    }
    Ok(best.map(|(_, i)| {
        (
            paths.value(i).to_string(),
            hashes.value(i).to_string(),
            versions.value(i).to_string(),
        )
    }))
}

#[async_trait]
impl ConfiguredOp for ConfiguredScorer {
    fn read_from(
        &self,
        port: &str,
        _ds: NaiveDate,
        watermarks: &BTreeMap<String, NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        if !self.p.incremental || !matches!(port, "news" | "scores") {
            return None;
        }
        let newest = watermarks.get("scores").copied()?;
        Some(cal.add_trading_days(newest, -i64::from(self.p.overlap_days)))
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = &self.p;
        let registry = if inputs.has("registry") {
            inputs.concat("registry")?
        } else {
            RecordBatch::new_empty(tables::model_registry().schema)
        };
        let Some((path, hash, version)) = newest(&registry, &p.model)? else {
            return Err(OpError::skipped(format!(
                "no `{}` model registered on or before {}: train one with \
                 sentiment.train_lexical (dags/sentiment_lexical.yaml)",
                p.model, ctx.ds
            )));
        };
        let store = ctx
            .store
            .clone()
            .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
        let bytes = store.get(&path).await?.ok_or_else(|| {
            OpError::permanent(format!(
                "model_registry names `{path}` but the artifact is missing"
            ))
        })?;
        let model =
            LexicalModel::from_json(&bytes).map_err(|e| OpError::permanent(e.to_string()))?;
        if model.content_hash() != hash {
            return Err(OpError::permanent(format!(
                "artifact `{path}` does not match its registered hash (corrupt or replaced)"
            )));
        }
        ctx.record_artifact(format!("{}:{hash}", p.model));
        ctx.counters.add(&format!("model_version.{version}"), 1);

        let scores = if inputs.has("scores") {
            Some(inputs.concat("scores")?)
        } else {
            None
        };
        let done = scored_ids(scores.as_ref(), &p.model)?;
        let news = if inputs.has("news") {
            inputs.concat("news")?
        } else {
            RecordBatch::new_empty(tables::news().schema)
        };
        let ids = str_col(&news, "id")?;
        let codes = str_col(&news, "code")?;
        let titles = str_col(&news, "title")?;
        let bodies = str_col(&news, "body").ok();
        let dates = date_col(&news, "date")?;
        let wanted: HashSet<&str> = p.codes.iter().map(String::as_str).collect();
        let (mut id, mut code, mut date, mut label) = (vec![], vec![], vec![], vec![]);
        let (mut score, mut pn, mut pu, mut pp) = (vec![], vec![], vec![], vec![]);
        for i in 0..news.num_rows() {
            if done.contains(ids.value(i))
                || (!wanted.is_empty() && !wanted.contains(codes.value(i)))
            {
                continue;
            }
            if p.limit > 0 && id.len() >= p.limit {
                ctx.counters.add("deferred.limit", 1);
                continue;
            }
            if i % 4096 == 0 {
                ctx.check_cancelled()?;
            }
            // Headline, plus the body's first sentence when there is one.
            let mut text = titles.value(i).to_string();
            if let Some(b) = bodies
                && !b.is_null(i)
            {
                let first = b.value(i).split(['.', '\n']).next().unwrap_or("");
                text.push(' ');
                text.push_str(first);
            }
            let pr = model.predict_proba(&text);
            let best = (0..3).max_by(|a, b| pr[*a].total_cmp(&pr[*b])).unwrap_or(1);
            id.push(ids.value(i).to_string());
            code.push(codes.value(i).to_string());
            date.push(dates.value(i));
            label.push(CLASSES[best]);
            score.push(pr[2] - pr[0]);
            pn.push(pr[0]);
            pu.push(pr[1]);
            pp.push(pr[2]);
        }
        ctx.counters.add("scored", id.len() as i64);
        ctx.counters.add("already_scored", done.len() as i64);
        let n = id.len();
        let batch = RecordBatch::try_new(
            tables::news_scores().schema,
            vec![
                Arc::new(StringArray::from(id)) as ArrayRef,
                Arc::new(StringArray::from(code)),
                Arc::new(Date32Array::from(date)),
                Arc::new(StringArray::from(vec![p.model.clone(); n])),
                Arc::new(StringArray::from(label)),
                Arc::new(Float64Array::from(score)),
                Arc::new(Float64Array::from(pn)),
                Arc::new(Float64Array::from(pu)),
                Arc::new(Float64Array::from(pp)),
                arrow::array::new_null_array(crate::tables::embedding_field().data_type(), n),
            ],
        )?;
        Ok(OutputBatches::new().with("scores", vec![batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::d;
    use krxflow_core::WeekdayCalendar;

    fn configured(params: serde_json::Value) -> Box<dyn ConfiguredOp> {
        LexicalScorer.configure(&params).unwrap()
    }

    #[test]
    fn once_scores_exist_only_the_overlap_window_is_read() {
        let cal = WeekdayCalendar::default();
        let marks = BTreeMap::from([("scores".to_string(), d("2024-06-14"))]);
        let op = configured(serde_json::json!({}));
        // 10 trading days before Friday 2024-06-14.
        assert_eq!(
            op.read_from("news", d("2024-06-17"), &marks, &cal),
            Some(d("2024-05-31"))
        );
        assert_eq!(
            op.read_from("scores", d("2024-06-17"), &marks, &cal),
            Some(d("2024-05-31"))
        );
        assert_eq!(
            op.read_from("registry", d("2024-06-17"), &marks, &cal),
            None
        );
        // The first run (no scores yet) and a full refresh read every article.
        assert_eq!(
            op.read_from("news", d("2024-06-17"), &BTreeMap::new(), &cal),
            None
        );
        let full = configured(serde_json::json!({"incremental": false}));
        assert_eq!(full.read_from("news", d("2024-06-17"), &marks, &cal), None);
    }
}
