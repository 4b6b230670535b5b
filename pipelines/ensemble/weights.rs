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

/// The `ensemble_weights` columns [`WeightBook::read`] uses: what an input port reading the
/// table for it projects.
pub const COLUMNS: [&str; 5] = ["code", "horizon", "model", "as_of", "weight"];

/// Trading days of `ensemble_weights` history read for the book: weights are updated every
/// trading day, so these hold the set in force, and earlier valid sets should a recent one be
/// rejected; a (code, horizon) without a set in them gets its priors.
pub const HISTORY_DAYS: i64 = 60;

/// A row in no group (a null key, or dated after the day).
const NO_GROUP: u32 = u32::MAX;

/// The columns of one batch of `ensemble_weights` the book reads.
struct Columns<'a> {
    code: &'a arrow::array::StringArray,
    horizon: &'a arrow::array::Int32Array,
    model: &'a arrow::array::StringArray,
    as_of: &'a arrow::array::Date32Array,
    weight: &'a arrow::array::Float64Array,
}

impl Columns<'_> {
    /// The row's weight; null reads as NaN (and fails the set's check).
    fn weight_at(&self, i: usize) -> f64 {
        if self.weight.is_null(i) {
            f64::NAN
        } else {
            self.weight.value(i)
        }
    }
}

impl WeightBook {
    /// The latest valid set per (code, horizon) dated on or before `ds` in `batches` (rows of
    /// `ensemble_weights` as read, not concatenated; none gives an empty book). Within a set
    /// (one (code, horizon, as_of)), a model's last row wins.
    pub fn read(batches: &[RecordBatch], ds: NaiveDate) -> OpResult<Self> {
        let ds = days(ds);
        let mut cols = Vec::with_capacity(batches.len());
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            cols.push(Columns {
                code: str_col(batch, "code")?,
                horizon: crate::cols::typed::<arrow::array::Int32Array>(batch, "horizon", "Int32")?,
                model: str_col(batch, "model")?,
                as_of: date_col(batch, "as_of")?,
                weight: f64_col(batch, "weight")?,
            });
        }
        // Each usable row's (code, horizon) group and each group's newest day. A full market's
        // 60 days of weights are ~10^6 rows, a (code, horizon)'s members adjacent: a row with
        // the previous row's key skips the lookup.
        let mut index: HashMap<(&str, u32), u32, foldhash::fast::RandomState> = HashMap::default();
        let mut keys: Vec<(&str, u32)> = Vec::new();
        let mut newest: Vec<i32> = Vec::new();
        let mut group_of: Vec<Vec<u32>> = Vec::with_capacity(cols.len());
        let mut last: Option<((&str, u32), u32)> = None;
        for c in &cols {
            let mut groups = vec![NO_GROUP; c.code.len()];
            for (i, group) in groups.iter_mut().enumerate() {
                if c.code.is_null(i)
                    || c.horizon.is_null(i)
                    || c.model.is_null(i)
                    || c.as_of.is_null(i)
                    || c.as_of.value(i) > ds
                {
                    continue;
                }
                let key = (
                    c.code.value(i),
                    u32::try_from(c.horizon.value(i)).unwrap_or(0),
                );
                let g = match last {
                    Some((k, g)) if k == key => g,
                    _ => {
                        let g = *index.entry(key).or_insert_with(|| {
                            keys.push(key);
                            newest.push(i32::MIN);
                            (keys.len() - 1) as u32
                        });
                        last = Some((key, g));
                        g
                    }
                };
                newest[g as usize] = newest[g as usize].max(c.as_of.value(i));
                *group = g;
            }
            group_of.push(groups);
        }
        // Each group's newest set, rows in read order.
        let mut sets: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); keys.len()];
        for (c, groups) in cols.iter().zip(&group_of) {
            for (i, &g) in groups.iter().enumerate() {
                if g != NO_GROUP && c.as_of.value(i) == newest[g as usize] {
                    sets[g as usize].insert(c.model.value(i).to_string(), c.weight_at(i));
                }
            }
        }
        let mut book = WeightBook::default();
        let mut rejected: Vec<((&str, u32), i32, String)> = Vec::new();
        let mut pending = vec![false; keys.len()];
        for (g, weights) in sets.into_iter().enumerate() {
            pending[g] = !book.accept(&mut rejected, keys[g], newest[g], weights);
        }
        // A group whose newest set was rejected: its older days, newest first, until one is
        // valid (rows of those groups only; rare).
        if pending.contains(&true) {
            let mut older: Vec<(u32, i32, usize, usize)> = Vec::new();
            for (bi, (c, groups)) in cols.iter().zip(&group_of).enumerate() {
                for (i, &g) in groups.iter().enumerate() {
                    if g != NO_GROUP && pending[g as usize] && c.as_of.value(i) < newest[g as usize]
                    {
                        older.push((g, c.as_of.value(i), bi, i));
                    }
                }
            }
            older.sort_unstable_by_key(|&(g, day, bi, i)| (g, std::cmp::Reverse(day), bi, i));
            let mut settled = NO_GROUP;
            for day_rows in older.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
                let (g, day) = (day_rows[0].0, day_rows[0].1);
                if g == settled {
                    continue;
                }
                let weights: BTreeMap<String, f64> = day_rows
                    .iter()
                    .map(|&(_, _, bi, i)| {
                        let c = &cols[bi];
                        (c.model.value(i).to_string(), c.weight_at(i))
                    })
                    .collect();
                if book.accept(&mut rejected, keys[g as usize], day, weights) {
                    settled = g;
                }
            }
        }
        // In (code, horizon) order, newest first within each.
        rejected.sort_by(|a, b| (a.0, std::cmp::Reverse(a.1)).cmp(&(b.0, std::cmp::Reverse(b.1))));
        book.rejected = rejected.into_iter().map(|r| r.2).collect();
        Ok(book)
    }
    /// Puts `(code, horizon)`'s set of `day` in the book when it is valid (`true`), else
    /// records why it is not used.
    fn accept<'a>(
        &mut self,
        rejected: &mut Vec<((&'a str, u32), i32, String)>,
        (code, h): (&'a str, u32),
        day: i32,
        weights: BTreeMap<String, f64>,
    ) -> bool {
        match check(&weights) {
            Ok(()) => {
                let as_of = date_of(day);
                self.sets
                    .insert((code.to_string(), h), WeightSet { as_of, weights });
                true
            }
            Err(why) => {
                let message = format!(
                    "ensemble_weights ({code}, horizon {h}, as_of {}): {why}; not used",
                    date_of(day)
                );
                rejected.push(((code, h), day, message));
                false
            }
        }
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
        let book = WeightBook::read(std::slice::from_ref(&b), d("2024-06-07")).unwrap();
        let set = book.get("A", 1).unwrap();
        assert_eq!(set.as_of, d("2024-06-03"));
        assert_eq!(set.weights["lgbm"], 0.3);
        let book = WeightBook::read(std::slice::from_ref(&b), d("2024-06-10")).unwrap();
        assert_eq!(book.get("A", 1).unwrap().weights["lgbm"], 0.6);
        assert!(book.get("A", 3).is_none());
    }

    #[test]
    fn a_read_split_over_batches_makes_the_book_of_the_whole_read() {
        let rows = [
            ("B", 1, "lgbm", "2024-06-10", 0.9),
            ("A", 3, "lgbm", "2024-06-07", 0.5),
            ("A", 1, "lgbm", "2024-06-03", 0.3),
            ("A", 1, "ets", "2024-06-03", 0.7),
            ("B", 1, "ets", "2024-06-10", 0.9),
            ("A", 1, "lgbm", "2024-06-10", 0.9),
            ("A", 3, "ets", "2024-06-07", 0.5),
            ("A", 1, "ets", "2024-06-10", 0.9),
            ("B", 1, "ets", "2024-06-04", 0.2),
            ("A", 3, "ets", "2024-06-07", 0.5),
            // A repeated model on a day: its last row counts (0.2 + 0.8 = 1; 0.7 would be rejected).
            ("B", 1, "lgbm", "2024-06-04", 0.7),
            ("B", 1, "lgbm", "2024-06-04", 0.8),
            ("A", 1, "ets", "2024-06-11", 0.5),
        ];
        let whole = WeightBook::read(&[weights_batch(&rows)], d("2024-06-10")).unwrap();
        let split = WeightBook::read(
            &[
                weights_batch(&rows[..4]),
                weights_batch(&[]),
                weights_batch(&rows[4..11]),
                weights_batch(&rows[11..]),
            ],
            d("2024-06-10"),
        )
        .unwrap();
        assert_eq!(split.sets, whole.sets);
        assert_eq!(split.rejected, whole.rejected);
        assert_eq!(whole.get("A", 1).unwrap().as_of, d("2024-06-03"));
        assert_eq!(whole.get("A", 3).unwrap().weights["ets"], 0.5);
        let b = whole.get("B", 1).unwrap();
        assert_eq!((b.as_of, b.weights["lgbm"]), (d("2024-06-04"), 0.8));
        // Rejected in (code, horizon) order, newest first; the set after ds is not seen.
        assert_eq!(whole.rejected.len(), 2, "{:?}", whole.rejected);
        assert!(whole.rejected[0].starts_with("ensemble_weights (A, horizon 1, as_of 2024-06-10)"));
        assert!(whole.rejected[1].starts_with("ensemble_weights (B, horizon 1, as_of 2024-06-10)"));
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
        let book = WeightBook::read(std::slice::from_ref(&b), d("2024-06-10")).unwrap();
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
