//! `lstm.train`: one pooled network for every horizon on the newest `train_days` labelled
//! dates through the run's date (labels `close[t+h] / close[t] − 1` over each code's own bars,
//! as ranks among the date's codes), registered in `model_registry` with its card in the
//! artifact store.
//!
//! The newest `valid_days` of those dates are held out, after a gap of the longest horizon
//! (their labels' days would otherwise overlap the training labels'), and the epoch with the
//! lowest loss on them is kept (early stopping). Each horizon's return line and residuals are
//! then taken on the newest `map_days` labelled dates, as the linear ranker's are.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;
use serde_json::Value;

use super::sequences::Sequences;
use super::{Head, LstmCard, default_inputs, model_name};
use crate::common::card::sha256_hex;
use crate::common::dates::{date_of, days};
use crate::lgbm::target::{ReturnMap, centred_rank};
use crate::lgbm::train::{labels_for, train_inputs, training_batches};
use crate::lgbm::train_rows::RegistryRows;
use crate::lgbm::{Closes, FeatureRows, feature_hash, validate_features};
use crate::linear::model::{FitRows, residual_quantiles, robust_scale};
use crate::tables;
use krxflow_models::lstm::{Adam, Lstm, SplitMix, Tape};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    /// The daily inputs (default: [`super::DEFAULT_INPUTS`]).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// The newest labelled dates learned from (validation included).
    #[serde(default = "default_train_days")]
    pub train_days: usize,
    #[serde(default = "default_valid_days")]
    pub valid_days: usize,
    #[serde(default = "default_map_days")]
    pub map_days: usize,
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub codes: Vec<String>,
}

fn default_seq_len() -> usize {
    20
}
fn default_hidden() -> usize {
    12
}
fn default_epochs() -> usize {
    8
}
fn default_batch() -> usize {
    64
}
fn default_learning_rate() -> f64 {
    0.003
}
fn default_train_days() -> usize {
    300
}
fn default_valid_days() -> usize {
    40
}
fn default_map_days() -> usize {
    150
}
fn default_min_rows() -> usize {
    200
}
fn default_seed() -> u64 {
    42
}

impl TrainParams {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::common::horizons::check(&self.horizons)?;
        if let Some(f) = &self.features {
            validate_features(f).map_err(|m| ConfigError::new("features", m))?;
        }
        let at_least = |v: usize, min: usize, field: &str| {
            if v < min {
                Err(ConfigError::new(field, format!("must be at least {min}")))
            } else {
                Ok(())
            }
        };
        at_least(self.seq_len, 1, "seq_len")?;
        at_least(self.hidden, 1, "hidden")?;
        at_least(self.epochs, 1, "epochs")?;
        at_least(self.batch, 1, "batch")?;
        at_least(self.valid_days, 5, "valid_days")?;
        at_least(self.map_days, 5, "map_days")?;
        at_least(self.min_rows, 10, "min_rows")?;
        if self.train_days < self.valid_days + 20 {
            return Err(ConfigError::new(
                "train_days",
                "must leave at least 20 dates besides valid_days",
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ConfigError::new("learning_rate", "must be > 0"));
        }
        Ok(())
    }
}

pub struct LstmTrain;

struct Configured {
    p: TrainParams,
}

#[async_trait]
impl Operator for LstmTrain {
    fn kind(&self) -> &'static str {
        "lstm.train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "a pooled LSTM over each code's recent days, one output per horizon, through the run's date"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional("horizons", "list<u32>", "[1, 3, 5]", "horizons to fit"),
            ParamSpec::optional("features", "list<string>", "DEFAULT_INPUTS", "daily inputs"),
            ParamSpec::optional("seq_len", "usize", "20", "days in a sequence"),
            ParamSpec::optional("hidden", "usize", "12", "LSTM units"),
            ParamSpec::optional("epochs", "usize", "8", "most passes over the rows"),
            ParamSpec::optional("batch", "usize", "64", "rows per Adam step"),
            ParamSpec::optional("learning_rate", "f64", "0.003", "Adam's step"),
            ParamSpec::optional("train_days", "usize", "300", "newest labelled dates used"),
            ParamSpec::optional("valid_days", "usize", "40", "newest of them held out"),
            ParamSpec::optional("map_days", "usize", "150", "dates of the return lines"),
            ParamSpec::optional("min_rows", "usize", "200", "fewest training rows"),
            ParamSpec::optional("seed", "u64", "42", "initialisation and shuffling"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        train_inputs()
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::model_registry(), "registry", WriteMode::Merge)
                .doc("one row per trained network"),
        ]
    }
    fn configure(&self, params: &Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: TrainParams = parse_params(params)?;
        p.validate()?;
        Ok(Box::new(Configured { p }))
    }
}

/// A fitted network before it is stored.
pub(crate) struct Fitted {
    pub centre: Vec<f64>,
    pub scale: Vec<f64>,
    pub net: Lstm,
    pub heads: Vec<Head>,
    pub train_from: i32,
    pub train_rows: usize,
    pub epochs: usize,
    pub valid_loss: f64,
    pub map_from: i32,
}

/// Mean half squared error of `net` over the labelled outputs of positions `ks`.
fn loss_on(
    net: &Lstm,
    seqs: &Sequences,
    targets: &[Vec<Option<f64>>],
    ks: &[usize],
    t: usize,
) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    let mut w = Vec::new();
    for &k in ks {
        seqs.window(k, t, &mut w);
        let y = net.forward(&w, None);
        for (yk, tk) in y.iter().zip(&targets[k]) {
            if let Some(tk) = tk {
                sum += 0.5 * (yk - tk).powi(2);
                n += 1;
            }
        }
    }
    if n == 0 {
        f64::INFINITY
    } else {
        sum / n as f64
    }
}

/// Fits the network on `rows` with raw labels `raw` per horizon: `Err(reason)` when there is
/// too little to learn from.
pub(crate) fn fit(
    p: &TrainParams,
    rows: &FeatureRows,
    raw: &BTreeMap<u32, Vec<Option<f64>>>,
) -> Result<Fitted, &'static str> {
    let horizons: Vec<u32> = raw.keys().copied().collect();
    let ranks: Vec<Vec<Option<f64>>> = raw.values().map(|r| centred_rank(&rows.dates, r)).collect();
    let labelled = |i: usize| ranks.iter().any(|r| r[i].is_some());
    // The newest `train_days` labelled dates, the last `valid_days` of them held out after a
    // gap of the longest horizon.
    let mut dates: Vec<i32> = (0..rows.len())
        .filter(|&i| labelled(i))
        .map(|i| rows.dates[i])
        .collect();
    dates.sort_unstable();
    dates.dedup();
    let dates = &dates[dates.len().saturating_sub(p.train_days)..];
    let gap = horizons.iter().copied().max().unwrap_or(1) as usize;
    if dates.len() < p.valid_days + gap + 20 {
        return Err("too_few_dates");
    }
    let (train_from, valid_from) = (dates[0], dates[dates.len() - p.valid_days]);
    let train_to = dates[dates.len() - p.valid_days - gap - 1];
    // Standardised on the window's rows.
    let in_window: Vec<usize> = (0..rows.len())
        .filter(|&i| rows.dates[i] >= train_from)
        .collect();
    let (centre, scale) = robust_scale(&FitRows {
        x: &rows.x,
        n_features: rows.n_features,
        rows: &in_window,
        label: &[],
        weight: &[],
    });
    let seqs = Sequences::new(rows, &centre, &scale);
    let targets: Vec<Vec<Option<f64>>> = seqs
        .order
        .iter()
        .map(|&i| ranks.iter().map(|r| r[i]).collect())
        .collect();
    let date_at = |k: usize| rows.dates[seqs.order[k]];
    let pick = |lo: i32, hi: i32| -> Vec<usize> {
        (0..seqs.len())
            .filter(|&k| labelled(seqs.order[k]) && (lo..=hi).contains(&date_at(k)))
            .collect()
    };
    let mut train = pick(train_from, train_to);
    let valid = pick(valid_from, i32::MAX);
    if train.len() < p.min_rows {
        return Err("too_few_rows");
    }
    let mut rng = SplitMix::new(p.seed);
    let mut net = Lstm::new(rows.n_features, p.hidden, horizons.len(), &mut rng);
    let mut adam = Adam::new(net.len(), p.learning_rate, 1.0);
    let (mut best, mut best_loss, mut epochs) = (
        net.clone(),
        loss_on(&net, &seqs, &targets, &valid, p.seq_len),
        0,
    );
    let (mut tape, mut w, mut grad) = (Tape::default(), Vec::new(), vec![0.0; net.len()]);
    let mut since_best = 0;
    for epoch in 1..=p.epochs {
        rng.shuffle(&mut train);
        for chunk in train.chunks(p.batch) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let share = 1.0 / chunk.len() as f64;
            for &k in chunk {
                seqs.window(k, p.seq_len, &mut w);
                let y = net.forward(&w, Some(&mut tape));
                let dy: Vec<f64> = y
                    .iter()
                    .zip(&targets[k])
                    .map(|(y, t)| t.map_or(0.0, |t| (y - t) * share))
                    .collect();
                net.backward(&w, &tape, &dy, &mut grad);
            }
            adam.step(&mut net.params, &grad);
        }
        let loss = loss_on(&net, &seqs, &targets, &valid, p.seq_len);
        if loss < best_loss {
            (best, best_loss, epochs, since_best) = (net.clone(), loss, epoch, 0);
        } else {
            since_best += 1;
            if since_best >= 2 {
                break;
            }
        }
    }
    // Each horizon's line and residuals on the newest `map_days` labelled dates.
    let map_from = dates[dates.len().saturating_sub(p.map_days)];
    let recent = pick(map_from, i32::MAX);
    let outputs: Vec<Vec<f64>> = recent
        .iter()
        .map(|&k| {
            seqs.window(k, p.seq_len, &mut w);
            best.forward(&w, None)
        })
        .collect();
    let mut heads = Vec::with_capacity(horizons.len());
    for (j, (&h, r)) in raw.iter().enumerate() {
        let (mut d, mut s, mut ret) = (Vec::new(), Vec::new(), Vec::new());
        for (&k, y) in recent.iter().zip(&outputs) {
            if let Some(v) = r[seqs.order[k]] {
                d.push(date_at(k));
                s.push(y[j]);
                ret.push(v);
            }
        }
        let return_map = ReturnMap::fit(&d, &s, &ret).ok_or("no_return_line")?;
        let mut residuals: Vec<f64> = s
            .iter()
            .zip(&ret)
            .map(|(s, r)| r - return_map.apply(*s))
            .filter(|e| e.is_finite())
            .collect();
        heads.push(Head {
            horizon: h,
            return_map,
            residuals: residual_quantiles(&mut residuals),
        });
    }
    Ok(Fitted {
        centre,
        scale,
        net: best,
        heads,
        train_from,
        train_rows: train.len(),
        epochs,
        valid_loss: best_loss,
        map_from,
    })
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// Only the newest `train_days` labelled dates are learned from, each with the `seq_len`
    /// rows before it: read that far back (in calendar days, with room for weekends and
    /// holidays, since the Sunday DAG runs on the daily calendar), not the whole history.
    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        _calendar: &dyn krxflow_core::Calendar,
    ) -> Option<NaiveDate> {
        matches!(port, "features" | "bars").then(|| {
            let trading = (self.p.train_days + self.p.seq_len + 10) as i64;
            ds - chrono::Duration::days(trading * 3 / 2 + 30)
        })
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = self.p.clone();
        let store = ctx
            .store
            .clone()
            .ok_or_else(|| OpError::permanent("no artifact store in this context"))?;
        let (features, bars) = training_batches(&inputs, ctx.ds)?;
        let names = p.features.clone().unwrap_or_else(default_inputs);
        let (names2, p2) = (names.clone(), p.clone());
        let (fitted, n_rows) = tokio::task::spawn_blocking(move || -> OpResult<_> {
            let closes = Closes::from_bars(&bars)?;
            let rows = FeatureRows::from_batch(&features, &names2, |code, _| {
                p2.codes.is_empty() || p2.codes.iter().any(|c| c == code)
            })?;
            let labels = labels_for(&rows, &closes, &p2.horizons);
            Ok((fit(&p2, &rows, &labels), rows.len()))
        })
        .await
        .map_err(|e| OpError::permanent(format!("training thread: {e}")))??;
        ctx.check_cancelled()?;
        ctx.counters.add("feature_rows", n_rows as i64);
        let f = fitted.map_err(|why| {
            OpError::skipped(format!(
                "too little to learn from through {} ({why}: the network needs {} training rows \
                 on {} labelled dates or more)",
                ctx.ds,
                p.min_rows,
                p.valid_days + 25
            ))
        })?;
        ctx.counters.add("train_rows", f.train_rows as i64);
        ctx.counters.add("epochs", f.epochs as i64);
        let name = model_name();
        let net_json =
            serde_json::to_vec(&f.net).map_err(|e| OpError::permanent(format!("model: {e}")))?;
        let version = format!(
            "{}-{}",
            ctx.ds.format("%Y%m%d"),
            &sha256_hex(&net_json)[..10]
        );
        let dir = format!("models/{name}/{version}");
        let card = LstmCard {
            model: name.clone(),
            version: version.clone(),
            trained_through: ctx.ds,
            feature_hash: feature_hash(&names),
            features: names,
            seq_len: p.seq_len,
            centre: f.centre,
            scale: f.scale,
            net: f.net,
            heads: f.heads,
            train_from: date_of(f.train_from),
            train_rows: f.train_rows,
            epochs: f.epochs,
            valid_loss: f.valid_loss,
            map_from: date_of(f.map_from),
        };
        let bytes = serde_json::to_vec_pretty(&card)
            .map_err(|e| OpError::permanent(format!("model card: {e}")))?;
        let hash = sha256_hex(&bytes);
        store.put(&format!("{dir}/model.json"), bytes).await?;
        ctx.record_artifact(format!("{name}:{hash}"));
        let summary = serde_json::json!({
            "train_rows": card.train_rows,
            "train_from": card.train_from,
            "feature_hash": card.feature_hash,
            "epochs": card.epochs,
            "valid_loss": card.valid_loss,
            "rank_slopes": card.heads.iter().map(|h| h.return_map.slope).collect::<Vec<_>>(),
        });
        let mut reg = RegistryRows::default();
        reg.push(
            &name,
            &version,
            &dir,
            &hash,
            days(ctx.ds),
            Utc::now().timestamp_millis(),
            summary.to_string(),
        );
        ctx.counters.add("models", 1);
        Ok(OutputBatches::new().with("registry", vec![reg.batch("lstm")?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Result<TrainParams, ConfigError> {
        let p: TrainParams = parse_params(&v)?;
        p.validate().map(|_| p)
    }

    #[test]
    fn bad_params_name_the_field() {
        assert!(params(serde_json::json!({})).is_ok());
        for (v, field) in [
            (serde_json::json!({"hidden": 0}), "hidden"),
            (serde_json::json!({"seq_len": 0}), "seq_len"),
            (serde_json::json!({"learning_rate": 0.0}), "learning_rate"),
            (serde_json::json!({"train_days": 50}), "train_days"),
            (serde_json::json!({"horizons": []}), "horizons"),
            (serde_json::json!({"features": ["close"]}), "features"),
        ] {
            let e = params(v).expect_err(field);
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    /// Eight codes whose next-day return follows their own return of three days before (a
    /// lag no single day's inputs show): the network must learn to rank by it, on dates it
    /// held out, and refuse too little data.
    pub(crate) fn lagged_panel(n_dates: usize) -> (FeatureRows, BTreeMap<u32, Vec<Option<f64>>>) {
        let codes = ["A", "B", "C", "D", "E", "F", "G", "H"];
        let mut rng = SplitMix::new(3);
        let mut rows = FeatureRows {
            codes: Vec::new(),
            dates: Vec::new(),
            x: Vec::new(),
            n_features: 2,
        };
        let mut shock = vec![vec![0.0; n_dates]; codes.len()];
        for s in shock.iter_mut() {
            s.iter_mut().for_each(|v| *v = rng.unit() * 2.0 - 1.0);
        }
        let mut raw = Vec::new();
        for d in 0..n_dates {
            for (c, code) in codes.iter().enumerate() {
                rows.codes.push(code.to_string());
                rows.dates.push(d as i32);
                // Input 0 is the day's shock; input 1 is noise.
                rows.x.extend([shock[c][d], rng.unit()]);
                // The return of day d+1 is the shock of day d−2.
                let label = (d + 1 < n_dates && d >= 2)
                    .then(|| 0.02 * shock[c][d - 2] + 0.004 * (rng.unit() - 0.5));
                raw.push(label);
            }
        }
        (rows, BTreeMap::from([(1, raw)]))
    }

    #[test]
    fn it_learns_a_lagged_rule_and_ranks_held_out_days_by_it() {
        let (rows, raw) = lagged_panel(260);
        let p = params(serde_json::json!({
            "features": ["ret_1d", "rsi14"], "horizons": [1], "seq_len": 6, "hidden": 6,
            "epochs": 30, "learning_rate": 0.01, "train_days": 250, "valid_days": 40
        }))
        .expect("params");
        let f = fit(&p, &rows, &raw).expect("fit");
        // Guessing 0 scores half the labels' variance, about 0.041.
        assert!(f.valid_loss < 0.02, "validation loss {}", f.valid_loss);
        assert!(f.heads[0].return_map.slope > 0.0);
        assert_eq!(f.heads[0].residuals.len(), 99);
        let few =
            params(serde_json::json!({ "features": ["ret_1d", "rsi14"], "min_rows": 100_000 }))
                .expect("params");
        assert_eq!(fit(&few, &rows, &raw).err(), Some("too_few_rows"));
    }

    #[test]
    fn the_same_rows_give_the_same_network() {
        let (rows, raw) = lagged_panel(120);
        let p = params(serde_json::json!({
            "features": ["ret_1d", "rsi14"], "horizons": [1], "seq_len": 4, "hidden": 3,
            "epochs": 2, "train_days": 100, "valid_days": 20
        }))
        .expect("params");
        let a = fit(&p, &rows, &raw).expect("fit");
        let b = fit(&p, &rows, &raw).expect("fit");
        assert_eq!(a.net, b.net);
        assert_eq!(a.heads, b.heads);
    }
}
