//! `lstm.predict`: forecasts for day D from the newest network trained **through a date before
//! D**, each code's sequence being its last `seq_len` feature rows up to D, written to
//! `lstm_predictions`.
//!
//! No model yet is `skipped` (the ensemble combines the other members). A card whose bytes do
//! not match the registered hash, or whose parts disagree in size, is refused; one trained on
//! other inputs is refused when the DAG names its list and `skipped` (until the next retrain)
//! when it uses the default list.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::sequences::Sequences;
use super::{LstmCard, default_inputs, model_name};
use crate::common::card::read_checked;
use crate::common::dates::days;
use crate::common::direction::FLAT_BAND;
use crate::lgbm::predict::{
    Forecast, Registered, predict_inputs, predictions_batch, registry_rows, usable_models,
};
use crate::lgbm::{Closes, FeatureRows, feature_hash, validate_features};
use crate::linear::model::forecast_from;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// The current input list (default: [`super::DEFAULT_INPUTS`]); must equal the model's.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Trading days of feature rows read before D: at least the model's `seq_len`.
    #[serde(default = "default_history_days")]
    pub history_days: usize,
    #[serde(default)]
    pub codes: Vec<String>,
}

fn default_history_days() -> usize {
    40
}

pub struct LstmPredict;

struct Configured {
    p: PredictParams,
}

#[async_trait]
impl Operator for LstmPredict {
    fn kind(&self) -> &'static str {
        "lstm.predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "LSTM forecasts for ds from the newest network trained through a date before ds"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional("horizons", "list<u32>", "[1, 3, 5]", "horizons to forecast"),
            ParamSpec::optional(
                "features",
                "list<string>",
                "DEFAULT_INPUTS",
                "current inputs (must equal the model's)",
            ),
            ParamSpec::optional("history_days", "usize", "40", "trading days of rows read"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        predict_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::lstm_predictions(), "predictions", WriteMode::Merge)
                .doc("one row per code, base date and horizon"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: PredictParams = parse_params(params)?;
        crate::common::horizons::check(&p.horizons)?;
        if let Some(f) = &p.features {
            validate_features(f).map_err(|m| ConfigError::new("features", m))?;
        }
        if p.history_days == 0 {
            return Err(ConfigError::new("history_days", "must be at least 1"));
        }
        Ok(Box::new(Configured { p }))
    }
}

/// Reads a registered card, checking its bytes against the hash and its parts' sizes.
async fn load_card(ctx: &TaskContext, r: &Registered) -> OpResult<LstmCard> {
    let file = format!("{}/model.json", r.path);
    let bytes = read_checked(ctx, &file, &r.hash, &format!("{} {}", r.model, r.version)).await?;
    let card: LstmCard =
        serde_json::from_slice(&bytes).map_err(|e| OpError::permanent(format!("{file}: {e}")))?;
    if !card.is_consistent() {
        return Err(OpError::permanent(format!(
            "{file}: the network, its inputs and its heads disagree in size"
        )));
    }
    Ok(card)
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// The features of the last `history_days` trading days (the sequences), ds's closes.
    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        calendar: &dyn krxflow_core::Calendar,
    ) -> Option<NaiveDate> {
        match port {
            "features" => Some(calendar.add_trading_days(ds, -(self.p.history_days as i64))),
            "bars" => Some(ds),
            _ => None,
        }
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = &self.p;
        let ds = days(ctx.ds);
        let names = p.features.clone().unwrap_or_else(default_inputs);
        let registry = registry_rows(&inputs)?;
        let models = usable_models(&registry, "lstm", "lstm/pooled/", ds)?;
        let Some(r) = models.get(&model_name()) else {
            return Err(OpError::skipped(format!(
                "no LSTM trained through a date before {}: run lstm.train \
                 (dags/retrain_lstm.yaml with KRXFLOW_LSTM=on, on Sundays)",
                ctx.ds
            )));
        };
        let card = load_card(ctx, r).await?;
        if card.feature_hash != feature_hash(&names) {
            let why = format!(
                "{} {} was trained on inputs {:?} but the current list is {names:?}; retrain \
                 with lstm.train or set `features` to the model's list",
                r.model, r.version, card.features
            );
            return Err(if p.features.is_some() {
                OpError::permanent(why)
            } else {
                OpError::skipped(why)
            });
        }
        if card.seq_len > p.history_days {
            return Err(OpError::permanent(format!(
                "{} {} reads {} days but `history_days` is {}: raise history_days",
                r.model, r.version, card.seq_len, p.history_days
            )));
        }
        ctx.record_artifact(format!("{}:{}", r.model, r.hash));
        let codes: HashSet<&str> = p.codes.iter().map(String::as_str).collect();
        let features = inputs.concat("features")?;
        let rows = FeatureRows::from_batch(&features, &card.features, |code, date| {
            date <= ds && (codes.is_empty() || codes.contains(code))
        })?;
        let seqs = Sequences::new(&rows, &card.centre, &card.scale);
        let closes = Closes::from_bars(&inputs.concat("bars")?)?;
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let (mut no_close, mut w) = (0i64, Vec::new());
        for k in 0..seqs.len() {
            let i = seqs.order[k];
            if rows.dates[i] != ds {
                continue;
            }
            let Some(base_close) = closes.close(&rows.codes[i], ds) else {
                no_close += 1;
                continue;
            };
            seqs.window(k, card.seq_len, &mut w);
            let y = card.net.forward(&w, None);
            for (head, score) in card.heads.iter().zip(y) {
                if !p.horizons.contains(&head.horizon) {
                    continue;
                }
                let (ret, q10, q90, probs) =
                    forecast_from(head.return_map.apply(score), &head.residuals, FLAT_BAND);
                out.push(Forecast {
                    code: rows.codes[i].clone(),
                    horizon: head.horizon,
                    base_close,
                    ret,
                    q10,
                    q90,
                    probs,
                    version: card.version.clone(),
                });
            }
        }
        ctx.inference("lstm", started.elapsed());
        if out.is_empty() && no_close == 0 {
            return Err(OpError::skipped(format!(
                "no non-warm-up feature rows dated {}: nothing to forecast",
                ctx.ds
            )));
        }
        out.sort_by(|a, b| a.code.cmp(&b.code).then(a.horizon.cmp(&b.horizon)));
        ctx.counters.add("predictions", out.len() as i64);
        ctx.counters.add("skipped.no_close", no_close);
        // Horizons asked for that the network has no output for (trained on fewer).
        let missing = p
            .horizons
            .iter()
            .filter(|h| !card.heads.iter().any(|head| head.horizon == **h))
            .count();
        ctx.counters.add("skipped.no_head", missing as i64);
        let batch = predictions_batch(&out, ctx, tables::lstm_predictions().schema)?;
        Ok(OutputBatches::new().with("predictions", vec![batch]))
    }
}
