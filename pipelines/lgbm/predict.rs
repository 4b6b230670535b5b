//! `lgbm.predict`: forecasts for day D from the newest model pair per (code, horizon) that was
//! **trained through a date before D** (point-in-time), written to `lgbm_predictions`.
//!
//! A model whose feature-list hash differs from the DAG's `features` is refused with an error
//! naming both (a configuration error); one trained before the default list changed (a
//! feature added to krxflow since) is `skipped` with the same detail until the next retrain,
//! so an upgrade does not stop the daily predictions. An artifact whose bytes do not match its
//! registered hash is refused. No registered model at all is `skipped`, so the ensemble falls
//! back to the other forecasters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use krxflow_models::lgbm::Gbm;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::target::Target;
use super::{
    Closes, FeatureRows, ModelCard, POOLED_CODE, Scope, default_features, feature_hash, model_name,
    validate_features,
};
use crate::cols::{date_col, str_col, ts_col};
use crate::common::dates::days;
use crate::common::horizons::target_date;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {
    #[serde(default = "default_scope")]
    pub scope: Scope,
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// The current feature list (default: every documented feature); must equal the model's.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub codes: Vec<String>,
}

fn default_scope() -> Scope {
    Scope::PerTicker
}

pub struct LgbmPredict;

struct Configured {
    p: PredictParams,
}

#[async_trait]
impl Operator for LgbmPredict {
    fn kind(&self) -> &'static str {
        "lgbm.predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "LightGBM forecasts for ds from the newest models trained through a date before ds"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut p = vec![ParamSpec::optional(
            "scope",
            "per_ticker|pooled",
            "per_ticker",
            "which models",
        )];
        p.extend(predict_params());
        p
    }
    fn inputs(&self) -> Vec<InputPort> {
        predict_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::lgbm_predictions(), "predictions", WriteMode::Merge)
                .doc("one row per code, base date and horizon"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: PredictParams = parse_params(params)?;
        crate::common::horizons::check(&p.horizons)?;
        if let Some(f) = &p.features {
            validate_features(f).map_err(|m| ConfigError::new("features", m))?;
        }
        Ok(Box::new(Configured { p }))
    }
}

/// The params every model's daily forecast takes (`lgbm.predict`, `linear.predict`).
pub(crate) fn predict_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::optional("horizons", "list<u32>", "[1, 3, 5]", "horizons to forecast"),
        ParamSpec::optional(
            "features",
            "list<string>",
            "all of FEATURES",
            "current feature list (must equal the model's)",
        ),
        ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
    ]
}

/// The inputs of a model's daily forecast (`lgbm.predict`, `linear.predict`): the day's
/// features and closes, and the registry of trained models.
pub(crate) fn predict_inputs() -> Vec<InputPort> {
    vec![
        InputPort::new(
            "features",
            tables::features_daily().schema,
            "the feature table",
        ),
        InputPort::new("bars", tables::ohlcv_daily().schema, "base closes"),
        InputPort::new(
            "registry",
            tables::model_registry().schema,
            "registered models",
        )
        .optional(),
    ]
}

/// The rows of [`predict_inputs`]' optional `registry` port: none when the table does not
/// exist yet (no model was ever trained), which [`usable_models`] answers with no model.
pub(crate) fn registry_rows(inputs: &InputBatches) -> OpResult<RecordBatch> {
    if inputs.has("registry") {
        inputs.concat("registry")
    } else {
        Ok(RecordBatch::new_empty(tables::model_registry().schema))
    }
}

/// A registry row of an lgbm model pair.
#[derive(Debug, Clone)]
pub struct Registered {
    pub model: String,
    pub version: String,
    pub path: String,
    pub hash: String,
    pub through: i32,
    pub at: i64,
}

/// Per model name of `kind` (the registry's `kind` column: `lgbm`, `linear`) starting with
/// `prefix`, the newest model trained through a date strictly before `ds_days`.
pub fn usable_models(
    registry: &RecordBatch,
    kind: &str,
    prefix: &str,
    ds_days: i32,
) -> OpResult<BTreeMap<String, Registered>> {
    let mut out: BTreeMap<String, Registered> = BTreeMap::new();
    if registry.num_rows() == 0 {
        return Ok(out);
    }
    let s = |n: &str| str_col(registry, n);
    let (models, kinds, versions, paths, hashes) = (
        s("model")?,
        s("kind")?,
        s("version")?,
        s("path")?,
        s("content_hash")?,
    );
    let through = date_col(registry, "trained_through")?;
    let at = ts_col(registry, "trained_at")?;
    for i in 0..registry.num_rows() {
        if kinds.value(i) != kind
            || !models.value(i).starts_with(prefix)
            || through.is_null(i)
            || through.value(i) >= ds_days
        {
            continue;
        }
        let r = Registered {
            model: models.value(i).to_string(),
            version: versions.value(i).to_string(),
            path: paths.value(i).to_string(),
            hash: hashes.value(i).to_string(),
            through: through.value(i),
            at: if at.is_null(i) { 0 } else { at.value(i) },
        };
        let newer = out
            .get(&r.model)
            .is_none_or(|o| (r.through, r.at) > (o.through, o.at));
        if newer {
            out.insert(r.model.clone(), r);
        }
    }
    Ok(out)
}

/// A model pair read from the store and checked against its registry row.
/// A registered pair, verified and parsed.
struct LoadedPair {
    card: ModelCard,
    regression: Gbm,
    direction: Gbm,
}

/// Pairs already loaded in this process, by (artifact path, registered hash): a backfill or
/// `serve` reads, verifies and parses each registered pair once. The key is the registered
/// content hash, so a re-registered model is a new entry.
static LOADED: LazyLock<Mutex<LoadedPairs>> = LazyLock::new(Default::default);

type LoadedPairs = HashMap<(String, String), Arc<LoadedPair>>;

/// Entries kept at most (a few hundred pairs per universe); cleared when full.
const MAX_LOADED: usize = 4096;

/// The feature list models must have been trained on, and whether the DAG named it (`false`:
/// the default list, which a newer krxflow may have extended since a model was trained).
struct WantFeatures {
    hash: String,
    explicit: bool,
}

async fn load_pair(
    ctx: &TaskContext,
    r: &Registered,
    want: &WantFeatures,
) -> OpResult<(Arc<LoadedPair>, bool)> {
    let key = (r.path.clone(), r.hash.clone());
    let cached = LOADED.lock().ok().and_then(|m| m.get(&key).cloned());
    let (pair, hit) = match cached {
        Some(p) => (p, true),
        None => {
            let p = Arc::new(read_pair(ctx, r).await?);
            if let Ok(mut m) = LOADED.lock() {
                if m.len() >= MAX_LOADED {
                    m.clear();
                }
                m.insert(key, p.clone());
            }
            (p, false)
        }
    };
    let card = &pair.card;
    if card.feature_hash != want.hash {
        let why = format!(
            "{} {} was trained on feature list {} ({} features: {}) but the current list is {}; \
             retrain with lgbm.train (retrain_weekly) or set `features` to the model's list",
            r.model,
            r.version,
            card.feature_hash,
            card.features.len(),
            card.features.join(","),
            want.hash
        );
        return Err(if want.explicit {
            OpError::permanent(why)
        } else {
            OpError::skipped(why)
        });
    }
    if card.target == Target::Rank && card.return_map.is_none() {
        return Err(OpError::permanent(format!(
            "{} {} learned ranks (target: rank) but its metrics.json has no return_map to turn \
             its scores into returns; retrain it with lgbm.train",
            r.model, r.version
        )));
    }
    Ok((pair, hit))
}

/// Reads a pair's artifacts, checks them against the registered hash and parses them.
async fn read_pair(ctx: &TaskContext, r: &Registered) -> OpResult<LoadedPair> {
    let store = ctx
        .store
        .clone()
        .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
    let get = |name: &'static str| {
        let store = store.clone();
        let path = format!("{}/{name}", r.path);
        async move {
            store.get(&path).await?.ok_or_else(|| {
                OpError::permanent(format!(
                    "model_registry names `{path}` but the artifact is missing"
                ))
            })
        }
    };
    let (reg, dir, card) = (
        get("regression.txt").await?,
        get("direction.txt").await?,
        get("metrics.json").await?,
    );
    let mut h = Sha256::new();
    h.update(&reg);
    h.update(&dir);
    let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if hash != r.hash {
        return Err(OpError::permanent(format!(
            "artifacts of {} {} do not match their registered hash (corrupt or replaced)",
            r.model, r.version
        )));
    }
    let card: ModelCard = serde_json::from_slice(&card)
        .map_err(|e| OpError::permanent(format!("{}/metrics.json: {e}", r.path)))?;
    let model = r.model.clone();
    tokio::task::spawn_blocking(move || -> OpResult<LoadedPair> {
        let parse = |b: Vec<u8>, what: &str| {
            let text = String::from_utf8(b)
                .map_err(|_| OpError::permanent(format!("{model} {what} model is not UTF-8")))?;
            Gbm::from_text(&text).map_err(|e| OpError::permanent(e.to_string()))
        };
        Ok(LoadedPair {
            card,
            regression: parse(reg, "regression")?,
            direction: parse(dir, "direction")?,
        })
    })
    .await
    .map_err(|e| OpError::permanent(format!("model loading thread: {e}")))?
}

/// One forecast row.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub code: String,
    pub horizon: u32,
    pub base_close: f64,
    pub ret: f64,
    pub q10: f64,
    pub q90: f64,
    pub probs: [f64; 3],
    pub version: String,
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// Without the LightGBM library the task is `skipped`, saying how to install it.
    fn ready(&self) -> OpResult<()> {
        krxflow_models::lightgbm::runtime().map_err(|e| OpError::skipped(e.to_string()))
    }

    /// Only ds's feature rows and closes are used: read ds's partition, not all history.
    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        _calendar: &dyn krxflow_core::Calendar,
    ) -> Option<NaiveDate> {
        matches!(port, "features" | "bars").then_some(ds)
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        self.ready()?;
        let p = &self.p;
        let ds = days(ctx.ds);
        let names = p.features.clone().unwrap_or_else(default_features);
        let want = WantFeatures {
            hash: feature_hash(&names),
            explicit: p.features.is_some(),
        };
        let registry = registry_rows(&inputs)?;
        let prefix = format!("lgbm/{}/", p.scope.as_str());
        let models = usable_models(&registry, "lgbm", &prefix, ds)?;
        if models.is_empty() {
            return Err(OpError::skipped(format!(
                "no {} LightGBM model trained through a date before {}: run lgbm.train \
                 (dags/lgbm_train.yaml)",
                p.scope.as_str(),
                ctx.ds
            )));
        }
        let features = inputs.concat("features")?;
        let bars = inputs.concat("bars")?;
        let codes: std::collections::HashSet<&String> = p.codes.iter().collect();
        let rows = FeatureRows::from_batch(&features, &names, |code, date| {
            date == ds && (codes.is_empty() || codes.contains(&code.to_string()))
        })?;
        if rows.is_empty() {
            return Err(OpError::skipped(format!(
                "no non-warm-up feature rows dated {}: nothing to forecast",
                ctx.ds
            )));
        }
        let closes = Closes::from_bars(&bars)?;

        // Which pair serves each (row, horizon); load each pair once.
        let mut wanted: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
        let mut no_model = 0i64;
        for i in 0..rows.len() {
            for &h in &p.horizons {
                let code = match p.scope {
                    Scope::PerTicker => rows.codes[i].as_str(),
                    Scope::Pooled => POOLED_CODE,
                };
                let name = model_name(p.scope, code, h);
                if models.contains_key(&name) {
                    wanted.entry(name).or_default().push((i, h));
                } else {
                    no_model += 1;
                }
            }
        }
        let mut pairs = Vec::with_capacity(wanted.len());
        let mut cache_hits = 0;
        for (name, targets) in wanted {
            let r = &models[&name];
            let (pair, hit) = load_pair(ctx, r, &want).await?;
            cache_hits += i64::from(hit);
            ctx.record_artifact(format!("{name}:{}", r.hash));
            pairs.push((pair, targets));
        }
        ctx.counters.add("model_cache_hits", cache_hits);
        ctx.check_cancelled()?;
        let rows = Arc::new(rows);
        let rows2 = rows.clone();
        let started = std::time::Instant::now();
        let forecasts = tokio::task::spawn_blocking(move || -> OpResult<Vec<(usize, Forecast)>> {
            let mut out = Vec::new();
            for (pair, targets) in pairs {
                let (reg, dir) = (&pair.regression, &pair.direction);
                let mut x = Vec::with_capacity(targets.len() * rows2.n_features);
                for (i, _) in &targets {
                    x.extend_from_slice(rows2.row(*i));
                }
                let r = reg
                    .predict(&x)
                    .map_err(|e| OpError::permanent(e.to_string()))?;
                let d = dir
                    .predict(&x)
                    .map_err(|e| OpError::permanent(e.to_string()))?;
                let (lo, hi) = (
                    pair.card.regression.residual_q10.unwrap_or(0.0),
                    pair.card.regression.residual_q90.unwrap_or(0.0),
                );
                let map = pair.card.return_map;
                for (k, (i, h)) in targets.iter().enumerate() {
                    // A `target: rank` model scores; its card's line makes the score a return.
                    let ret = map.map_or(r[k], |m| m.apply(r[k]));
                    out.push((
                        *i,
                        Forecast {
                            code: rows2.codes[*i].clone(),
                            horizon: *h,
                            base_close: f64::NAN,
                            // A `target: excess` model's return is relative to the day's
                            // median move, which is taken as zero: its point forecast has no
                            // market drift, its ranking across codes is what it offers.
                            ret,
                            q10: ret + lo,
                            q90: ret + hi,
                            probs: [d[3 * k], d[3 * k + 1], d[3 * k + 2]],
                            version: pair.card.version.clone(),
                        },
                    ));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| OpError::permanent(format!("prediction thread: {e}")))??;
        ctx.inference(&format!("lgbm_{}", p.scope.as_str()), started.elapsed());

        let mut by_key: HashMap<(String, u32), Forecast> = HashMap::new();
        let mut no_close = 0i64;
        for (i, mut f) in forecasts {
            match closes.close(&rows.codes[i], rows.dates[i]) {
                Some(c) => {
                    f.base_close = c;
                    by_key.insert((f.code.clone(), f.horizon), f);
                }
                None => no_close += 1,
            }
        }
        let mut out: Vec<Forecast> = by_key.into_values().collect();
        out.sort_by(|a, b| a.code.cmp(&b.code).then(a.horizon.cmp(&b.horizon)));
        ctx.counters.add("predictions", out.len() as i64);
        ctx.counters.add("skipped.no_model", no_model);
        ctx.counters.add("skipped.no_close", no_close);
        let batch = predictions_batch(&out, ctx, tables::lgbm_predictions().schema)?;
        Ok(OutputBatches::new().with("predictions", vec![batch]))
    }
}

/// `rows` in a table of return forecasts (`lgbm_predictions`, `linear_predictions`).
pub(crate) fn predictions_batch(
    rows: &[Forecast],
    ctx: &TaskContext,
    schema: arrow::datatypes::SchemaRef,
) -> OpResult<RecordBatch> {
    let n = rows.len();
    let f = |g: &dyn Fn(&Forecast) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(rows.iter().map(g).collect::<Vec<_>>()))
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            )) as ArrayRef,
            Arc::new(Date32Array::from(vec![days(ctx.ds); n])),
            Arc::new(Int32Array::from(
                rows.iter().map(|r| r.horizon as i32).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                rows.iter()
                    .map(|r| days(target_date(ctx.calendar.as_ref(), ctx.ds, r.horizon)))
                    .collect::<Vec<_>>(),
            )),
            f(&|r| r.base_close),
            f(&|r| r.ret),
            f(&|r| r.base_close * (1.0 + r.ret)),
            f(&|r| r.base_close * (1.0 + r.q10)),
            f(&|r| r.base_close * (1.0 + r.q90)),
            f(&|r| r.probs[2]),
            f(&|r| r.probs[1]),
            f(&|r| r.probs[0]),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.version.as_str()).collect::<Vec<_>>(),
            )),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;

    fn registry(rows: &[(&str, &str, i32, i64)]) -> RecordBatch {
        let n = rows.len();
        RecordBatch::try_new(
            tables::model_registry().schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )) as ArrayRef,
                Arc::new(StringArray::from(vec!["lgbm"; n])),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(vec!["p"; n])),
                Arc::new(StringArray::from(vec!["h"; n])),
                Arc::new(Date32Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMillisecondArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["{}"; n])),
            ],
        )
        .expect("registry")
    }

    #[test]
    fn only_models_trained_through_a_date_before_ds_are_usable() {
        let r = registry(&[
            ("lgbm/per_ticker/A/h1", "v1", 100, 1),
            ("lgbm/per_ticker/A/h1", "v2", 105, 2),
            ("lgbm/per_ticker/A/h1", "v3", 110, 3), // trained through ds: not usable on ds
            ("lgbm/pooled/_all/h1", "p1", 90, 1),
        ]);
        let m = usable_models(&r, "lgbm", "lgbm/per_ticker/", 110).expect("models");
        assert_eq!(m.len(), 1);
        assert_eq!(m["lgbm/per_ticker/A/h1"].version, "v2");
        let m = usable_models(&r, "lgbm", "lgbm/per_ticker/", 111).expect("models");
        assert_eq!(m["lgbm/per_ticker/A/h1"].version, "v3");
        let m = usable_models(&r, "lgbm", "lgbm/per_ticker/", 100).expect("models");
        assert!(m.is_empty());
        let m = usable_models(&r, "lgbm", "lgbm/pooled/", 111).expect("models");
        assert_eq!(m["lgbm/pooled/_all/h1"].version, "p1");
    }
}
