//! `outcomes.match`: predictions whose target day has come, matched against that day's real
//! close into `prediction_outcomes` — one row for the ensemble and one per member (from
//! `prediction_members`, with the weight it had).
//!
//! A run for day D (re)matches every prediction whose target_date lies in the last
//! `lookback_days` trading days up to D. A prediction whose target day has no close yet
//! (a halt, late data) is counted `unmatched.no_close` and matched by a later run once the
//! close is there. Rows are merged on (code, base_date, horizon, model): re-running a day
//! rewrites, never duplicates. `scope: user_triggered` matches only predictions a user asked
//! for (`krxflow predict`); the flag is kept on every outcome either way.
//!
//! Point-in-time: the engine reads predictions and bars as of D, so an outcome for D uses
//! D's close and nothing later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use super::score::{Forecast, Score, score};
use crate::cols::{date_col, f64_col, rows, str_col, typed};
use crate::common::dates::days;
use crate::common::direction::Direction;
use crate::tables;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every prediction.
    #[default]
    All,
    /// Only predictions stored by `krxflow predict`.
    UserTriggered,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchParams {
    #[serde(default)]
    pub scope: Scope,
    /// Trading days back from D whose targets are (re)matched.
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
    /// Longest horizon predicted (bounds how far back predictions are read).
    #[serde(default = "default_max_horizon")]
    pub max_horizon: u32,
}

fn default_lookback() -> u32 {
    10
}
fn default_max_horizon() -> u32 {
    60
}

pub struct OutcomesMatch;

#[async_trait]
impl Operator for OutcomesMatch {
    fn kind(&self) -> &'static str {
        "outcomes.match"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "matured predictions (ensemble and members) scored against the real close"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "scope",
                "all|user_triggered",
                "all",
                "which predictions are matched",
            ),
            ParamSpec::optional(
                "lookback_days",
                "u32",
                "10",
                "trading days back whose targets are (re)matched (late closes)",
            ),
            ParamSpec::optional(
                "max_horizon",
                "u32",
                "60",
                "longest horizon predicted (bounds the read)",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            // A prediction that matured by ds was made before it.
            InputPort::new(
                "predictions",
                tables::predictions().schema,
                "the ensemble's predictions",
            )
            .before_ds(),
            InputPort::new(
                "members",
                tables::prediction_members().schema,
                "each member's part in them",
            )
            .optional()
            .before_ds(),
            InputPort::new("bars", tables::ohlcv_daily().schema, "real closes"),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![OutputPort::for_table(
            &tables::prediction_outcomes(),
            "outcomes",
            WriteMode::Merge,
        )]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: MatchParams = parse_params(params)?;
        if p.lookback_days == 0 {
            return Err(ConfigError::new("lookback_days", "must be >= 1"));
        }
        Ok(Box::new(Configured { p }))
    }
}

struct Configured {
    p: MatchParams,
}

/// Key of a prediction: (code, base_date, horizon), borrowed from the input batches.
type Key<'a> = (&'a str, i32, i32);

/// A hash map keyed by rows of the task's own inputs (foldhash: no adversary to guard against).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One prediction or member row to score, borrowing its strings from the input batches.
struct Pending<'a> {
    key: Key<'a>,
    target: i32,
    model: &'a str,
    forecast: Forecast,
    weight: Option<f64>,
    user_triggered: bool,
}

fn window_start(ds: NaiveDate, lookback: u32, calendar: &dyn Calendar) -> NaiveDate {
    calendar.add_trading_days(ds, -(i64::from(lookback) - 1))
}

impl Configured {
    /// The ensemble rows in the window, and which keys a user asked for, in a vector with
    /// room for `capacity` rows.
    fn predictions<'a>(
        &self,
        batches: &'a [RecordBatch],
        from: i32,
        to: i32,
        capacity: usize,
    ) -> OpResult<Vec<Pending<'a>>> {
        let mut out = Vec::with_capacity(capacity);
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            self.push_predictions(b, from, to, &mut out)?;
        }
        Ok(out)
    }

    /// [`Self::predictions`] of one batch, onto `out`.
    fn push_predictions<'a>(
        &self,
        b: &'a RecordBatch,
        from: i32,
        to: i32,
        out: &mut Vec<Pending<'a>>,
    ) -> OpResult<()> {
        let code = str_col(b, "code")?;
        let base = date_col(b, "base_date")?;
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let target = date_col(b, "target_date")?;
        let f = |c: &str| f64_col(b, c);
        let (close, point, q10, q90) = (f("base_close")?, f("point")?, f("q10")?, f("q90")?);
        let direction = str_col(b, "direction")?;
        let flag = typed::<BooleanArray>(b, "user_triggered", "Boolean")?;
        for i in 0..b.num_rows() {
            let t = target.value(i);
            if t < from || t > to {
                continue;
            }
            let user = !flag.is_null(i) && flag.value(i);
            if self.p.scope == Scope::UserTriggered && !user {
                continue;
            }
            let Some(dir) = Direction::parse(direction.value(i)) else {
                return Err(OpError::permanent(format!(
                    "predictions: direction `{}` is not up, flat or down",
                    direction.value(i)
                )));
            };
            out.push(Pending {
                key: (code.value(i), base.value(i), horizon.value(i)),
                target: t,
                model: "ensemble",
                forecast: Forecast {
                    base_close: close.value(i),
                    point: point.value(i),
                    q10: q10.value(i),
                    q90: q90.value(i),
                    direction: dir,
                },
                weight: None,
                user_triggered: user,
            });
        }
        Ok(())
    }

    /// Member rows of the predictions in `wanted` (key -> (target, user_triggered)), onto
    /// `out`.
    fn members<'a>(
        batches: &'a [RecordBatch],
        wanted: &FastMap<Key<'_>, (i32, bool)>,
        out: &mut Vec<Pending<'a>>,
    ) -> OpResult<()> {
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            Self::push_members(b, wanted, out)?;
        }
        Ok(())
    }

    /// [`Self::members`] of one batch.
    fn push_members<'a>(
        b: &'a RecordBatch,
        wanted: &FastMap<Key<'_>, (i32, bool)>,
        out: &mut Vec<Pending<'a>>,
    ) -> OpResult<()> {
        let code = str_col(b, "code")?;
        let base = date_col(b, "base_date")?;
        let horizon = typed::<Int32Array>(b, "horizon", "Int32")?;
        let model = str_col(b, "model")?;
        let f = |c: &str| f64_col(b, c);
        let (close, point, q10, q90) = (f("base_close")?, f("point")?, f("q10")?, f("q90")?);
        let (up, flat, down, weight) = (
            f("prob_up")?,
            f("prob_flat")?,
            f("prob_down")?,
            f("weight")?,
        );
        for i in 0..b.num_rows() {
            let key = (code.value(i), base.value(i), horizon.value(i));
            let Some(&(target, user)) = wanted.get(&key) else {
                continue;
            };
            out.push(Pending {
                key,
                target,
                model: model.value(i),
                forecast: Forecast {
                    base_close: close.value(i),
                    point: point.value(i),
                    q10: q10.value(i),
                    q90: q90.value(i),
                    direction: Direction::argmax(down.value(i), flat.value(i), up.value(i)),
                },
                weight: Some(weight.value(i)),
                user_triggered: user,
            });
        }
        Ok(())
    }
}

/// (code, date) -> close.
fn closes(batches: &[RecordBatch], from: i32) -> OpResult<FastMap<(&str, i32), f64>> {
    let mut out = FastMap::default();
    for bars in batches.iter().filter(|b| b.num_rows() > 0) {
        let (code, date, close) = (
            str_col(bars, "code")?,
            date_col(bars, "date")?,
            f64_col(bars, "close")?,
        );
        for i in 0..bars.num_rows() {
            if date.value(i) >= from && close.value(i).is_finite() && close.value(i) > 0.0 {
                out.insert((code.value(i), date.value(i)), close.value(i));
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let (from, to) = (
            days(window_start(
                ctx.ds,
                self.p.lookback_days,
                ctx.calendar.as_ref(),
            )),
            days(ctx.ds),
        );
        // The inputs' batches as read (one per data file), never concatenated: a copy of
        // every row read, in fresh pages, was most of this task's time on a full market.
        let members = match inputs.has("members") {
            true => Some(inputs.batches("members")?),
            false => None,
        };
        let predictions = inputs.batches("predictions")?;
        // Room for every row read (reserved, untouched until written): the members are
        // appended without moving what is there.
        let capacity = rows(predictions) + members.map_or(0, rows);
        let mut pending = self.predictions(predictions, from, to, capacity)?;
        let wanted: FastMap<Key<'_>, (i32, bool)> = pending
            .iter()
            .map(|p| (p.key, (p.target, p.user_triggered)))
            .collect();
        if let Some(members) = members {
            Self::members(members, &wanted, &mut pending)?;
        }
        let closes = closes(inputs.batches("bars")?, from)?;
        let mut scored: Vec<(Pending<'_>, f64, Score)> = Vec::with_capacity(pending.len());
        let mut unmatched = 0i64;
        for p in pending {
            match closes.get(&(p.key.0, p.target)) {
                Some(&actual) => {
                    let s = score(&p.forecast, actual);
                    scored.push((p, actual, s));
                }
                None if p.model == "ensemble" => unmatched += 1,
                None => {}
            }
        }
        ctx.counters.add("unmatched.no_close", unmatched);
        let by_model = scored
            .iter()
            .fold(BTreeMap::<&str, i64>::new(), |mut m, s| {
                *m.entry(s.0.model).or_default() += 1;
                m
            });
        for (model, n) in by_model {
            ctx.counters.add(&format!("matched.{model}"), n);
        }
        if scored.is_empty() && wanted.is_empty() {
            return Err(OpError::skipped(format!(
                "no prediction has a target date in the {} trading days up to {}",
                self.p.lookback_days, ctx.ds
            )));
        }
        Ok(OutputBatches::new().with("outcomes", vec![outcomes_batch(&scored)?]))
    }

    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        _watermarks: &BTreeMap<String, NaiveDate>,
        calendar: &dyn Calendar,
    ) -> Option<NaiveDate> {
        let start = window_start(ds, self.p.lookback_days, calendar);
        Some(match port {
            "bars" => start,
            // A prediction targeting the window was made at most max_horizon days before it.
            _ => calendar.add_trading_days(start, -i64::from(self.p.max_horizon)),
        })
    }
}

fn outcomes_batch<'a>(rows: &[(Pending<'a>, f64, Score)]) -> OpResult<RecordBatch> {
    let f = |g: &dyn Fn(&(Pending, f64, Score)) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
    };
    let b = |g: &dyn Fn(&(Pending, f64, Score)) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(g(r)))))
    };
    let s = |g: &dyn Fn(&(Pending<'a>, f64, Score)) -> &'a str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(g)))
    };
    let cols: Vec<ArrayRef> = vec![
        s(&|r| r.0.key.0),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| r.0.key.1),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0.key.2))),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| r.0.target),
        )),
        f(&|r| r.0.forecast.base_close),
        s(&|r| r.0.model),
        f(&|r| r.0.forecast.point),
        f(&|r| r.0.forecast.q10),
        f(&|r| r.0.forecast.q90),
        s(&|r| r.0.forecast.direction.as_str()),
        f(&|r| r.1),
        f(&|r| r.2.actual_return),
        s(&|r| r.2.actual_direction.as_str()),
        b(&|r| r.2.direction_hit),
        f(&|r| r.2.abs_error),
        f(&|r| r.2.abs_pct_error),
        b(&|r| r.2.inside_interval),
        f(&|r| r.2.pinball[0]),
        f(&|r| r.2.pinball[1]),
        f(&|r| r.2.pinball[2]),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.0.weight))),
        b(&|r| r.0.user_triggered),
    ];
    Ok(RecordBatch::try_new(
        tables::prediction_outcomes().schema,
        cols,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ctx, d};

    /// A predictions row: (code, base, target, point, direction, user_triggered); h = 1,
    /// base close 100, q10/q90 = point ∓ 2.
    type P<'a> = (&'a str, &'a str, &'a str, f64, &'a str, bool);

    fn predictions(rows: &[P<'_>]) -> RecordBatch {
        let n = rows.len();
        let f = |g: &dyn Fn(&P<'_>) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(d(r.1))),
            )),
            Arc::new(Int32Array::from(vec![1; n])),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(d(r.2))),
            )),
            f(&|_| 100.0),
            f(&|r| r.3),
            f(&|r| r.3 - 2.0),
            f(&|r| r.3 + 2.0),
            f(&|_| 0.4),
            f(&|_| 0.2),
            f(&|_| 0.4),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            f(&|r| r.3 / 100.0 - 1.0),
            Arc::new(StringArray::from(vec!["lgbm"; n])),
            Arc::new(Int32Array::from(vec![1; n])),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.5)))),
        ];
        RecordBatch::try_new(tables::predictions().schema, cols).expect("predictions")
    }

    fn bars(rows: &[(&str, &str, f64)]) -> RecordBatch {
        let n = rows.len();
        let px = || Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(d(r.1))),
            )),
            px(),
            px(),
            px(),
            px(),
            Arc::new(arrow::array::Int64Array::from(vec![1i64; n])),
            Arc::new(StringArray::from(vec!["t"; n])),
        ];
        RecordBatch::try_new(tables::ohlcv_daily().schema, cols).expect("bars")
    }

    async fn run(
        with: serde_json::Value,
        preds: RecordBatch,
        bars: RecordBatch,
        ds: &str,
    ) -> (OpResult<OutputBatches>, BTreeMap<String, i64>) {
        let op = OutcomesMatch.configure(&with).expect("params");
        let mut inputs = InputBatches::default();
        inputs.insert("predictions", "predictions", preds.schema(), vec![preds]);
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars]);
        let c = ctx(d(ds));
        let out = op.run(&c, inputs).await;
        (out, c.counters.snapshot())
    }

    #[tokio::test]
    async fn a_matured_prediction_is_scored_and_one_without_a_close_waits() {
        let preds = predictions(&[
            ("A", "2024-06-03", "2024-06-04", 101.0, "up", false),
            ("B", "2024-06-03", "2024-06-04", 99.0, "down", false),
            ("A", "2024-06-04", "2024-06-05", 101.0, "up", false), // not matured on 06-04
        ]);
        // B has no close on 06-04 yet (halted).
        let closes = bars(&[("A", "2024-06-03", 100.0), ("A", "2024-06-04", 102.0)]);
        let (out, counters) = run(serde_json::json!({}), preds.clone(), closes, "2024-06-04").await;
        let out = out.expect("run");
        let o = &out.batches("outcomes").expect("port")[0];
        assert_eq!(o.num_rows(), 1);
        assert_eq!(str_col(o, "code").unwrap().value(0), "A");
        assert!(
            typed::<BooleanArray>(o, "direction_hit", "bool")
                .unwrap()
                .value(0)
        );
        assert!((f64_col(o, "abs_error").unwrap().value(0) - 1.0).abs() < 1e-12);
        assert!(
            typed::<BooleanArray>(o, "inside_interval", "bool")
                .unwrap()
                .value(0)
        );
        assert_eq!(counters["unmatched.no_close"], 1);
        // The close of B arrives late: the next day's run matches it.
        let closes = bars(&[
            ("A", "2024-06-04", 102.0),
            ("B", "2024-06-04", 98.0),
            ("A", "2024-06-05", 100.0),
        ]);
        let (out, _) = run(serde_json::json!({}), preds, closes, "2024-06-05").await;
        let o = &out.expect("run").batches("outcomes").expect("port")[0].clone();
        let codes: Vec<&str> = (0..o.num_rows())
            .map(|i| str_col(o, "code").unwrap().value(i))
            .collect();
        assert_eq!(codes, ["A", "B", "A"]);
        let hit = typed::<BooleanArray>(o, "direction_hit", "bool").unwrap();
        assert!(hit.value(1), "B called down, went down 2%");
        assert!(!hit.value(2), "A called up on 06-04, fell");
    }

    #[tokio::test]
    async fn the_user_triggered_scope_matches_only_those_and_keeps_the_flag() {
        let preds = predictions(&[
            ("A", "2024-06-03", "2024-06-04", 101.0, "up", true),
            ("B", "2024-06-03", "2024-06-04", 99.0, "down", false),
        ]);
        let closes = bars(&[("A", "2024-06-04", 102.0), ("B", "2024-06-04", 98.0)]);
        let (out, _) = run(
            serde_json::json!({"scope": "user_triggered"}),
            preds,
            closes,
            "2024-06-04",
        )
        .await;
        let o = &out.expect("run").batches("outcomes").expect("port")[0].clone();
        assert_eq!(o.num_rows(), 1);
        assert!(
            typed::<BooleanArray>(o, "user_triggered", "bool")
                .unwrap()
                .value(0)
        );
    }
}
