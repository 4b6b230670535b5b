//! `weights.update`: each member's weight per (code, horizon) learned from its matured
//! outcomes, into `ensemble_weights` (one set per update day), and every model's trailing
//! record per horizon into `model_performance`.
//!
//! Per (code, horizon), over each member's last `window` matured outcomes (n of them):
//! * skill by `method`: `hit_rate` (the direction hit rate), `inverse_mae` (1 / mean absolute
//!   percentage error) or `pinball` (1 / mean pinball loss at q10, q50, q90);
//! * empirical weight w_emp = skill / Σ skill; prior = the member's prior renormalised over
//!   the members present; w = (n·w_emp + k·prior) / (n + k) (shrinkage toward the prior,
//!   `shrinkage` = k);
//! * clipped to [`min_weight`, `max_weight`] and renormalised to sum to 1 (a lone member
//!   weighs 1).
//!
//! The previous weight (the latest set before D) is stored with each row. Outcomes are read as
//! of D (dated by their target day), so a backfilled day learns only from what was known then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::cols::{date_col, f64_col, rows, str_col, typed};
use crate::common::dates::days;
use crate::ensemble::combine::default_priors;
use crate::ensemble::weights::{self as book, WeightBook};
use crate::tables;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    HitRate,
    InverseMae,
    Pinball,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HitRate => "hit_rate",
            Self::InverseMae => "inverse_mae",
            Self::Pinball => "pinball",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    #[serde(default = "default_priors")]
    pub priors: BTreeMap<String, f64>,
    #[serde(default)]
    pub method: Method,
    #[serde(default = "default_window")]
    pub window: usize,
    #[serde(default = "default_k")]
    pub shrinkage: f64,
    #[serde(default = "default_min")]
    pub min_weight: f64,
    #[serde(default = "default_max")]
    pub max_weight: f64,
    /// Trading days of `model_performance`.
    #[serde(default = "default_perf_days")]
    pub performance_days: u32,
}

fn default_window() -> usize {
    60
}
fn default_k() -> f64 {
    20.0
}
fn default_min() -> f64 {
    0.05
}
fn default_max() -> f64 {
    0.95
}
fn default_perf_days() -> u32 {
    30
}

/// One member's record for one (code, horizon).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub model: String,
    pub n: usize,
    pub hit_rate: f64,
    pub mape: f64,
    pub pinball: f64,
}

/// A member's new weight and what it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWeight {
    pub record: Record,
    pub prior: f64,
    pub empirical: f64,
    pub weight: f64,
}

/// Clips every weight to [lo, hi] and renormalises, repeating until the bounds hold (the
/// weights of members at a bound are fixed and the rest share what is left).
pub fn clip_normalise(w: &mut [f64], lo: f64, hi: f64) {
    let n = w.len();
    if n == 0 {
        return;
    }
    if n == 1 || lo * n as f64 > 1.0 || hi * (n as f64) < 1.0 {
        let s: f64 = w.iter().sum();
        w.iter_mut()
            .for_each(|x| *x = if s > 0.0 { *x / s } else { 1.0 / n as f64 });
        if n == 1 {
            w[0] = 1.0;
        }
        return;
    }
    let mut fixed = vec![false; n];
    for _ in 0..=n {
        let free_mass = 1.0 - (0..n).filter(|&i| fixed[i]).map(|i| w[i]).sum::<f64>();
        let free_sum: f64 = (0..n).filter(|&i| !fixed[i]).map(|i| w[i]).sum();
        let free = (0..n).filter(|&i| !fixed[i]).count() as f64;
        for i in (0..n).filter(|&i| !fixed[i]) {
            w[i] = if free_sum > 0.0 {
                w[i] / free_sum * free_mass
            } else {
                free_mass / free
            };
        }
        let mut changed = false;
        for i in 0..n {
            if !fixed[i] && (w[i] < lo || w[i] > hi) {
                w[i] = w[i].clamp(lo, hi);
                fixed[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// New weights for the members of one (code, horizon).
pub fn learn(
    records: Vec<Record>,
    priors: &BTreeMap<String, f64>,
    p: &UpdateParams,
) -> Vec<NewWeight> {
    let prior_sum: f64 = records
        .iter()
        .map(|r| priors.get(&r.model).copied().unwrap_or(0.0))
        .sum();
    let n_members = records.len() as f64;
    let skill: Vec<f64> = records
        .iter()
        .map(|r| match p.method {
            Method::HitRate => r.hit_rate,
            Method::InverseMae => 1.0 / r.mape.max(1e-9),
            Method::Pinball => 1.0 / r.pinball.max(1e-12),
        })
        .map(|s| if s.is_finite() { s.max(0.0) } else { 0.0 })
        .collect();
    let skill_sum: f64 = skill.iter().sum();
    let mut out: Vec<NewWeight> = records
        .into_iter()
        .zip(skill)
        .map(|(record, s)| {
            let prior = if prior_sum > 0.0 {
                priors.get(&record.model).copied().unwrap_or(0.0) / prior_sum
            } else {
                1.0 / n_members
            };
            let empirical = if skill_sum > 0.0 {
                s / skill_sum
            } else {
                prior
            };
            let n = record.n as f64;
            let weight = (n * empirical + p.shrinkage * prior) / (n + p.shrinkage);
            NewWeight {
                record,
                prior,
                empirical,
                weight,
            }
        })
        .collect();
    let mut w: Vec<f64> = out.iter().map(|x| x.weight).collect();
    clip_normalise(&mut w, p.min_weight, p.max_weight);
    for (x, w) in out.iter_mut().zip(w) {
        x.weight = w;
    }
    out
}

pub struct WeightsUpdate;

#[async_trait]
impl Operator for WeightsUpdate {
    fn kind(&self) -> &'static str {
        "weights.update"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "member weights per (code, horizon) from matured outcomes, shrunk toward the priors; model performance"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "priors",
                "map<member, f64>",
                "{chronos: 0.6, lgbm: 0.4}",
                "prior weight of each member (the ensemble's)",
            ),
            ParamSpec::optional(
                "method",
                "hit_rate|inverse_mae|pinball",
                "hit_rate",
                "what skill the weights follow",
            ),
            ParamSpec::optional("window", "usize", "60", "matured outcomes per member used"),
            ParamSpec::optional("shrinkage", "f64", "20", "k: pseudo-outcomes of the prior"),
            ParamSpec::optional("min_weight", "f64", "0.05", "lower clip"),
            ParamSpec::optional("max_weight", "f64", "0.95", "upper clip"),
            ParamSpec::optional(
                "performance_days",
                "u32",
                "30",
                "trading days of model_performance",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new(
                "outcomes",
                tables::subset(&tables::prediction_outcomes(), &OUTCOME_COLUMNS),
                "matured predictions (absent before the first match: skipped)",
            )
            .optional()
            .projected(),
            InputPort::new(
                "weights",
                tables::subset(&tables::ensemble_weights(), &book::COLUMNS),
                "this table: the previous weights",
            )
            .optional()
            .projected(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::ensemble_weights(), "weights", WriteMode::Merge),
            OutputPort::for_table(
                &tables::model_performance(),
                "performance",
                WriteMode::Merge,
            ),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: UpdateParams = parse_params(params)?;
        if let Some((m, w)) = p.priors.iter().find(|(_, w)| !w.is_finite() || **w < 0.0) {
            return Err(ConfigError::new(
                format!("priors.{m}"),
                format!("a prior must be a non-negative number, got {w}"),
            ));
        }
        if !(0.0 <= p.min_weight && p.min_weight < p.max_weight && p.max_weight <= 1.0) {
            return Err(ConfigError::new(
                "min_weight",
                "need 0 <= min_weight < max_weight <= 1",
            ));
        }
        if p.window == 0 || p.shrinkage < 0.0 || p.performance_days == 0 {
            return Err(ConfigError::new(
                "window",
                "window and performance_days must be >= 1 and shrinkage >= 0",
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

struct Configured {
    p: UpdateParams,
}

impl Configured {
    /// Trading days of outcomes read. One outcome per trading day and (code, horizon,
    /// member): the last `window` of them (and the performance window) lie within that many
    /// trading days, plus slack for halts.
    fn outcome_days(&self) -> i64 {
        self.p.window.max(self.p.performance_days as usize) as i64 + 20
    }
}

/// One outcome row, as weights and performance need it.
#[derive(Clone, Copy, Default)]
struct Outcome {
    target: i32,
    hit: bool,
    abs_error: f64,
    mape: f64,
    pinball: f64,
    inside: bool,
}

/// (code, horizon, model) -> its outcomes, newest first, as slices of one buffer laid out in
/// key order; the strings borrowed from the input.
#[derive(Default)]
struct Outcomes<'a> {
    groups: BTreeMap<(&'a str, i32, &'a str), std::ops::Range<usize>>,
    rows: Vec<Outcome>,
}

impl<'a> Outcomes<'a> {
    fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups in key order.
    fn iter(&self) -> impl Iterator<Item = (&(&'a str, i32, &'a str), &[Outcome])> {
        self.groups.iter().map(|(k, r)| (k, &self.rows[r.clone()]))
    }
}

/// The `prediction_outcomes` columns this operator reads.
const OUTCOME_COLUMNS: [&str; 11] = [
    "code",
    "horizon",
    "model",
    "target_date",
    "direction_hit",
    "inside_interval",
    "abs_error",
    "abs_pct_error",
    "pinball_q10",
    "pinball_q50",
    "pinball_q90",
];

/// The outcomes with a target date on or before `ds`, grouped; the ensemble's own only from
/// `ensemble_from` on (they count only towards the performance window, the weights being the
/// members'). Two passes, no vector per group: the first gives each row its group (one hash
/// lookup per row of ~10^6) and counts the groups, the second writes each row at its group's
/// next place in one buffer of the exact size. (Growing a vector per group cost a mature
/// full-market day ~7% of its samples, most of them the kernel zeroing the pages the grown
/// vectors moved to.)
fn read_outcomes(batches: &[RecordBatch], ds: i32, ensemble_from: i32) -> OpResult<Outcomes<'_>> {
    const SKIP: u32 = u32::MAX;
    let mut ids: HashMap<(&str, i32, &str), u32, foldhash::fast::RandomState> = HashMap::default();
    let mut counts: Vec<usize> = Vec::new();
    let mut group_of: Vec<u32> = Vec::with_capacity(rows(batches));
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let code = str_col(b, "code")?;
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let model = str_col(b, "model")?;
        let target = date_col(b, "target_date")?;
        group_of.extend((0..b.num_rows()).map(|i| {
            let t = target.value(i);
            if t > ds || (t < ensemble_from && model.value(i) == "ensemble") {
                return SKIP;
            }
            let next = ids.len() as u32;
            let id = *ids
                .entry((code.value(i), horizon.value(i), model.value(i)))
                .or_insert(next);
            if id == next {
                counts.push(0);
            }
            counts[id as usize] += 1;
            id
        }));
    }
    // Each group's first place, the groups laid out in key order.
    let groups: BTreeMap<(&str, i32, &str), u32> = ids.into_iter().collect();
    let mut next = vec![0usize; counts.len()];
    let mut ranges = BTreeMap::new();
    let mut at = 0;
    for (key, id) in groups {
        let n = counts[id as usize];
        next[id as usize] = at;
        ranges.insert(key, at..at + n);
        at += n;
    }
    let mut flat = vec![Outcome::default(); at];
    let mut row = 0;
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let hit = typed::<BooleanArray>(b, "direction_hit", "Boolean")?;
        let inside = typed::<BooleanArray>(b, "inside_interval", "Boolean")?;
        let target = date_col(b, "target_date")?;
        let (ae, ape) = (f64_col(b, "abs_error")?, f64_col(b, "abs_pct_error")?);
        let (p10, p50, p90) = (
            f64_col(b, "pinball_q10")?,
            f64_col(b, "pinball_q50")?,
            f64_col(b, "pinball_q90")?,
        );
        for i in 0..b.num_rows() {
            let id = group_of[row];
            row += 1;
            if id == SKIP {
                continue;
            }
            let place = &mut next[id as usize];
            flat[*place] = Outcome {
                target: target.value(i),
                hit: hit.value(i),
                abs_error: ae.value(i),
                mape: ape.value(i),
                pinball: (p10.value(i) + p50.value(i) + p90.value(i)) / 3.0,
                inside: inside.value(i),
            };
            *place += 1;
        }
    }
    // Newest first; a stable sort keeps the read order among equal days, as before.
    for r in ranges.values() {
        flat[r.clone()].sort_by_key(|o| std::cmp::Reverse(o.target));
    }
    Ok(Outcomes {
        groups: ranges,
        rows: flat,
    })
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let ds = days(ctx.ds);
        let performance_from = days(
            ctx.calendar
                .add_trading_days(ctx.ds, -(i64::from(self.p.performance_days) - 1)),
        );
        let outcomes = match inputs.has("outcomes") {
            true => read_outcomes(inputs.batches("outcomes")?, ds, performance_from)?,
            false => Outcomes::default(),
        };
        if outcomes.is_empty() {
            return Err(OpError::skipped(format!(
                "no matured outcome on or before {} to learn from",
                ctx.ds
            )));
        }
        let previous = if inputs.has("weights") {
            let before = ctx.ds.pred_opt().unwrap_or(ctx.ds);
            WeightBook::read(inputs.batches("weights")?, before)?
        } else {
            WeightBook::default()
        };
        // Members per (code, horizon).
        let mut groups: BTreeMap<(&str, i32), Vec<Record>> = BTreeMap::new();
        for (&(code, h, model), v) in outcomes.iter() {
            if model == "ensemble" {
                continue;
            }
            if !self.p.priors.contains_key(model) {
                return Err(OpError::permanent(format!(
                    "member `{model}` has no prior: add `priors: {{{model}: <weight>}}` to `with:` (the ensemble's priors)"
                )));
            }
            let last = &v[..v.len().min(self.p.window)];
            groups.entry((code, h)).or_default().push(Record {
                model: model.to_string(),
                n: last.len(),
                hit_rate: mean(last.iter().map(|o| f64::from(u8::from(o.hit)))),
                mape: mean(last.iter().map(|o| o.mape)),
                pinball: mean(last.iter().map(|o| o.pinball)),
            });
        }
        let mut rows: Vec<(&str, i32, NewWeight, Option<f64>)> = Vec::new();
        for ((code, h), records) in groups {
            let prev = previous.get(code, u32::try_from(h).unwrap_or(0));
            for w in learn(records, &self.p.priors, &self.p) {
                let before = prev.and_then(|s| s.weights.get(&w.record.model).copied());
                rows.push((code, h, w, before));
            }
        }
        ctx.counters.add("weights", rows.len() as i64);
        // Each member's skill and new weight, for the hit-rate and ensemble-weight series.
        for (code, h, w, _) in &rows {
            if let Ok(horizon) = u32::try_from(*h) {
                let hit_rate = w.record.hit_rate;
                ctx.model_quality(
                    code,
                    horizon,
                    &w.record.model,
                    (!hit_rate.is_nan()).then_some(hit_rate),
                    w.weight,
                );
            }
        }
        let weights = weights_batch(&rows, ds, self.p.method)?;
        let perf = performance_batch(&outcomes, ctx, performance_from, self.p.performance_days)?;
        ctx.counters.add("performance", perf.num_rows() as i64);
        Ok(OutputBatches::new()
            .with("weights", vec![weights])
            .with("performance", vec![perf]))
    }

    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        calendar: &dyn Calendar,
    ) -> Option<NaiveDate> {
        // The previous weights: the history that holds the set in force, as the ensemble reads.
        let days = match port {
            "weights" => book::HISTORY_DAYS,
            _ => self.outcome_days(),
        };
        Some(calendar.add_trading_days(ds, -days))
    }
}

fn weights_batch(
    rows: &[(&str, i32, NewWeight, Option<f64>)],
    ds: i32,
    method: Method,
) -> OpResult<RecordBatch> {
    let n = rows.len();
    let f = |g: &dyn Fn(&NewWeight) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| g(&r.2))))
    };
    let opt = |g: &dyn Fn(&NewWeight) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| {
            let v = g(&r.2);
            v.is_finite().then_some(v)
        })))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.2.record.model.as_str()),
        )),
        Arc::new(Date32Array::from(vec![ds; n])),
        f(&|w| w.weight),
        f(&|w| w.prior),
        opt(&|w| w.empirical),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.2.record.n as i64),
        )),
        opt(&|w| w.record.hit_rate),
        opt(&|w| w.record.mape),
        opt(&|w| w.record.pinball),
        Arc::new(StringArray::from(vec![method.as_str(); n])),
    ];
    Ok(RecordBatch::try_new(
        tables::ensemble_weights().schema,
        cols,
    )?)
}

/// Each model's means over the outcomes with a target date from `from` (the first of the
/// `window` trading days ending at ds).
fn performance_batch(
    outcomes: &Outcomes<'_>,
    ctx: &TaskContext,
    from: i32,
    window: u32,
) -> OpResult<RecordBatch> {
    // Sums per (model, horizon), added in the groups' order (the means as a mean over a
    // collected list would add them).
    #[derive(Default)]
    struct Sums {
        n: usize,
        hit: f64,
        abs_error: f64,
        mape: f64,
        inside: f64,
        pinball: f64,
    }
    let mut by: BTreeMap<(&str, i32), Sums> = BTreeMap::new();
    for (&(_, h, model), v) in outcomes.iter() {
        let s = by.entry((model, h)).or_default();
        for o in v.iter().filter(|o| o.target >= from) {
            s.n += 1;
            s.hit += f64::from(u8::from(o.hit));
            s.abs_error += o.abs_error;
            s.mape += o.mape;
            s.inside += f64::from(u8::from(o.inside));
            s.pinball += o.pinball;
        }
    }
    by.retain(|_, s| s.n > 0);
    let n = by.len();
    let stat = |g: &dyn Fn(&Sums) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            by.values().map(|s| g(s) / s.n as f64),
        ))
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(by.keys().map(|k| k.0))),
        Arc::new(Int32Array::from_iter_values(by.keys().map(|k| k.1))),
        Arc::new(Date32Array::from(vec![days(ctx.ds); n])),
        Arc::new(Int32Array::from(vec![window as i32; n])),
        Arc::new(Int64Array::from_iter_values(
            by.values().map(|s| s.n as i64),
        )),
        stat(&|s| s.hit),
        stat(&|s| s.abs_error),
        stat(&|s| s.mape),
        stat(&|s| s.inside),
        stat(&|s| s.pinball),
    ];
    Ok(RecordBatch::try_new(
        tables::model_performance().schema,
        cols,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> UpdateParams {
        serde_json::from_value(serde_json::json!({})).expect("defaults")
    }

    fn record(model: &str, n: usize, hit_rate: f64) -> Record {
        Record {
            model: model.into(),
            n,
            hit_rate,
            mape: 0.01,
            pinball: 0.005,
        }
    }

    #[test]
    fn weights_shrink_toward_the_prior_by_sample_count() {
        let priors: BTreeMap<String, f64> =
            [("lgbm".to_string(), 0.4), ("ets".to_string(), 0.4)].into();
        // 20 outcomes each (= k): halfway between empirical and prior.
        let w = learn(
            vec![record("lgbm", 20, 0.6), record("ets", 20, 0.4)],
            &priors,
            &params(),
        );
        assert!((w[0].empirical - 0.6).abs() < 1e-12 && (w[0].prior - 0.5).abs() < 1e-12);
        assert!((w[0].weight - 0.55).abs() < 1e-12, "{w:?}");
        assert!((w[1].weight - 0.45).abs() < 1e-12);
        // No outcomes yet: the prior.
        let w = learn(
            vec![record("lgbm", 0, 0.0), record("ets", 0, 0.0)],
            &priors,
            &params(),
        );
        assert!((w[0].weight - 0.5).abs() < 1e-12);
        // Many outcomes: close to the empirical weights.
        let w = learn(
            vec![record("lgbm", 2000, 0.6), record("ets", 2000, 0.4)],
            &priors,
            &params(),
        );
        assert!((w[0].weight - 0.6).abs() < 0.002);
    }

    #[test]
    fn weights_are_clipped_and_sum_to_one() {
        let mut w = vec![0.99, 0.01];
        clip_normalise(&mut w, 0.05, 0.95);
        assert!(
            (w[0] - 0.95).abs() < 1e-12 && (w[1] - 0.05).abs() < 1e-12,
            "{w:?}"
        );
        let mut w = vec![0.9, 0.09, 0.01];
        clip_normalise(&mut w, 0.05, 0.95);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        assert!(
            w.iter().all(|x| (0.05 - 1e-12..=0.95 + 1e-12).contains(x)),
            "{w:?}"
        );
        let mut w = vec![0.3];
        clip_normalise(&mut w, 0.05, 0.95);
        assert_eq!(w, vec![1.0]);
    }

    #[test]
    fn other_methods_follow_their_skill() {
        let priors: BTreeMap<String, f64> =
            [("lgbm".to_string(), 0.5), ("ets".to_string(), 0.5)].into();
        let mut p = params();
        p.method = Method::InverseMae;
        p.shrinkage = 0.0;
        let mut a = record("lgbm", 50, 0.5);
        a.mape = 0.01;
        let mut b = record("ets", 50, 0.5);
        b.mape = 0.03;
        let w = learn(vec![a, b], &priors, &p);
        assert!((w[0].weight - 0.75).abs() < 1e-12, "{w:?}");
    }

    /// `prediction_outcomes` rows (code, model, target day) over `n_days` weekdays ending on
    /// 2024-06-28, one horizon, values varying with all three.
    fn outcomes(codes: &[&str], models: &[&str], n_days: i32) -> RecordBatch {
        use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array};
        let cal = krxflow_core::WeekdayCalendar::default();
        let ds = crate::testutil::d("2024-06-28");
        let mut rows = Vec::new();
        for back in 0..n_days {
            let day = days(cal.add_trading_days(ds, -i64::from(back)));
            for (c, code) in codes.iter().enumerate() {
                for (m, model) in models.iter().enumerate() {
                    let k = f64::from(back) + 7.0 * c as f64 + 3.0 * m as f64;
                    rows.push((*code, *model, day, k));
                }
            }
        }
        let f = |g: fn(f64) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| g(r.3))))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int32Array::from(vec![1; rows.len()])),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some((r.3 as i64) % 3 != 0)),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some((r.3 as i64) % 5 != 0)),
            )),
            f(|k| 10.0 + (k * 1.3).sin()),
            f(|k| 0.01 + 0.005 * (k * 0.7).cos()),
            f(|k| 0.002 + 0.001 * (k * 0.3).sin()),
            f(|k| 0.004 + 0.001 * (k * 0.9).cos()),
            f(|k| 0.003 + 0.001 * (k * 0.5).sin()),
        ];
        // In the table's column order.
        let schema = tables::subset(&tables::prediction_outcomes(), &OUTCOME_COLUMNS);
        let by_name: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let at = OUTCOME_COLUMNS.iter().position(|c| c == f.name());
                cols[at.expect("an outcome column")].clone()
            })
            .collect();
        RecordBatch::try_new(schema, by_name).expect("outcomes")
    }

    async fn update(outcomes: RecordBatch) -> (RecordBatch, RecordBatch) {
        let op = WeightsUpdate
            .configure(&serde_json::json!({"priors": {"ets": 0.4, "lgbm": 0.4}}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert(
            "outcomes",
            "prediction_outcomes",
            outcomes.schema(),
            vec![outcomes],
        );
        let ds = crate::testutil::d("2024-06-28");
        let out = op
            .run(&crate::testutil::ctx(ds), inputs)
            .await
            .expect("update");
        let one = |port: &str| out.batches(port).expect("port")[0].clone();
        (one("weights"), one("performance"))
    }

    #[tokio::test]
    async fn the_ensembles_outcomes_count_only_in_the_performance_window() {
        let models = ["ensemble", "ets", "lgbm"];
        let all = outcomes(&["000001", "000002"], &models, 85);
        let (weights, perf) = update(all.clone()).await;
        // The members' weights from their newest 60 outcomes; the ensemble has none.
        assert_eq!(weights.num_rows(), 2 * 2);
        let n = perf.column_by_name("n").expect("n");
        let n = n.as_any().downcast_ref::<Int64Array>().expect("Int64");
        assert_eq!(
            n.values().to_vec(),
            vec![2 * 30; 3],
            "30 trading days of each model"
        );
        // Without the ensemble's rows older than the window: the same tables, bit for bit.
        let target = date_col(&all, "target_date").expect("dates");
        let from = days(
            krxflow_core::WeekdayCalendar::default()
                .add_trading_days(crate::testutil::d("2024-06-28"), -29),
        );
        let model = str_col(&all, "model").expect("models");
        let keep = BooleanArray::from_iter(
            (0..all.num_rows())
                .map(|i| Some(model.value(i) != "ensemble" || target.value(i) >= from)),
        );
        let fewer = arrow::compute::filter_record_batch(&all, &keep).expect("filter");
        assert!(fewer.num_rows() < all.num_rows());
        assert_eq!(update(fewer).await, (weights, perf));
    }
}
