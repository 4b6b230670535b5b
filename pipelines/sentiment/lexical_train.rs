//! `sentiment.train_lexical`: trains the lexical model (`krxflow_models::lexical`) from a
//! labelled CSV with a column mapping (plus, optionally, more labelled CSVs under `also:`),
//! evaluates it on a fixed, seeded holdout of every file (accuracy, macro-F1, confusion matrix), stores it as an artifact under the lake root
//! (`models/<model>/<version>/model.json` + `metrics.json`) and registers it in
//! `model_registry`. Unusable CSV rows go to `training_rejects` with a reason.
//!
//! The model it registers is scored by `sentiment.lexical` (`lexical.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use async_trait::async_trait;
use chrono::Utc;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::lexical::{
    CLASSES, Evaluation, Example, LexicalConfig, LexicalModel, class_index, in_holdout,
};
use serde::Deserialize;

use crate::common::dates::days;
use crate::ingest::synthetic;
use crate::tables;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainParams {
    /// A labelled CSV ...
    #[serde(default)]
    path: Option<String>,
    /// ... or this many labelled SYNTHETIC headlines (`ingest::synthetic::labelled_headlines`).
    #[serde(default)]
    synthetic_headlines: Option<u32>,
    #[serde(default = "default_model")]
    model: String,
    #[serde(default = "default_text")]
    text_column: String,
    #[serde(default = "default_label")]
    label_column: String,
    /// Raw label → neg|neu|pos. Words (negative/neutral/positive) map themselves.
    #[serde(default = "default_labels")]
    labels: BTreeMap<String, String>,
    /// More labelled CSVs to train on; each keeps its own seeded holdout, evaluated apart.
    #[serde(default)]
    also: Vec<ExtraSource>,
    #[serde(default = "default_holdout")]
    holdout: f64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_dims")]
    dims: u32,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default = "default_iters")]
    max_iterations: u64,
}

/// One more labelled CSV (`also:`): its path and column mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraSource {
    path: String,
    #[serde(default = "default_text")]
    text_column: String,
    #[serde(default = "default_label")]
    label_column: String,
    /// Raw label → neg|neu|pos; the words negative/neutral/positive map themselves.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

pub(super) fn default_model() -> String {
    "lexical".into()
}
fn default_text() -> String {
    "kor_sentence".into()
}
fn default_label() -> String {
    "labels".into()
}
fn default_labels() -> BTreeMap<String, String> {
    // news_headlines_labeled: 0 neutral, 1 positive, 2 negative.
    [("0", "neu"), ("1", "pos"), ("2", "neg")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
fn default_holdout() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}
fn default_dims() -> u32 {
    LexicalConfig::default().dims
}
fn default_alpha() -> f64 {
    LexicalConfig::default().alpha
}
fn default_iters() -> u64 {
    LexicalConfig::default().max_iterations
}

pub struct TrainLexical;

struct ConfiguredTrain {
    p: TrainParams,
}

/// A labelled training file, split into examples and rejects (line, reason, raw).
pub struct Labelled {
    pub examples: Vec<(usize, Example)>,
    pub rejects: Vec<(usize, &'static str, String)>,
}

/// Reads a labelled CSV. Row numbers are 1-based data rows (the header is row 0).
pub fn read_labelled(
    text: &str,
    text_column: &str,
    label_column: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Labelled, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = r.headers().map_err(|e| format!("header: {e}"))?.clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                format!(
                    "no column `{name}` (columns: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })
    };
    let (ti, li) = (find(text_column)?, find(label_column)?);
    let mut out = Labelled {
        examples: Vec::new(),
        rejects: Vec::new(),
    };
    for (n, rec) in r.records().enumerate() {
        let line = n + 1;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                out.rejects.push((line, "unparsable", e.to_string()));
                continue;
            }
        };
        let raw = rec.iter().collect::<Vec<_>>().join(",");
        let text = rec.get(ti).unwrap_or("").trim();
        let label = rec.get(li).unwrap_or("").trim();
        if text.is_empty() {
            out.rejects.push((line, "empty_text", raw));
            continue;
        }
        let class = labels
            .get(label)
            .and_then(|c| class_index(c))
            .or_else(|| class_index(label));
        match class {
            Some(c) => out.examples.push((line, (text.to_string(), c))),
            None => out.rejects.push((line, "unknown_label", raw)),
        }
    }
    Ok(out)
}

/// Reads one labelled CSV file; an unreadable file or a missing column is an error naming it.
fn read_file(
    path: &str,
    text_column: &str,
    label_column: &str,
    labels: &BTreeMap<String, String>,
) -> OpResult<(String, Labelled)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| OpError::permanent(format!("{path}: {e}")))?;
    let data = read_labelled(&text, text_column, label_column, labels)
        .map_err(|e| OpError::permanent(format!("{path}: {e}")))?;
    Ok((path.to_string(), data))
}

/// The labelled sets and where they came from (paths, or the synthetic corpus); the first is
/// the primary one, whose holdout is the model's headline metric.
fn labelled_sources(p: &TrainParams) -> OpResult<Vec<(String, Labelled)>> {
    let mut out = Vec::new();
    if let Some(n) = p.synthetic_headlines {
        let examples = synthetic::labelled_headlines(p.seed, n)
            .into_iter()
            .enumerate()
            .filter_map(|(k, (text, label))| Some((k + 1, (text, class_index(label)?))))
            .collect();
        let source = format!("synthetic:{n} headlines (seed {})", p.seed);
        out.push((
            source,
            Labelled {
                examples,
                rejects: Vec::new(),
            },
        ));
    } else {
        let path = p.path.clone().unwrap_or_default();
        out.push(read_file(
            &path,
            &p.text_column,
            &p.label_column,
            &p.labels,
        )?);
    }
    for x in &p.also {
        out.push(read_file(
            &x.path,
            &x.text_column,
            &x.label_column,
            &x.labels,
        )?);
    }
    Ok(out)
}

/// Every set split by the same seeded holdout: the training rows of all of them, and each
/// set's holdout rows apart (never trained on).
fn split(
    sources: &[(String, Labelled)],
    seed: u64,
    holdout: f64,
) -> (Vec<Example>, Vec<Vec<Example>>) {
    let mut train = Vec::new();
    let mut tests = Vec::new();
    for (_, data) in sources {
        let mut test = Vec::new();
        for (line, ex) in &data.examples {
            if in_holdout(*line, seed, holdout) {
                test.push(ex.clone());
            } else {
                train.push(ex.clone());
            }
        }
        tests.push(test);
    }
    (train, tests)
}

#[async_trait]
impl Operator for TrainLexical {
    fn kind(&self) -> &'static str {
        "sentiment.train_lexical"
    }
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "train the embedded lexical sentiment model (multinomial logistic regression over \
         hashed Korean n-grams) from labelled CSVs; holdout metrics; artifact + registry row"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "path",
                "string",
                "none",
                "labelled CSV file (this or synthetic_headlines)",
            ),
            ParamSpec::optional(
                "synthetic_headlines",
                "u32",
                "none",
                "train on this many labelled SYNTHETIC headlines (the synthetic universe's wording, other company names) instead of a CSV",
            ),
            ParamSpec::optional("model", "string", "lexical", "model name in the registry"),
            ParamSpec::optional("text_column", "string", "kor_sentence", "text column"),
            ParamSpec::optional("label_column", "string", "labels", "label column"),
            ParamSpec::optional(
                "labels",
                "map<string,string>",
                "{0: neu, 1: pos, 2: neg}",
                "raw label -> neg|neu|pos (negative/neutral/positive words map themselves)",
            ),
            ParamSpec::optional(
                "also",
                "list<{path, text_column, label_column, labels}>",
                "[]",
                "more labelled CSVs to train on (each with its own holdout, evaluated apart)",
            ),
            ParamSpec::optional("holdout", "f64", "0.2", "fraction held out for evaluation"),
            ParamSpec::optional("seed", "u64", "42", "seed of the fixed holdout split"),
            ParamSpec::optional("dims", "u32", "32768", "hash buckets"),
            ParamSpec::optional("alpha", "f64", "0.03", "L2 penalty on the weights"),
            ParamSpec::optional("max_iterations", "u64", "200", "L-BFGS iterations"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::model_registry(), "registry", WriteMode::Merge)
                .doc("the trained model's registry row"),
            OutputPort::for_table(&tables::training_rejects(), "rejects", WriteMode::Merge)
                .doc("labelled rows that could not be used"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: TrainParams = parse_params(params)?;
        match (&p.path, p.synthetic_headlines) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "synthetic_headlines",
                    "give `path` or `synthetic_headlines`, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "path",
                    "missing: give a labelled CSV `path` (or `synthetic_headlines: N`)",
                ));
            }
            (None, Some(n)) if !(10..=1_000_000).contains(&n) => {
                return Err(ConfigError::new(
                    "synthetic_headlines",
                    "must be within 10..=1000000",
                ));
            }
            _ => {}
        }
        if !(0.05..=0.5).contains(&p.holdout) {
            return Err(ConfigError::new("holdout", "must be within 0.05..=0.5"));
        }
        if !(16..=1 << 20).contains(&p.dims) {
            return Err(ConfigError::new("dims", "must be within 16..=1048576"));
        }
        if p.alpha.is_nan() || p.alpha < 0.0 {
            return Err(ConfigError::new("alpha", "must be >= 0"));
        }
        let also_labels = p.also.iter().enumerate().flat_map(|(i, x)| {
            x.labels
                .iter()
                .map(move |l| (format!("also[{i}].labels"), l))
        });
        let labels = p.labels.iter().map(|l| ("labels".to_string(), l));
        for (field, (raw, c)) in labels.chain(also_labels) {
            if class_index(c).is_none() {
                return Err(ConfigError::new(
                    field,
                    format!("`{raw}: {c}`: the class must be neg, neu or pos"),
                ));
            }
        }
        if p.model.is_empty()
            || !p
                .model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new("model", "must be [A-Za-z0-9_]+"));
        }
        Ok(Box::new(ConfiguredTrain { p }))
    }
}

#[async_trait]
impl ConfiguredOp for ConfiguredTrain {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = &self.p;
        let store = ctx
            .store
            .clone()
            .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
        let sources = labelled_sources(p)?;
        let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, data) in &sources {
            ctx.counters.add(
                "rows_read",
                (data.examples.len() + data.rejects.len()) as i64,
            );
            for (_, reason, _) in &data.rejects {
                *by_reason.entry(reason).or_default() += 1;
            }
        }
        for (reason, n) in by_reason {
            ctx.rejected("rejects", reason, n);
        }
        let (train, tests) = split(&sources, p.seed, p.holdout);
        ctx.counters.add("train_rows", train.len() as i64);
        ctx.counters.add(
            "holdout_rows",
            tests.iter().map(Vec::len).sum::<usize>() as i64,
        );
        let cfg = LexicalConfig {
            dims: p.dims,
            alpha: p.alpha,
            max_iterations: p.max_iterations,
        };
        let (model, evals) = tokio::task::spawn_blocking(move || {
            LexicalModel::train(&train, cfg).map(|m| {
                let e: Vec<Evaluation> = tests.iter().map(|t| Evaluation::of(&m, t)).collect();
                (m, e)
            })
        })
        .await
        .map_err(|e| OpError::permanent(format!("training thread: {e}")))?
        .map_err(|e| OpError::permanent(e.to_string()))?;
        ctx.check_cancelled()?;
        for ((source, _), e) in sources.iter().zip(&evals) {
            tracing::info!("{} holdout ({source}):\n{}", p.model, e.report());
        }
        // The first set's holdout is the headline metric; `Evaluation::of` of an empty holdout
        // is all zeros, never a panic.
        let eval = &evals[0];
        ctx.counters.add(
            "holdout_accuracy_bp",
            (eval.accuracy * 10_000.0).round() as i64,
        );
        ctx.counters.add(
            "holdout_macro_f1_bp",
            (eval.macro_f1 * 10_000.0).round() as i64,
        );

        let hash = model.content_hash();
        let version = hash[..12].to_string();
        let dir = format!("models/{}/{version}", p.model);
        let source = sources[0].0.clone();
        let by_source: Vec<serde_json::Value> = sources
            .iter()
            .zip(&evals)
            .map(|((s, _), e)| serde_json::json!({"source": s, "holdout": e}))
            .collect();
        let metrics = serde_json::json!({
            "holdout": eval,
            "holdout_by_source": by_source,
            "train_rows": model.trained_rows,
            "source": source,
            "config": model.config,
            "classes": CLASSES,
            "seed": p.seed,
            "holdout_fraction": p.holdout,
        });
        store
            .put(&format!("{dir}/model.json"), model.to_json())
            .await?;
        store
            .put(
                &format!("{dir}/metrics.json"),
                serde_json::to_vec_pretty(&metrics).unwrap_or_default(),
            )
            .await?;
        ctx.record_artifact(format!("{}:{hash}", p.model));

        let now_ms = Utc::now().timestamp_millis();
        let registry = RecordBatch::try_new(
            tables::model_registry().schema,
            vec![
                Arc::new(StringArray::from(vec![p.model.clone()])) as ArrayRef,
                Arc::new(StringArray::from(vec!["lexical"])),
                Arc::new(StringArray::from(vec![version])),
                Arc::new(StringArray::from(vec![format!("{dir}/model.json")])),
                Arc::new(StringArray::from(vec![hash])),
                Arc::new(Date32Array::from(vec![days(ctx.ds)])),
                Arc::new(TimestampMillisecondArray::from(vec![now_ms]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![metrics.to_string()])),
            ],
        )?;
        let rejects: Vec<(&str, &(usize, &'static str, String))> = sources
            .iter()
            .flat_map(|(s, d)| d.rejects.iter().map(move |r| (s.as_str(), r)))
            .collect();
        let n = rejects.len();
        let rejects = RecordBatch::try_new(
            tables::training_rejects().schema,
            vec![
                Arc::new(StringArray::from(vec![p.model.clone(); n])) as ArrayRef,
                Arc::new(Int64Array::from(
                    rejects.iter().map(|(_, r)| r.0 as i64).collect::<Vec<_>>(),
                )),
                Arc::new(Date32Array::from(vec![days(ctx.ds); n])),
                Arc::new(StringArray::from(
                    rejects.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rejects.iter().map(|(_, r)| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rejects.iter().map(|(_, r)| r.2.clone()).collect::<Vec<_>>(),
                )),
            ],
        )?;
        Ok(OutputBatches::new()
            .with("registry", vec![registry])
            .with("rejects", vec![rejects]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_csv_rows_map_labels_and_quarantine_the_rest() {
        let csv = "kor_sentence,labels\n\
                   주가 급등,1\n\
                   실적 쇼크,2\n\
                   공시,0\n\
                   ,1\n\
                   이상한 라벨,7\n\
                   영문 라벨,negative\n";
        let d = read_labelled(csv, "kor_sentence", "labels", &default_labels()).unwrap();
        let classes: Vec<usize> = d.examples.iter().map(|(_, (_, c))| *c).collect();
        assert_eq!(classes, [2, 0, 1, 0]);
        let reasons: Vec<(usize, &str)> = d.rejects.iter().map(|(l, r, _)| (*l, *r)).collect();
        assert_eq!(reasons, [(4, "empty_text"), (5, "unknown_label")]);
        assert!(d.rejects[1].2.contains("이상한 라벨"), "raw row kept");
    }

    #[test]
    fn a_missing_column_is_an_error_listing_the_columns() {
        let e = read_labelled("a,b\nx,1\n", "kor_sentence", "labels", &default_labels())
            .err()
            .unwrap();
        assert!(e.contains("kor_sentence") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn one_source_is_required_and_two_are_refused() {
        let e = TrainLexical
            .configure(&serde_json::json!({}))
            .err()
            .unwrap();
        assert_eq!(e.field, "path");
        let e = TrainLexical
            .configure(&serde_json::json!({"path": "x.csv", "synthetic_headlines": 100}))
            .err()
            .unwrap();
        assert_eq!(e.field, "synthetic_headlines");
        assert!(
            TrainLexical
                .configure(&serde_json::json!({"synthetic_headlines": 100}))
                .is_ok()
        );
    }

    #[test]
    fn the_synthetic_corpus_trains_a_model_that_reads_the_synthetic_news() {
        let p: TrainParams =
            parse_params(&serde_json::json!({"synthetic_headlines": 1500})).unwrap();
        let mut sources = labelled_sources(&p).unwrap();
        assert_eq!(sources.len(), 1);
        let (source, data) = sources.remove(0);
        assert!(source.starts_with("synthetic:1500"), "{source}");
        assert_eq!(data.examples.len(), 1500);
        let train: Vec<Example> = data.examples.into_iter().map(|(_, e)| e).collect();
        let model = LexicalModel::train(&train, LexicalConfig::default()).unwrap();
        // The universe's own headlines (other names) are read right.
        let cal = krxflow_core::WeekdayCalendar::default();
        let days = krxflow_core::Calendar::trading_days(
            &cal,
            chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2024, 6, 28).unwrap(),
        );
        let news: Vec<synthetic::SynthNews> = (0..5)
            .flat_map(|i| {
                let t = synthetic::ticker(42, i);
                synthetic::generate(42, &t, i, &days, 1.0, synthetic::SENTIMENT_DRIFT).1
            })
            .collect();
        let examples: Vec<Example> = news
            .iter()
            .map(|n| (n.title.clone(), (n.sentiment + 1) as usize))
            .collect();
        assert!(examples.len() > 200);
        let eval = Evaluation::of(&model, &examples);
        assert!(eval.accuracy > 0.95, "{}", eval.report());
    }

    #[test]
    fn every_set_keeps_its_own_holdout_out_of_training() {
        let set = |texts: &[&str]| Labelled {
            examples: texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i + 1, (t.to_string(), i % 3)))
                .collect(),
            rejects: Vec::new(),
        };
        let a: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        let b: Vec<String> = (0..60).map(|i| format!("b{i}")).collect();
        let sources = vec![
            (
                "a".to_string(),
                set(&a.iter().map(String::as_str).collect::<Vec<_>>()),
            ),
            (
                "b".to_string(),
                set(&b.iter().map(String::as_str).collect::<Vec<_>>()),
            ),
        ];
        let (train, tests) = split(&sources, 42, 0.2);
        assert_eq!(tests.len(), 2);
        assert!(tests.iter().all(|t| !t.is_empty()));
        assert_eq!(train.len() + tests[0].len() + tests[1].len(), 100);
        assert!(tests[0].iter().all(|(t, _)| t.starts_with('a')));
        assert!(tests[1].iter().all(|(t, _)| t.starts_with('b')));
        for (held, _) in tests.iter().flatten() {
            assert!(!train.iter().any(|(t, _)| t == held), "{held} trained on");
        }
        // The same fixed split as a set on its own: row i of `b` is held out iff in_holdout(i).
        let alone: Vec<&str> = (1..=60)
            .filter(|i| in_holdout(*i, 42, 0.2))
            .map(|i| b[i - 1].as_str())
            .collect();
        assert_eq!(
            tests[1].iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            alone
        );
    }

    #[test]
    fn a_bad_label_in_an_extra_set_names_its_position() {
        let e = TrainLexical
            .configure(&serde_json::json!({
                "path": "x.csv",
                "also": [{"path": "y.csv"}, {"path": "z.csv", "labels": {"1": "up"}}]
            }))
            .err()
            .unwrap();
        assert_eq!(e.field, "also[1].labels", "{e:?}");
        assert!(
            TrainLexical
                .configure(&serde_json::json!({"path": "x.csv", "also": [{"path": "y.csv"}]}))
                .is_ok()
        );
        // An unknown key inside an extra set is refused, not ignored.
        assert!(
            TrainLexical
                .configure(&serde_json::json!({"path": "x.csv", "also": [{"file": "y.csv"}]}))
                .is_err()
        );
    }

    #[test]
    fn bad_params_name_the_field() {
        let e = TrainLexical
            .configure(&serde_json::json!({"path": "x.csv", "holdout": 0.9}))
            .err()
            .unwrap();
        assert_eq!(e.field, "holdout");
        let e = TrainLexical
            .configure(&serde_json::json!({"path": "x.csv", "labels": {"1": "up"}}))
            .err()
            .unwrap();
        assert_eq!(e.field, "labels");
    }
}
