//! `linear.predict`: forecasts for day D from the newest linear model per horizon trained
//! **through a date before D**, written to `linear_predictions`.
//!
//! No model yet is `skipped` (the ensemble combines the other members). A card whose bytes do
//! not match the registered hash is refused; one trained on another feature list is refused
//! when the DAG names its list and `skipped` (until the next retrain) when it uses the default
//! list, which a newer krxflow may have extended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::{LinearCard, model_name};
use crate::common::card::read_checked;
use crate::common::dates::days;
use crate::common::direction::FLAT_BAND;
use crate::lgbm::predict::{
    Forecast, Registered, predict_inputs, predict_params, predictions_batch, registry_rows,
    usable_models,
};
use crate::lgbm::{Closes, FeatureRows, default_features, feature_hash, validate_features};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// The current feature list (default: every documented feature); must equal the model's.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub codes: Vec<String>,
}

pub struct LinearPredict;

struct Configured {
    p: PredictParams,
}

#[async_trait]
impl Operator for LinearPredict {
    fn kind(&self) -> &'static str {
        "linear.predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "linear ranker forecasts for ds from the newest models trained through a date before ds"
    }
    fn params(&self) -> Vec<ParamSpec> {
        predict_params()
    }
    fn inputs(&self) -> Vec<InputPort> {
        predict_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(
                &tables::linear_predictions(),
                "predictions",
                WriteMode::Merge,
            )
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

/// Cards already read in this process, by (path, registered hash): a backfill reads each once.
static LOADED: LazyLock<Mutex<LoadedCards>> = LazyLock::new(Default::default);

type LoadedCards = HashMap<(String, String), Arc<LinearCard>>;

/// Entries kept at most; cleared when full.
const MAX_LOADED: usize = 1024;

/// Reads a registered card (or takes it from the cache), checking its bytes against the hash.
async fn load_card(ctx: &TaskContext, r: &Registered) -> OpResult<Arc<LinearCard>> {
    let key = (r.path.clone(), r.hash.clone());
    if let Some(c) = LOADED.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let path = format!("{}/model.json", r.path);
    let what = format!("{} {}", r.model, r.version);
    let bytes = read_checked(ctx, &path, &r.hash, &what).await?;
    let card: LinearCard =
        serde_json::from_slice(&bytes).map_err(|e| OpError::permanent(format!("{path}: {e}")))?;
    let n = card.features.len();
    if [
        card.fit.centre.len(),
        card.fit.scale.len(),
        card.fit.coef.len(),
    ] != [n; 3]
    {
        return Err(OpError::permanent(format!(
            "{path}: {n} features but coefficients of another length"
        )));
    }
    let card = Arc::new(card);
    if let Ok(mut m) = LOADED.lock() {
        if m.len() >= MAX_LOADED {
            m.clear();
        }
        m.insert(key, card.clone());
    }
    Ok(card)
}

#[async_trait]
impl ConfiguredOp for Configured {
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
        let p = &self.p;
        let ds = days(ctx.ds);
        let names = p.features.clone().unwrap_or_else(default_features);
        let want = feature_hash(&names);
        let registry = registry_rows(&inputs)?;
        let models = usable_models(&registry, "linear", "linear/pooled/", ds)?;
        let mut cards = Vec::new();
        for &h in &p.horizons {
            let Some(r) = models.get(&model_name(h)) else {
                continue;
            };
            let card = load_card(ctx, r).await?;
            if card.feature_hash != want {
                let why = format!(
                    "{} {} was trained on feature list {} ({} features) but the current list \
                     is {want}; retrain with linear.train (retrain_weekly) or set `features` to \
                     the model's list",
                    r.model,
                    r.version,
                    card.feature_hash,
                    card.features.len()
                );
                return Err(if p.features.is_some() {
                    OpError::permanent(why)
                } else {
                    OpError::skipped(why)
                });
            }
            ctx.record_artifact(format!("{}:{}", r.model, r.hash));
            cards.push(card);
        }
        if cards.is_empty() {
            return Err(OpError::skipped(format!(
                "no linear model trained through a date before {}: run linear.train \
                 (dags/retrain_linear.yaml, on Sundays)",
                ctx.ds
            )));
        }
        let codes: HashSet<&str> = p.codes.iter().map(String::as_str).collect();
        let features = inputs.concat("features")?;
        let rows = FeatureRows::from_batch(&features, &names, |code, date| {
            date == ds && (codes.is_empty() || codes.contains(code))
        })?;
        if rows.is_empty() {
            return Err(OpError::skipped(format!(
                "no non-warm-up feature rows dated {}: nothing to forecast",
                ctx.ds
            )));
        }
        let closes = Closes::from_bars(&inputs.concat("bars")?)?;
        let started = std::time::Instant::now();
        let mut out = Vec::with_capacity(rows.len() * cards.len());
        let mut no_close = 0i64;
        for i in 0..rows.len() {
            let Some(base_close) = closes.close(&rows.codes[i], rows.dates[i]) else {
                no_close += 1;
                continue;
            };
            for card in &cards {
                let (ret, q10, q90, probs) = card.fit.forecast(rows.row(i), FLAT_BAND);
                out.push(Forecast {
                    code: rows.codes[i].clone(),
                    horizon: card.horizon,
                    base_close,
                    ret,
                    q10,
                    q90,
                    probs,
                    version: card.version.clone(),
                });
            }
        }
        ctx.inference("linear", started.elapsed());
        out.sort_by(|a, b| a.code.cmp(&b.code).then(a.horizon.cmp(&b.horizon)));
        out.dedup_by(|a, b| a.code == b.code && a.horizon == b.horizon);
        ctx.counters.add("predictions", out.len() as i64);
        ctx.counters.add(
            "skipped.no_model",
            (p.horizons.len() - cards.len()) as i64 * rows.len() as i64,
        );
        ctx.counters.add("skipped.no_close", no_close);
        let batch = predictions_batch(&out, ctx, tables::linear_predictions().schema)?;
        Ok(OutputBatches::new().with("predictions", vec![batch]))
    }
}
