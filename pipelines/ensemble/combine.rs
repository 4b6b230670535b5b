//! `ensemble.combine`: the members' forecasts for day D (bound in YAML as `member.<name>`)
//! combined per (code, base_date, horizon) into `predictions`, with each member's part in
//! `prediction_members`.
//!
//! * Weights per (code, horizon, member): the latest valid `ensemble_weights` set dated
//!   before D ([`super::weights`]; D's own update comes at 16:30, after this batch); a member without a learned weight gets its declared prior
//!   (`priors`, default Chronos 0.6, LightGBM 0.4). Weights are renormalised over the members
//!   present for the row, so a missing member gives its weight to the others and a lone
//!   member carries the row (cold start). No valid member: no row, counted.
//! * point = Σ w·s·point / Σ w·s, s being each member's recent ranking skill at the horizon
//!   ([`super::rank_skill`]; Σ w·point without a skill estimate or with `rank_tilt: false`),
//!   each member's return first put on one scale by its trailing centre and spread across
//!   codes (`rank_scale`, default on);
//!   q10/q90 = Σ w·q10/q90 (then calibrated: [`super::conformal`]), each member's interval its own (Chronos and ETS
//!   quantiles, LightGBM's validation residual quantiles; ±`fallback_band` of the member's
//!   point only when its interval is unusable); up/flat/down = the weighted average of the
//!   members' probabilities, renormalised; direction = argmax; expected_return =
//!   point / base_close − 1.
//! * A member row with a non-finite or non-positive price, or probabilities that are not a
//!   distribution, is dropped for that row and counted `dropped.<member>.<reason>`.
//! * A member's point is its `median` column (quantile forecasters) or `predicted_close`
//!   (LightGBM).
//! * `user_triggered` accumulates with OR: a row once stored by `krxflow predict` stays
//!   flagged when the daily run rewrites it (the `previous` input is this table).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::blend::{Combined, MemberForecast, Weighted, combine, member_forecast};
use super::conformal::{self, Settings};
use super::matured::{VolGrid, matured_by_horizon, scored_by_member};
use super::rank_skill::{self, Scored};
use super::weights::{self, WeightBook};
use crate::cols::{date_col, f64_col, str_col, typed};
use crate::common::dates::days;
use crate::common::horizons::target_date;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombineParams {
    /// Prior weight per member name (the `<name>` of `member.<name>`).
    #[serde(default = "default_priors")]
    pub priors: BTreeMap<String, f64>,
    #[serde(default = "crate::common::horizons::default_horizons")]
    pub horizons: Vec<u32>,
    #[serde(default)]
    pub codes: Vec<String>,
    /// Marks the rows as asked for by a user (`krxflow predict`).
    #[serde(default)]
    pub user_triggered: bool,
    /// Half-width of the interval given to a member without a usable one, as a fraction of its
    /// point.
    #[serde(default = "default_fallback_band")]
    pub fallback_band: f64,
    /// Calibrate the q10–q90 band on the matured outcomes (needs the `outcomes` and
    /// `features` inputs; see [`super::conformal`]).
    #[serde(default = "default_true")]
    pub conformal: bool,
    /// ACI's step size.
    #[serde(default = "default_gamma")]
    pub conformal_gamma: f64,
    /// Blend the point at the learned weights tilted by each member's recent ranking skill
    /// (needs the `outcomes` input; see [`super::rank_skill`]).
    #[serde(default = "default_true")]
    pub rank_tilt: bool,
    /// Put each member's returns on one scale (its trailing centre and spread across codes)
    /// before the tilted blend (see [`super::rank_skill::Skills::blend`]).
    #[serde(default = "default_true")]
    pub rank_scale: bool,
}

fn default_true() -> bool {
    true
}
fn default_gamma() -> f64 {
    Settings::default().gamma
}

/// The seed's priors (Chronos 0.6, LightGBM 0.4); `weights.update` shrinks toward the same.
pub fn default_priors() -> BTreeMap<String, f64> {
    [("chronos".to_string(), 0.6), ("lgbm".to_string(), 0.4)].into()
}
fn default_fallback_band() -> f64 {
    0.03
}

pub struct EnsembleCombine;

#[async_trait]
impl Operator for EnsembleCombine {
    fn kind(&self) -> &'static str {
        "ensemble.combine"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "members' forecasts for ds combined with learned weights (priors when none) into predictions"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "priors",
                "map<member, f64>",
                "{chronos: 0.6, lgbm: 0.4}",
                "prior weight of each member (every bound member needs one)",
            ),
            ParamSpec::optional("horizons", "list<u32>", "[1, 3, 5]", "horizons combined"),
            ParamSpec::optional("codes", "list<string>", "[]", "only these codes"),
            ParamSpec::optional(
                "user_triggered",
                "bool",
                "false",
                "flag the rows as asked for by a user (krxflow predict)",
            ),
            ParamSpec::optional(
                "fallback_band",
                "f64",
                "0.03",
                "± interval of a member that has none, as a fraction of its point",
            ),
            ParamSpec::optional(
                "conformal",
                "bool",
                "true",
                "calibrate q10-q90 on matured outcomes (split conformal / vol, with ACI)",
            ),
            ParamSpec::optional("conformal_gamma", "f64", "0.005", "ACI step size"),
            ParamSpec::optional(
                "rank_tilt",
                "bool",
                "true",
                "blend the point at the learned weights tilted by each member's trailing Rank IC",
            ),
            ParamSpec::optional(
                "rank_scale",
                "bool",
                "true",
                "put each member's returns on one scale (trailing centre and spread across codes) before the tilted blend",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::family(
                "member",
                member_schema(),
                "a member's forecasts (`member.<name>: <table>`): head, point (median or predicted_close), q10, q90, probabilities",
            ),
            InputPort::new(
                "weights",
                tables::subset(&tables::ensemble_weights(), &weights::COLUMNS),
                "learned weights (absent: priors)",
            )
            .optional()
            .projected()
            .before_ds(),
            InputPort::new(
                "previous",
                previous_schema(),
                "this table, for the user_triggered flag",
            )
            .optional(),
            InputPort::new(
                "outcomes",
                tables::subset(&tables::prediction_outcomes(), &OUTCOME_COLUMNS),
                "matured outcomes (target date before ds) to calibrate the interval on",
            )
            .optional()
            .projected()
            .before_ds(),
            InputPort::new(
                "features",
                tables::subset(&tables::features_daily(), &["code", "date", "vol_20d"]),
                "20-day volatility, the calibration's scale",
            )
            .optional()
            .projected(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::predictions(), "predictions", WriteMode::Merge),
            OutputPort::for_table(&tables::prediction_members(), "members", WriteMode::Merge),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: CombineParams = parse_params(params)?;
        if let Some((m, w)) = p.priors.iter().find(|(_, w)| !w.is_finite() || **w < 0.0) {
            return Err(ConfigError::new(
                format!("priors.{m}"),
                format!("a prior must be a non-negative number, got {w}"),
            ));
        }
        if p.horizons.is_empty() || p.horizons.contains(&0) {
            return Err(ConfigError::new("horizons", "must list horizons >= 1"));
        }
        if !(0.0..1.0).contains(&p.fallback_band) {
            return Err(ConfigError::new("fallback_band", "must be in [0, 1)"));
        }
        if !(p.conformal_gamma > 0.0 && p.conformal_gamma < 0.5) {
            return Err(ConfigError::new("conformal_gamma", "must be in (0, 0.5)"));
        }
        Ok(Box::new(Configured { p }))
    }
}

/// The columns a member table must have (besides `median` or `predicted_close`).
fn member_schema() -> Arc<Schema> {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    let mut fields: Vec<Field> = tables::forecast_head()
        .into_iter()
        .filter(|f| f.name() != "target_date")
        .collect();
    fields.extend(
        ["q10", "q90", "prob_up", "prob_flat", "prob_down"]
            .into_iter()
            .map(f),
    );
    Arc::new(Schema::new(fields))
}

const OUTCOME_COLUMNS: [&str; 11] = [
    "code",
    "base_date",
    "horizon",
    "target_date",
    "model",
    "base_close",
    "point",
    "q10",
    "q90",
    "actual_close",
    "weight",
];

/// Calendar days of outcomes and volatility read for the calibration (its window, 365 days,
/// plus the longest horizon and slack).
const CALIBRATION_READ_DAYS: i64 = 400;

fn previous_schema() -> Arc<Schema> {
    tables::subset(
        &tables::predictions(),
        &["code", "base_date", "horizon", "user_triggered"],
    )
}

struct Configured {
    p: CombineParams,
}

/// Each horizon's calibrations at ds (`None`: too few scores).
type Issues = Vec<(u32, Option<conformal::Issued>)>;

/// The blended rows, and the keys already flagged `user_triggered`.
type Blended = (Vec<((String, u32), Combined)>, BTreeSet<(String, u32)>);

/// (code, horizon) -> the members' validated forecasts.
type Rows = BTreeMap<(String, u32), Vec<MemberForecast>>;

impl Configured {
    /// Reads one member's rows for base date `ds` into `rows`; counts dropped rows.
    fn read_member(
        &self,
        name: &str,
        b: &RecordBatch,
        ds: NaiveDate,
        rows: &mut Rows,
        groups: &mut BTreeSet<(String, u32)>,
        ctx: &TaskContext,
    ) -> OpResult<()> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        let point_col = if b.column_by_name("median").is_some() {
            "median"
        } else if b.column_by_name("predicted_close").is_some() {
            "predicted_close"
        } else {
            return Err(OpError::permanent(format!(
                "member `{name}` has neither a `median` nor a `predicted_close` column"
            )));
        };
        let code = str_col(b, "code")?;
        let base = date_col(b, "base_date")?;
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let f = |c: &str| f64_col(b, c);
        let (close, point, q10, q90) = (f("base_close")?, f(point_col)?, f("q10")?, f("q90")?);
        let (up, flat, down) = (f("prob_up")?, f("prob_flat")?, f("prob_down")?);
        let v = |a: &Float64Array, i: usize| if a.is_null(i) { f64::NAN } else { a.value(i) };
        let ds = days(ds);
        let mut dropped: BTreeMap<&'static str, i64> = BTreeMap::new();
        for i in 0..b.num_rows() {
            if code.is_null(i) || base.is_null(i) || horizon.is_null(i) || base.value(i) != ds {
                continue;
            }
            let (c, h) = (code.value(i), u32::try_from(horizon.value(i)).unwrap_or(0));
            if !self.p.horizons.contains(&h)
                || (!self.p.codes.is_empty() && !self.p.codes.iter().any(|x| x == c))
            {
                continue;
            }
            groups.insert((c.to_string(), h));
            match member_forecast(
                name,
                v(close, i),
                v(point, i),
                v(q10, i),
                v(q90, i),
                [v(up, i), v(flat, i), v(down, i)],
                self.p.fallback_band,
            ) {
                Ok(m) => rows.entry((c.to_string(), h)).or_default().push(m),
                Err(why) => *dropped.entry(why).or_default() += 1,
            }
        }
        for (why, n) in dropped {
            tracing::warn!(
                member = name,
                reason = why,
                rows = n,
                "ensemble: member rows dropped"
            );
            ctx.counters.add(&format!("dropped.{name}.{why}"), n);
        }
        Ok(())
    }

    /// Each horizon's calibrations at ds from the matured outcomes and the volatilities (the
    /// replay of a year of outcomes: the heaviest part of the task on a mature lake).
    fn issue(
        &self,
        outcomes: &[RecordBatch],
        vol: &VolGrid<'_>,
        ds: NaiveDate,
    ) -> OpResult<Issues> {
        let settings = Settings {
            gamma: self.p.conformal_gamma,
            ..Settings::default()
        };
        let matured = matured_by_horizon(outcomes, vol, &self.p.horizons, days(ds))?;
        // One replay per horizon, each on a thread of its own (they share nothing).
        std::thread::scope(|s| {
            let replays: Vec<_> = self
                .p
                .horizons
                .iter()
                .map(|&h| {
                    let (matured, settings) = (matured.get(&h), &settings);
                    s.spawn(move || {
                        let issued =
                            matured.and_then(|m| conformal::calibrate(m, days(ds), settings));
                        (h, issued)
                    })
                })
                .collect();
            replays
                .into_iter()
                .map(|r| {
                    r.join().map_err(|_| {
                        OpError::permanent("a conformal replay panicked (a bug: please report it)")
                    })
                })
                .collect()
        })
    }

    /// Widens (or narrows) each row's band by its horizon's calibration at ds; rows without a
    /// volatility at ds, or horizons with too few scores, keep the raw band (counted).
    fn calibrate(
        &self,
        out: &mut [((String, u32), Combined)],
        issues: Issues,
        vol: &VolGrid<'_>,
        ctx: &TaskContext,
    ) {
        let ds = days(ctx.ds);
        for (h, issued) in issues {
            let Some(issued) = issued else {
                ctx.counters.add(&format!("conformal.h{h}.cold_start"), 1);
                continue;
            };
            ctx.counters
                .add(&format!("conformal.h{h}.scores"), issued.scores() as i64);
            for (g, cal) in issued.bands.iter().enumerate() {
                let Some(cal) = cal else {
                    ctx.counters
                        .add(&format!("conformal.h{h}.band{g}.cold_start"), 1);
                    continue;
                };
                ctx.counters.add(
                    &format!("conformal.h{h}.band{g}.q_milli"),
                    (cal.q * 1000.0).round() as i64,
                );
                ctx.counters.add(
                    &format!("conformal.h{h}.band{g}.alpha_milli"),
                    (cal.alpha * 1000.0).round() as i64,
                );
            }
            for ((code, hh), c) in out.iter_mut() {
                if *hh != h {
                    continue;
                }
                let Some(v) = vol.get(code, ds) else {
                    ctx.counters.add("conformal.no_vol", 1);
                    continue;
                };
                let scale = v * f64::from(h).sqrt();
                match issued.for_scale(scale) {
                    Some(cal) => {
                        (c.q10, c.q90) = conformal::widen(c.point, c.q10, c.q90, scale, cal);
                        ctx.counters.add("conformal.calibrated", 1);
                    }
                    None => ctx.counters.add("conformal.band_cold_start", 1),
                }
            }
        }
    }

    /// Re-blends each row's point at its members' learned weights tilted by their ranking
    /// skill at the row's horizon; rows whose members lack an estimate keep the learned blend
    /// (counted).
    fn tilt(
        out: &mut [((String, u32), Combined)],
        scored: &BTreeMap<String, Vec<Scored>>,
        scale: bool,
        ctx: &TaskContext,
    ) {
        let skills = rank_skill::skills(scored, days(ctx.ds), &rank_skill::Settings::default());
        for (h, sk) in &skills {
            for (member, s) in &sk.0 {
                ctx.counters.add(
                    &format!("rank_skill.h{h}.{member}_milli"),
                    (s.ic * 1000.0).round() as i64,
                );
            }
        }
        let (mut tilted, mut untilted) = (0i64, 0i64);
        for ((_, h), c) in out.iter_mut() {
            let present: Vec<(&str, f64, f64)> = c
                .members
                .iter()
                .map(|w| {
                    let m = &w.member;
                    (m.model.as_str(), w.weight, m.point / m.base_close - 1.0)
                })
                .collect();
            let sk = skills.get(h).filter(|_| present.len() > 1);
            let point = if scale {
                sk.and_then(|sk| sk.blend(&present))
                    .map(|r| c.base_close * (1.0 + r))
            } else {
                let weights: Vec<(&str, f64)> = present.iter().map(|p| (p.0, p.1)).collect();
                sk.and_then(|sk| sk.tilt(&weights)).map(|t| {
                    c.members
                        .iter()
                        .zip(&t)
                        .map(|(m, t)| t * m.member.point)
                        .sum()
                })
            };
            match point {
                Some(p) if p.is_finite() && p > 0.0 => {
                    c.point = p;
                    tilted += 1;
                }
                _ => untilted += 1,
            }
        }
        ctx.counters.add("rank_tilt.rows", tilted);
        ctx.counters.add("rank_tilt.untilted_rows", untilted);
    }

    /// The members' rows blended at the learned weights (priors where none) and tilted by
    /// their ranking skill; with the keys already flagged `user_triggered`.
    fn blend(
        &self,
        inputs: &InputBatches,
        mut rows: Rows,
        groups: &BTreeSet<(String, u32)>,
        outcomes: Option<&[RecordBatch]>,
        ctx: &TaskContext,
    ) -> OpResult<Blended> {
        // Weights updated on ds are written at 16:30, after this 16:00 batch: only sets dated
        // before ds were known (a re-run of ds must not see the later update).
        let t = std::time::Instant::now();
        let book = if inputs.has("weights") {
            let before = ctx.ds.pred_opt().unwrap_or(ctx.ds);
            WeightBook::read(inputs.batches("weights")?, before)?
        } else {
            WeightBook::default()
        };
        for why in &book.rejected {
            tracing::error!("{why}");
        }
        ctx.counters
            .add("rejected.bad_weights", book.rejected.len() as i64);
        let previous = if inputs.has("previous") {
            Some(inputs.concat("previous")?)
        } else {
            None
        };
        let flagged = Self::flagged(previous.as_ref(), ctx.ds)?;
        let mut out: Vec<((String, u32), Combined)> = Vec::new();
        for key in groups {
            let present = rows.remove(key).unwrap_or_default();
            let learned = book.get(&key.0, key.1).map(|s| &s.weights);
            match combine(present, learned, &self.p.priors) {
                Some(c) => out.push((key.clone(), c)),
                None => ctx.counters.add("no_member", 1),
            }
        }
        if out.is_empty() && groups.is_empty() {
            return Err(OpError::skipped(format!(
                "no member has a forecast for {}",
                ctx.ds
            )));
        }
        if self.p.rank_tilt {
            match outcomes {
                Some(o) => Self::tilt(&mut out, &scored_by_member(o)?, self.p.rank_scale, ctx),
                None => ctx.counters.add("rank_tilt.no_outcomes", 1),
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(ms, "ensemble: blended and tilted");
        Ok((out, flagged))
    }

    /// Keys of `previous` rows for ds already flagged `user_triggered`.
    fn flagged(previous: Option<&RecordBatch>, ds: NaiveDate) -> OpResult<BTreeSet<(String, u32)>> {
        let mut out = BTreeSet::new();
        let Some(b) = previous.filter(|b| b.num_rows() > 0) else {
            return Ok(out);
        };
        let code = str_col(b, "code")?;
        let base = date_col(b, "base_date")?;
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let flag = typed::<BooleanArray>(b, "user_triggered", "Boolean")?;
        for i in 0..b.num_rows() {
            if base.value(i) == days(ds) && !flag.is_null(i) && flag.value(i) {
                out.insert((
                    code.value(i).to_string(),
                    u32::try_from(horizon.value(i)).unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let members = inputs.family("member")?;
        // The DAG binds at least one member (validation says so); none here means no member
        // table exists yet: every member skipped on every day so far (no model trained, too
        // little history). Nothing to combine is a skip, like a member's own, not a failure.
        if members.is_empty() {
            return Err(OpError::skipped(format!(
                "no member has written a forecast yet (on or before {}): every member table is missing",
                ctx.ds
            )));
        }
        if let Some((name, _)) = members.iter().find(|(n, _)| !self.p.priors.contains_key(n)) {
            return Err(OpError::permanent(format!(
                "member `{name}` has no prior: add `priors: {{{name}: <weight>}}` to `with:`"
            )));
        }
        let mut rows = Rows::new();
        let mut groups = BTreeSet::new();
        for (name, b) in &members {
            self.read_member(name, b, ctx.ds, &mut rows, &mut groups, ctx)?;
        }
        let outcomes = if inputs.has("outcomes") {
            Some(inputs.batches("outcomes")?)
        } else {
            None
        };
        let features = match (self.p.conformal, outcomes, inputs.has("features")) {
            (true, Some(_), true) => Some(inputs.batches("features")?),
            _ => None,
        };
        // The calibrations on a second thread (the replay of a year of outcomes), while this
        // one reads the weights, blends and tilts: they share nothing until the band is applied.
        let (issues, blended) = std::thread::scope(|s| {
            let issuing = s.spawn(|| -> OpResult<Option<(VolGrid<'_>, Issues)>> {
                let (Some(o), Some(f)) = (outcomes, features) else {
                    return Ok(None);
                };
                let t = std::time::Instant::now();
                let vol = VolGrid::of(f)?;
                let issues = self.issue(o, &vol, ctx.ds)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(ms, "ensemble: calibrations replayed");
                Ok(Some((vol, issues)))
            });
            let blended = self.blend(&inputs, rows, &groups, outcomes, ctx);
            let issues = issuing.join().unwrap_or_else(|_| {
                Err(OpError::permanent(
                    "the conformal calibration panicked (a bug: please report it)",
                ))
            });
            (issues, blended)
        });
        let (mut out, flagged) = blended?;
        match issues? {
            Some((vol, issues)) => self.calibrate(&mut out, issues, &vol, ctx),
            None if self.p.conformal => ctx.counters.add("conformal.no_inputs", 1),
            None => {}
        }
        let learned = out
            .iter()
            .flat_map(|(_, c)| &c.members)
            .filter(|m| m.source == "learned")
            .count();
        ctx.counters.add("predictions", out.len() as i64);
        ctx.counters.add("weights.learned", learned as i64);
        let preds = predictions_batch(&out, &flagged, self.p.user_triggered, ctx)?;
        let parts = members_batch(&out, ctx)?;
        Ok(OutputBatches::new()
            .with("predictions", vec![preds])
            .with("members", vec![parts]))
    }

    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        calendar: &dyn Calendar,
    ) -> Option<NaiveDate> {
        // Member forecasts and previous predictions of ds only; the weights' history that holds
        // the set in force (weights::HISTORY_DAYS).
        Some(match port {
            "weights" => calendar.add_trading_days(ds, -weights::HISTORY_DAYS),
            "outcomes" | "features" => ds - chrono::Duration::days(CALIBRATION_READ_DAYS),
            _ => ds,
        })
    }
}

fn head(
    keys: &[((String, u32), Combined)],
    repeat: impl Fn(&Combined) -> usize,
    ctx: &TaskContext,
) -> Vec<ArrayRef> {
    let (mut code, mut horizon, mut target, mut close) = (vec![], vec![], vec![], vec![]);
    for ((c, h), comb) in keys {
        for _ in 0..repeat(comb) {
            code.push(c.clone());
            horizon.push(*h as i32);
            target.push(days(target_date(ctx.calendar.as_ref(), ctx.ds, *h)));
            close.push(comb.base_close);
        }
    }
    let n = code.len();
    vec![
        Arc::new(StringArray::from(code)),
        Arc::new(Date32Array::from(vec![days(ctx.ds); n])),
        Arc::new(Int32Array::from(horizon)),
        Arc::new(Date32Array::from(target)),
        Arc::new(Float64Array::from(close)),
    ]
}

fn predictions_batch(
    out: &[((String, u32), Combined)],
    flagged: &BTreeSet<(String, u32)>,
    user_triggered: bool,
    ctx: &TaskContext,
) -> OpResult<RecordBatch> {
    let mut cols = head(out, |_| 1, ctx);
    let f = |g: fn(&Combined) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            out.iter().map(|(_, c)| g(c)),
        ))
    };
    cols.push(f(|c| c.point));
    cols.push(f(|c| c.q10));
    cols.push(f(|c| c.q90));
    cols.push(f(|c| c.prob_up));
    cols.push(f(|c| c.prob_flat));
    cols.push(f(|c| c.prob_down));
    cols.push(Arc::new(StringArray::from_iter_values(
        out.iter().map(|(_, c)| c.direction.as_str()),
    )));
    cols.push(f(Combined::expected_return));
    cols.push(Arc::new(StringArray::from_iter_values(
        out.iter().map(|(_, c)| c.sources()),
    )));
    cols.push(Arc::new(Int32Array::from_iter_values(
        out.iter().map(|(_, c)| c.members.len() as i32),
    )));
    cols.push(Arc::new(BooleanArray::from_iter(
        out.iter()
            .map(|(k, _)| Some(user_triggered || flagged.contains(k))),
    )));
    Ok(RecordBatch::try_new(tables::predictions().schema, cols)?)
}

fn members_batch(out: &[((String, u32), Combined)], ctx: &TaskContext) -> OpResult<RecordBatch> {
    let mut cols = head(out, |c| c.members.len(), ctx);
    let all: Vec<&Weighted> = out.iter().flat_map(|(_, c)| &c.members).collect();
    cols.push(Arc::new(StringArray::from_iter_values(
        all.iter().map(|w| w.member.model.as_str()),
    )));
    let f = |g: fn(&Weighted) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(all.iter().map(|w| g(w))))
    };
    cols.push(f(|w| w.member.point));
    cols.push(f(|w| w.member.q10));
    cols.push(f(|w| w.member.q90));
    cols.push(f(|w| w.member.prob_up));
    cols.push(f(|w| w.member.prob_flat));
    cols.push(f(|w| w.member.prob_down));
    cols.push(f(|w| w.weight));
    cols.push(Arc::new(StringArray::from_iter_values(
        all.iter().map(|w| w.source),
    )));
    cols.push(Arc::new(StringArray::from_iter_values(
        all.iter().map(|w| w.member.interval_source),
    )));
    Ok(RecordBatch::try_new(
        tables::prediction_members().schema,
        cols,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ctx, d};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// (code, base_date, horizon, base_close, median)
    type Row<'a> = (&'a str, &'a str, i32, f64, f64);

    fn member_batch(rows: &[Row<'_>]) -> RecordBatch {
        // (code, base_date, horizon, base_close, median); q10/q90 ±2%, flat-ish probabilities.
        let n = rows.len();
        let f = |g: &dyn Fn(&Row<'_>) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(d(r.1))),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            f(&|r| r.3),
            f(&|r| r.4),
            f(&|r| r.4 * 0.98),
            f(&|r| r.4 * 1.02),
            f(&|_| 0.5),
            f(&|_| 0.2),
            f(&|_| 0.3),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("base_date", DataType::Date32, false),
            Field::new("horizon", DataType::Int32, false),
            Field::new("base_close", DataType::Float64, false),
            Field::new("median", DataType::Float64, false),
            Field::new("q10", DataType::Float64, false),
            Field::new("q90", DataType::Float64, false),
            Field::new("prob_up", DataType::Float64, false),
            Field::new("prob_flat", DataType::Float64, false),
            Field::new("prob_down", DataType::Float64, false),
        ]));
        assert_eq!(n, cols[0].len());
        RecordBatch::try_new(schema, cols).expect("member batch")
    }

    #[tokio::test]
    async fn a_member_absent_or_broken_for_one_code_leaves_the_others_serving() {
        let ds = d("2024-09-13");
        let lgbm = member_batch(&[
            ("A", "2024-09-13", 1, 100.0, 101.0),
            ("B", "2024-09-13", 1, 50.0, f64::NAN),
            ("A", "2024-09-12", 1, 100.0, 999.0), // another day: not combined
        ]);
        let ets = member_batch(&[
            ("A", "2024-09-13", 1, 100.0, 103.0),
            ("B", "2024-09-13", 1, 50.0, 51.0),
        ]);
        let op = EnsembleCombine
            .configure(&serde_json::json!({"priors": {"lgbm": 0.4, "ets": 0.4}, "horizons": [1]}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("member.lgbm", "lgbm_predictions", lgbm.schema(), vec![lgbm]);
        inputs.insert("member.ets", "ets_forecasts", ets.schema(), vec![ets]);
        let context = ctx(ds);
        let out = op.run(&context, inputs).await.expect("run");
        let p = &out.batches("predictions").expect("port")[0];
        assert_eq!(p.num_rows(), 2);
        let point = f64_col(p, "point").unwrap();
        assert!(close(point.value(0), 102.0), "A: mean of 101 and 103");
        assert!(close(point.value(1), 51.0), "B: ETS alone");
        assert_eq!(str_col(p, "sources_used").unwrap().value(1), "ets");
        // Chuseok is not in the weekday calendar: the h1 target of Friday is Monday.
        assert_eq!(
            date_col(p, "target_date").unwrap().value(0),
            days(d("2024-09-16"))
        );
        let counters = context.counters.snapshot();
        assert_eq!(counters["dropped.lgbm.bad_point"], 1);
        let m = &out.batches("members").expect("port")[0];
        assert_eq!(m.num_rows(), 3);
    }

    #[tokio::test]
    async fn a_member_without_a_prior_is_an_error_naming_it() {
        let ets = member_batch(&[("A", "2024-09-13", 1, 100.0, 103.0)]);
        let op = EnsembleCombine
            .configure(&serde_json::json!({}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("member.ets", "ets_forecasts", ets.schema(), vec![ets]);
        let err = op.run(&ctx(d("2024-09-13")), inputs).await.unwrap_err();
        assert!(
            err.to_string().contains("member `ets` has no prior"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_member_table_yet_is_a_skip_saying_why_not_a_failure() {
        // The first days of a new universe: every member skipped (too little history, no
        // model), so none of their tables exists and the engine provides no member input.
        let op = EnsembleCombine
            .configure(&serde_json::json!({}))
            .expect("params");
        let err = op
            .run(&ctx(d("2019-03-04")), InputBatches::default())
            .await
            .unwrap_err();
        assert!(matches!(err, OpError::Skipped(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("no member has written a forecast yet (on or before 2019-03-04)"),
            "{err}"
        );
    }

    /// Outcomes of `codes` × 80 past days whose realised closes spread ~5% while the members'
    /// band claimed ±2%, and the 20-day vol (2%) of every day: (outcomes, features). Member
    /// `m`'s point for code k on a day is `point(m, back, k)`.
    fn history_with(
        ds: NaiveDate,
        codes: &[&str],
        point: impl Fn(&str, i32, usize) -> f64,
    ) -> (RecordBatch, RecordBatch) {
        let (mut c, mut base, mut target, mut model) = (vec![], vec![], vec![], vec![]);
        let (mut q10, mut q90, mut actual, mut weight) = (vec![], vec![], vec![], vec![]);
        let mut points = vec![];
        let (mut fc, mut fd, mut fv) = (vec![], vec![], vec![]);
        for back in 0..=80i32 {
            let b = days(ds) - 1 - back;
            for (k, code) in codes.iter().enumerate() {
                fc.push(code.to_string());
                fd.push(b);
                fv.push(0.02);
                let shock = realised(back, k);
                for (m, w) in [("ets", 0.5), ("lgbm", 0.5), ("ensemble", f64::NAN)] {
                    c.push(code.to_string());
                    base.push(b);
                    target.push(b + 1);
                    model.push(m);
                    points.push(point(m, back, k));
                    q10.push(98.0);
                    q90.push(102.0);
                    actual.push(100.0 * (1.0 + shock));
                    weight.push((!w.is_nan()).then_some(w));
                }
            }
        }
        // Today's vol, the scale of the new interval.
        for code in codes {
            fc.push(code.to_string());
            fd.push(days(ds));
            fv.push(0.02);
        }
        let n = c.len();
        let outcomes = RecordBatch::try_new(
            tables::subset(&tables::prediction_outcomes(), &OUTCOME_COLUMNS),
            vec![
                Arc::new(StringArray::from(c)),
                Arc::new(Date32Array::from(base)),
                Arc::new(Int32Array::from(vec![1; n])),
                Arc::new(Date32Array::from(target)),
                Arc::new(Float64Array::from(vec![100.0; n])),
                Arc::new(StringArray::from(model)),
                Arc::new(Float64Array::from(points)),
                Arc::new(Float64Array::from(q10)),
                Arc::new(Float64Array::from(q90)),
                Arc::new(Float64Array::from(actual)),
                Arc::new(Float64Array::from(weight)),
            ],
        )
        .expect("outcomes");
        let features = RecordBatch::try_new(
            tables::subset(&tables::features_daily(), &["code", "date", "vol_20d"]),
            vec![
                Arc::new(StringArray::from(fc)),
                Arc::new(Date32Array::from(fd)),
                Arc::new(Float64Array::from(fv)),
            ],
        )
        .expect("features");
        (outcomes, features)
    }

    /// The realised return of code k, `back` days before ds − 1 (spread ~±5%).
    fn realised(back: i32, k: usize) -> f64 {
        (((back * 7 + k as i32 * 3) % 11) as f64 - 5.0) / 100.0
    }

    /// `history_with` whose members all forecast no change (no ranking skill to measure).
    fn history(ds: NaiveDate, codes: &[&str]) -> (RecordBatch, RecordBatch) {
        history_with(ds, codes, |_, _, _| 100.0)
    }

    async fn band(ds: NaiveDate, history: Option<(RecordBatch, RecordBatch)>) -> (f64, f64, f64) {
        let ets = member_batch(&[("A", "2024-09-13", 1, 100.0, 100.0)]);
        let op = EnsembleCombine
            .configure(&serde_json::json!({"priors": {"ets": 0.4}, "horizons": [1]}))
            .expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("member.ets", "ets_forecasts", ets.schema(), vec![ets]);
        if let Some((o, f)) = history {
            inputs.insert("outcomes", "prediction_outcomes", o.schema(), vec![o]);
            inputs.insert("features", "features_daily", f.schema(), vec![f]);
        }
        let out = op.run(&ctx(ds), inputs).await.expect("run");
        let p = &out.batches("predictions").expect("port")[0];
        let g = |c: &str| f64_col(p, c).unwrap().value(0);
        (g("q10"), g("point"), g("q90"))
    }

    #[tokio::test]
    async fn a_band_the_record_shows_too_narrow_is_widened_and_without_a_record_it_stays() {
        let ds = d("2024-09-13");
        let raw = band(ds, None).await;
        assert!(close(raw.0, 98.0) && close(raw.2, 102.0), "{raw:?}");
        let cal = band(ds, Some(history(ds, &["A", "B"]))).await;
        assert!(
            cal.0 < 96.5 && cal.2 > 103.5,
            "widened to the record's ~5% spread: {cal:?}"
        );
        assert!(cal.0 < cal.1 && cal.1 < cal.2);
    }

    #[tokio::test]
    async fn outcomes_that_mature_on_ds_or_later_do_not_move_ds_band() {
        let ds = d("2024-09-13");
        let (o, f) = history(ds, &["A", "B"]);
        let before = band(ds, Some((o.clone(), f.clone()))).await;
        // The same history shifted a week later: its last rows mature on or after ds.
        let later = history(d("2024-09-20"), &["A", "B"]);
        // What an as-of-ds read hands over is dated on or before ds: rows maturing on ds
        // itself (matched at 16:30, after this batch) are there and must be ignored.
        let t = date_col(&later.0, "target_date").unwrap();
        let on_ds: BooleanArray = t.iter().map(|x| x.map(|x| x == days(ds))).collect();
        let extra = arrow::compute::filter_record_batch(&later.0, &on_ds).unwrap();
        assert!(extra.num_rows() > 0);
        let filtered = arrow::compute::concat_batches(&o.schema(), &[o, extra]).unwrap();
        let feats = f;
        let after = band(ds, Some((filtered, feats))).await;
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn the_point_leans_on_the_member_whose_forecasts_ranked_the_codes() {
        let ds = d("2024-09-13");
        let codes = ["A", "B", "C", "D", "E", "F"];
        // ETS's past points ordered the codes as their closes came out; LightGBM's did the
        // reverse. Today ETS says +1%, LightGBM −3%, at equal priors.
        let (o, f) = history_with(ds, &codes, |m, back, k| match m {
            "ets" => 100.0 * (1.0 + realised(back, k) / 10.0),
            _ => 100.0 * (1.0 - realised(back, k) / 10.0),
        });
        let run = |tilt: bool, o: RecordBatch, f: RecordBatch| async move {
            let ets = member_batch(&[("A", "2024-09-13", 1, 100.0, 101.0)]);
            let lgbm = member_batch(&[("A", "2024-09-13", 1, 100.0, 97.0)]);
            let op = EnsembleCombine
                .configure(&serde_json::json!({
                    "priors": {"ets": 0.5, "lgbm": 0.5}, "horizons": [1], "rank_tilt": tilt
                }))
                .expect("params");
            let mut inputs = InputBatches::default();
            inputs.insert("member.ets", "ets_forecasts", ets.schema(), vec![ets]);
            inputs.insert("member.lgbm", "lgbm_predictions", lgbm.schema(), vec![lgbm]);
            inputs.insert("outcomes", "prediction_outcomes", o.schema(), vec![o]);
            inputs.insert("features", "features_daily", f.schema(), vec![f]);
            let c = ctx(ds);
            let out = op.run(&c, inputs).await.expect("run");
            let p = &out.batches("predictions").expect("port")[0];
            let m = &out.batches("members").expect("port")[0];
            let up = f64_col(p, "prob_up").unwrap().value(0);
            let weights: Vec<f64> = f64_col(m, "weight").unwrap().values().to_vec();
            (f64_col(p, "point").unwrap().value(0), up, weights)
        };
        let (flat, up_flat, w_flat) = run(false, o.clone(), f.clone()).await;
        assert!(close(flat, 99.0), "learned blend {flat}");
        let (tilted, up_tilted, w_tilted) = run(true, o, f).await;
        assert!(
            close(tilted, 101.0),
            "ETS ranked, LightGBM anti-ranked: {tilted}"
        );
        // The probabilities and the members' recorded weights are the learned blend's.
        assert!(close(up_flat, up_tilted));
        assert_eq!(w_flat, w_tilted);
        // No record of ranks (every past point the same): the learned blend.
        let (o, f) = history(ds, &codes);
        let (untilted, _, _) = run(true, o, f).await;
        assert!(close(untilted, 99.0), "{untilted}");
    }
}
