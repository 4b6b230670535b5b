//! What the evaluation reads: matured forecasts with their outcome, the closes the naive
//! baselines are built from, and the learned weights, converted from the lake's Arrow batches.
//! A row that cannot be used is counted with its reason ([`Dropped`]), never silently lost.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{EvalError, EvalResult};

/// A direction call or outcome with the ±band flat zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Flat,
    Down,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "up" => Some(Self::Up),
            "flat" => Some(Self::Flat),
            "down" => Some(Self::Down),
            _ => None,
        }
    }

    /// Up above `+band`, down below `-band`, flat inside (edges included), as the pipeline's
    /// outcome matcher classifies (the caller passes its band).
    pub fn of_return(ret: f64, band: f64) -> Self {
        if ret > band {
            Self::Up
        } else if ret < -band {
            Self::Down
        } else {
            Self::Flat
        }
    }
}

/// One matured forecast of one model (the ensemble, a member or a naive baseline) and what
/// happened. Prices are closes; `point`, `q10` and `q90` are absent where the model has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub model: String,
    pub code: String,
    pub base_date: NaiveDate,
    pub horizon: u32,
    pub base_close: f64,
    pub point: Option<f64>,
    pub q10: Option<f64>,
    pub q90: Option<f64>,
    pub predicted: Direction,
    /// P(return > +band) as the model stated it.
    pub prob_up: Option<f64>,
    pub actual_return: f64,
    pub actual: Direction,
}

impl Outcome {
    pub fn hit(&self) -> bool {
        self.predicted == self.actual
    }

    /// The forecast return of the point (close / base close − 1).
    pub fn predicted_return(&self) -> Option<f64> {
        self.point.map(|p| p / self.base_close - 1.0)
    }
}

/// A daily close.
#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    pub code: String,
    pub date: NaiveDate,
    pub close: f64,
}

/// The mean learned weight of a member on one update day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weight {
    pub as_of: NaiveDate,
    pub horizon: u32,
    pub model: String,
    pub weight: f64,
}

/// Rows left out of the evaluation, by table and reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dropped {
    pub counts: BTreeMap<String, u64>,
}

impl Dropped {
    fn add(&mut self, table: &str, reason: &str) {
        *self.counts.entry(format!("{table}: {reason}")).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// One batch's columns, cast to the types the evaluation reads (the lake may hand strings as
/// views and integers of any width).
struct Columns<'a> {
    table: &'static str,
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn get(&self, column: &'static str, to: &DataType) -> EvalResult<ArrayRef> {
        let col = self
            .batch
            .column_by_name(column)
            .ok_or_else(|| EvalError::Column {
                table: self.table,
                column,
                reason: "missing".into(),
            })?;
        cast(col, to).map_err(|e| EvalError::Column {
            table: self.table,
            column,
            reason: format!("cannot be read as {to}: {e}"),
        })
    }

    fn strings(&self, column: &'static str) -> EvalResult<Vec<Option<String>>> {
        let a = self.get(column, &DataType::Utf8)?;
        Ok(a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    fn floats(&self, column: &'static str) -> EvalResult<Vec<Option<f64>>> {
        let a = self.get(column, &DataType::Float64)?;
        Ok(a.as_primitive::<Float64Type>().iter().collect())
    }

    fn ints(&self, column: &'static str) -> EvalResult<Vec<Option<i64>>> {
        let a = self.get(column, &DataType::Int64)?;
        Ok(a.as_primitive::<Int64Type>().iter().collect())
    }

    fn dates(&self, column: &'static str) -> EvalResult<Vec<Option<NaiveDate>>> {
        let a = self.get(column, &DataType::Date32)?;
        let a = a.as_primitive::<Date32Type>();
        Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value_as_date(i)).flatten())
            .collect())
    }
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// Outcome rows from batches with the columns model, code, base_date, horizon, base_close,
/// point, q10, q90, predicted_direction, prob_up (nullable), actual_return and
/// actual_direction.
pub fn outcomes(batches: &[RecordBatch], dropped: &mut Dropped) -> EvalResult<Vec<Outcome>> {
    const T: &str = "prediction_outcomes";
    let mut out = Vec::new();
    for batch in batches {
        let c = Columns { table: T, batch };
        let (model, code) = (c.strings("model")?, c.strings("code")?);
        let (base_date, horizon) = (c.dates("base_date")?, c.ints("horizon")?);
        let (base_close, point) = (c.floats("base_close")?, c.floats("point")?);
        let (q10, q90, prob_up) = (c.floats("q10")?, c.floats("q90")?, c.floats("prob_up")?);
        let predicted = c.strings("predicted_direction")?;
        let (actual_return, actual) = (c.floats("actual_return")?, c.strings("actual_direction")?);
        for i in 0..batch.num_rows() {
            let (Some(model), Some(code), Some(base_date)) =
                (model[i].clone(), code[i].clone(), base_date[i])
            else {
                dropped.add(T, "null model, code or base_date");
                continue;
            };
            let Some(horizon) = horizon[i]
                .and_then(|h| u32::try_from(h).ok())
                .filter(|h| *h > 0)
            else {
                dropped.add(T, "horizon null or not positive");
                continue;
            };
            let Some(base_close) = finite(base_close[i]).filter(|b| *b > 0.0) else {
                dropped.add(T, "base_close null, not finite or not positive");
                continue;
            };
            let Some(actual_return) = finite(actual_return[i]) else {
                dropped.add(T, "actual_return null or not finite");
                continue;
            };
            let dir = |v: &Option<String>| v.as_deref().and_then(Direction::parse);
            let (Some(predicted), Some(actual)) = (dir(&predicted[i]), dir(&actual[i])) else {
                dropped.add(T, "direction not one of up, flat, down");
                continue;
            };
            out.push(Outcome {
                model,
                code,
                base_date,
                horizon,
                base_close,
                point: finite(point[i]),
                q10: finite(q10[i]),
                q90: finite(q90[i]),
                predicted,
                prob_up: finite(prob_up[i]).filter(|p| (0.0..=1.0).contains(p)),
                actual_return,
                actual,
            });
        }
    }
    Ok(out)
}

/// Closes from batches with the columns code, date and close.
pub fn closes(batches: &[RecordBatch], dropped: &mut Dropped) -> EvalResult<Vec<Close>> {
    const T: &str = "ohlcv_daily";
    let mut out = Vec::new();
    for batch in batches {
        let c = Columns { table: T, batch };
        let (code, date, close) = (c.strings("code")?, c.dates("date")?, c.floats("close")?);
        for i in 0..batch.num_rows() {
            match (
                code[i].clone(),
                date[i],
                finite(close[i]).filter(|v| *v > 0.0),
            ) {
                (Some(code), Some(date), Some(close)) => out.push(Close { code, date, close }),
                _ => dropped.add(T, "null code or date, or close not positive"),
            }
        }
    }
    Ok(out)
}

/// Weights from batches with the columns as_of, horizon, model and weight.
pub fn weights(batches: &[RecordBatch], dropped: &mut Dropped) -> EvalResult<Vec<Weight>> {
    const T: &str = "ensemble_weights";
    let mut out = Vec::new();
    for batch in batches {
        let c = Columns { table: T, batch };
        let (as_of, horizon) = (c.dates("as_of")?, c.ints("horizon")?);
        let (model, weight) = (c.strings("model")?, c.floats("weight")?);
        for i in 0..batch.num_rows() {
            let h = horizon[i].and_then(|h| u32::try_from(h).ok());
            match (as_of[i], h, model[i].clone(), finite(weight[i])) {
                (Some(as_of), Some(horizon), Some(model), Some(weight)) => out.push(Weight {
                    as_of,
                    horizon,
                    model,
                    weight,
                }),
                _ => dropped.add(T, "null as_of, horizon, model or weight"),
            }
        }
    }
    Ok(out)
}

/// The first row's `lo` and `hi` dates (a `min`/`max` query); `None` when either is null.
pub fn date_range(batches: &[RecordBatch]) -> EvalResult<Option<(NaiveDate, NaiveDate)>> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let c = Columns {
        table: "prediction_outcomes",
        batch,
    };
    let (lo, hi) = (c.dates("lo")?, c.dates("hi")?);
    Ok(lo[0].zip(hi[0]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Float64Array, Int32Array, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn outcome_batch(directions: [&str; 2], base_close: [f64; 2]) -> RecordBatch {
        let s = |v: [&str; 2]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let f = |v: [Option<f64>; 2]| Arc::new(Float64Array::from(v.to_vec())) as ArrayRef;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("model", s(["ensemble", "ensemble"])),
            // Strings as views, as DataFusion reads them from Parquet.
            (
                "code",
                Arc::new(StringViewArray::from(vec!["005930", "000660"])),
            ),
            (
                "base_date",
                Arc::new(Date32Array::from(vec![20_000, 20_000])),
            ),
            ("horizon", Arc::new(Int32Array::from(vec![1, 1]))),
            ("base_close", f(base_close.map(Some))),
            ("point", f([Some(101.0), None])),
            ("q10", f([Some(99.0), None])),
            ("q90", f([Some(103.0), None])),
            ("predicted_direction", s(["up", "up"])),
            ("prob_up", f([Some(0.6), Some(1.5)])),
            ("actual_return", f([Some(0.01), Some(-0.02)])),
            ("actual_direction", s(directions)),
        ];
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn rows_that_cannot_be_scored_are_counted_with_their_reason() {
        let mut dropped = Dropped::default();
        let rows = outcomes(
            &[outcome_batch(["up", "sideways"], [100.0, 50.0])],
            &mut dropped,
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].code, "005930");
        assert_eq!(rows[0].predicted_return(), Some(0.010000000000000009));
        assert_eq!(
            dropped.counts,
            BTreeMap::from([(
                "prediction_outcomes: direction not one of up, flat, down".to_string(),
                1
            )])
        );
        let rows = outcomes(
            &[outcome_batch(["up", "down"], [100.0, -1.0])],
            &mut dropped,
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(dropped.total(), 2);
    }

    #[test]
    fn a_probability_outside_zero_one_is_not_used_and_missing_quantiles_stay_missing() {
        let mut dropped = Dropped::default();
        let rows = outcomes(
            &[outcome_batch(["up", "down"], [100.0, 50.0])],
            &mut dropped,
        )
        .unwrap();
        assert_eq!(rows[0].prob_up, Some(0.6));
        assert_eq!(rows[1].prob_up, None);
        assert_eq!((rows[1].point, rows[1].q10), (None, None));
    }

    #[test]
    fn a_missing_column_names_the_table_and_the_column() {
        let batch = outcome_batch(["up", "up"], [1.0, 1.0]);
        let batch = batch.project(&[0, 1, 2]).unwrap();
        let err = outcomes(&[batch], &mut Dropped::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "table `prediction_outcomes`: column `horizon`: missing"
        );
    }

    #[test]
    fn the_flat_band_edges_are_flat() {
        assert_eq!(Direction::of_return(0.003, 0.003), Direction::Flat);
        assert_eq!(Direction::of_return(-0.003, 0.003), Direction::Flat);
        assert_eq!(Direction::of_return(0.0031, 0.003), Direction::Up);
        assert_eq!(Direction::of_return(-0.0031, 0.003), Direction::Down);
    }
}
