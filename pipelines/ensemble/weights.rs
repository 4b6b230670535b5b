//! Reading `ensemble_weights`: the latest valid weight set per (code, horizon) on or before a
//! day. A set whose weights are negative, not finite or do not sum to 1 is rejected with a
//! message naming it and is not used (the previous valid set, or the priors, serve instead).

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, RecordBatch};
use chrono::NaiveDate;
use krxflow_core::OpResult;

use crate::cols::{date_col, f64_col, str_col};
use crate::common::dates::{date_of, days};

/// How far a weight set's sum may be from 1.
pub const SUM_TOLERANCE: f64 = 1e-6;

/// One update's weights for one (code, horizon): model -> weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSet {
    pub as_of: NaiveDate,
    pub weights: BTreeMap<String, f64>,
}

/// The weights in force on a day, per (code, horizon).
#[derive(Debug, Clone, Default)]
pub struct WeightBook {
    sets: BTreeMap<(String, u32), WeightSet>,
    /// Why each rejected set was not used.
    pub rejected: Vec<String>,
}

impl WeightBook {
    /// The latest valid set per (code, horizon) dated on or before `ds` in `batch` (rows of
    /// `ensemble_weights`; an empty batch gives an empty book).
    pub fn read(batch: &RecordBatch, ds: NaiveDate) -> OpResult<Self> {
        let mut book = WeightBook::default();
        if batch.num_rows() == 0 {
            return Ok(book);
        }
        let code = str_col(batch, "code")?;
        let horizon = crate::cols::typed::<arrow::array::Int32Array>(batch, "horizon", "Int32")?;
        let model = str_col(batch, "model")?;
        let as_of = date_col(batch, "as_of")?;
        let weight = f64_col(batch, "weight")?;
        let ds = days(ds);
        // (code, horizon) -> as_of -> model -> weight; hashed while rows are grouped (a full
        // market's weeks of weights are ~10^5 rows), ordered once for the walk below.
        type Sets<'a> = HashMap<
            (&'a str, u32),
            BTreeMap<i32, BTreeMap<&'a str, f64>>,
            foldhash::fast::RandomState,
        >;
        let mut all: Sets = Sets::default();
        for i in 0..batch.num_rows() {
            if code.is_null(i) || horizon.is_null(i) || model.is_null(i) || as_of.is_null(i) {
                continue;
            }
            if as_of.value(i) > ds {
                continue;
            }
            let w = if weight.is_null(i) {
                f64::NAN
            } else {
                weight.value(i)
            };
            let h = u32::try_from(horizon.value(i)).unwrap_or(0);
            all.entry((code.value(i), h))
                .or_default()
                .entry(as_of.value(i))
                .or_default()
                .insert(model.value(i), w);
        }
        let mut all: Vec<_> = all.into_iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((code, h), by_day) in all {
            for (day, weights) in by_day.into_iter().rev() {
                let weights: BTreeMap<String, f64> = weights
                    .into_iter()
                    .map(|(m, w)| (m.to_string(), w))
                    .collect();
                match check(&weights) {
                    Ok(()) => {
                        book.sets.insert(
                            (code.to_string(), h),
                            WeightSet {
                                as_of: date_of(day),
                                weights,
                            },
                        );
                        break;
                    }
                    Err(why) => book.rejected.push(format!(
                        "ensemble_weights ({code}, horizon {h}, as_of {}): {why}; not used",
                        date_of(day)
                    )),
                }
            }
        }
        Ok(book)
    }
    pub fn get(&self, code: &str, horizon: u32) -> Option<&WeightSet> {
        self.sets.get(&(code.to_string(), horizon))
    }
}

/// A set is valid when every weight is finite and non-negative and they sum to 1.
pub fn check(weights: &BTreeMap<String, f64>) -> Result<(), String> {
    if let Some((m, w)) = weights.iter().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        return Err(format!("the weight of `{m}` is {w}"));
    }
    let sum: f64 = weights.values().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(format!("the weights sum to {sum}, not 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables;
    use crate::testutil::d;
    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, StringArray};
    use std::sync::Arc;

    /// `ensemble_weights` rows: (code, horizon, model, as_of, weight).
    pub(crate) fn weights_batch(rows: &[(&str, i32, &str, &str, f64)]) -> RecordBatch {
        let n = rows.len();
        let nulls = || Arc::new(Float64Array::from(vec![None::<f64>; n])) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| days(d(r.3))),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(Float64Array::from(vec![0.5; n])),
            nulls(),
            nulls(),
            Arc::new(Int64Array::from(vec![0i64; n])),
            nulls(),
            nulls(),
            nulls(),
            Arc::new(StringArray::from(vec!["hit_rate"; n])),
        ];
        RecordBatch::try_new(tables::ensemble_weights().schema, cols).expect("weights")
    }

    #[test]
    fn the_latest_set_on_or_before_the_day_is_used() {
        let b = weights_batch(&[
            ("A", 1, "lgbm", "2024-06-03", 0.3),
            ("A", 1, "ets", "2024-06-03", 0.7),
            ("A", 1, "lgbm", "2024-06-10", 0.6),
            ("A", 1, "ets", "2024-06-10", 0.4),
        ]);
        let book = WeightBook::read(&b, d("2024-06-07")).unwrap();
        let set = book.get("A", 1).unwrap();
        assert_eq!(set.as_of, d("2024-06-03"));
        assert_eq!(set.weights["lgbm"], 0.3);
        let book = WeightBook::read(&b, d("2024-06-10")).unwrap();
        assert_eq!(book.get("A", 1).unwrap().weights["lgbm"], 0.6);
        assert!(book.get("A", 3).is_none());
    }

    #[test]
    fn a_set_not_summing_to_one_or_negative_is_rejected_and_the_previous_one_serves() {
        let b = weights_batch(&[
            ("A", 1, "lgbm", "2024-06-03", 0.3),
            ("A", 1, "ets", "2024-06-03", 0.7),
            ("A", 1, "lgbm", "2024-06-10", 0.9),
            ("A", 1, "ets", "2024-06-10", 0.9),
            ("B", 1, "lgbm", "2024-06-10", -0.2),
            ("B", 1, "ets", "2024-06-10", 1.2),
        ]);
        let book = WeightBook::read(&b, d("2024-06-10")).unwrap();
        assert_eq!(book.get("A", 1).unwrap().as_of, d("2024-06-03"));
        assert!(book.get("B", 1).is_none());
        assert_eq!(book.rejected.len(), 2, "{:?}", book.rejected);
        assert!(
            book.rejected[0].contains("sum to 1.8"),
            "{}",
            book.rejected[0]
        );
        assert!(
            book.rejected[1].contains("`lgbm` is -0.2"),
            "{}",
            book.rejected[1]
        );
    }
}
