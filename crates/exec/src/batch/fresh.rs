//! The rows of a batched writer's day that change something.
//!
//! A writer with an overlap window (`ingest.ohlcv`'s and `features.build`'s `overlap_days`,
//! `ingest.universe`'s whole universe) re-writes the same rows every day; a day-by-day run's
//! merge finds them unchanged and leaves the table as it was. A range batch keeps each day's
//! output as a version until its one commit, so a 134-day full-market replay held every
//! feature row about ten times over. [`Fresh`] drops from a day's output each row identical to
//! the writer's latest row of its key from an earlier day of the range (and a row its own day
//! writes again later in the same output, which no reader sees): a reader then finds an
//! earlier, equal version of the row, so every view, watermark and the commit are unchanged.
//!
//! Only for a table the task is the replay's only writer of: with two writers, a dropped row
//! could leave the other writer's row of the key visible instead.

use std::cmp::Ordering;
use std::collections::HashMap;

use arrow::array::{BooleanArray, DynComparator, RecordBatch, make_comparator};
use arrow::compute::{SortOptions, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};

/// One writer's kept rows of one table, by key.
pub(crate) struct Fresh {
    keys: Vec<usize>,
    converter: RowConverter,
    /// The rows kept so far, one batch per day that kept any.
    kept: Vec<RecordBatch>,
    /// Key (row format) -> (index into `kept`, row): the writer's latest row of the key.
    latest: HashMap<Box<[u8]>, (usize, usize)>,
}

impl Fresh {
    /// For a table of `schema` merged by `keys`.
    pub(crate) fn new(schema: &SchemaRef, keys: &[String]) -> Result<Self, ArrowError> {
        let keys = keys
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<Result<Vec<_>, _>>()?;
        let fields = keys
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Ok(Self {
            keys,
            converter: RowConverter::new(fields)?,
            kept: Vec::new(),
            latest: HashMap::new(),
        })
    }

    /// `batch` (a day's output, in the table's schema) less the rows that change nothing.
    pub(crate) fn keep(&mut self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(batch);
        }
        let key_cols: Vec<_> = self.keys.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&key_cols)?;
        // A key written twice in one output: the later row wins, as in a merge.
        let mut last_of: HashMap<&[u8], usize> = HashMap::with_capacity(n);
        for i in 0..n {
            last_of.insert(rows.row(i).data(), i);
        }
        let mut compare: HashMap<usize, Vec<DynComparator>> = HashMap::new();
        let mut keep = vec![false; n];
        for (i, kept) in keep.iter_mut().enumerate() {
            let key = rows.row(i).data();
            if last_of.get(key) != Some(&i) {
                continue;
            }
            let Some(&(v, j)) = self.latest.get(key) else {
                *kept = true;
                continue;
            };
            let cmp = match compare.entry(v) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let earlier = &self.kept[v];
                    let cmps = (0..batch.num_columns())
                        .map(|c| {
                            make_comparator(
                                earlier.column(c).as_ref(),
                                batch.column(c).as_ref(),
                                SortOptions::default(),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    e.insert(cmps)
                }
            };
            *kept = cmp.iter().any(|c| c(j, i) != Ordering::Equal);
        }
        let out = filter_record_batch(&batch, &BooleanArray::from(keep.clone()))?;
        if out.num_rows() > 0 {
            let at = self.kept.len();
            for (p, i) in keep
                .iter()
                .enumerate()
                .filter(|(_, k)| **k)
                .map(|(i, _)| i)
                .enumerate()
            {
                self.latest.insert(rows.row(i).data().into(), (at, p));
            }
            self.kept.push(out.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("date", DataType::Int32, false),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    fn batch(rows: &[(&str, i32, Option<f64>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn fresh() -> Fresh {
        Fresh::new(&schema(), &["code".into(), "date".into()]).unwrap()
    }

    #[test]
    fn a_day_keeps_its_new_and_changed_rows_and_drops_the_rows_it_rewrites_unchanged() {
        let mut f = fresh();
        let day1 = batch(&[("A", 1, Some(1.0)), ("A", 2, Some(2.0)), ("B", 2, None)]);
        assert_eq!(
            f.keep(day1.clone()).unwrap(),
            day1,
            "the first day keeps all"
        );
        // Day 2 re-writes the overlap: A/1 unchanged, A/2 revised, B/2 still null; A/3 is new.
        let day2 = batch(&[
            ("A", 1, Some(1.0)),
            ("A", 2, Some(2.5)),
            ("B", 2, None),
            ("A", 3, Some(3.0)),
        ]);
        assert_eq!(
            f.keep(day2).unwrap(),
            batch(&[("A", 2, Some(2.5)), ("A", 3, Some(3.0))])
        );
        // Day 3 compares with the latest kept row of each key (A/2 from day 2, A/1 from day 1).
        let day3 = batch(&[
            ("A", 1, Some(1.0)),
            ("A", 2, Some(2.0)),
            ("A", 3, Some(3.0)),
        ]);
        assert_eq!(f.keep(day3).unwrap(), batch(&[("A", 2, Some(2.0))]));
        // A value back to null is a change.
        assert_eq!(
            f.keep(batch(&[("A", 1, None)])).unwrap(),
            batch(&[("A", 1, None)])
        );
    }

    #[test]
    fn a_key_written_twice_in_one_output_is_judged_by_its_last_row() {
        let mut f = fresh();
        f.keep(batch(&[("A", 1, Some(1.0))])).unwrap();
        // Changed, then back to the earlier value: the merge keeps the last row, so nothing
        // changes.
        let back = batch(&[("A", 1, Some(9.0)), ("A", 1, Some(1.0))]);
        assert_eq!(f.keep(back).unwrap().num_rows(), 0);
        // Unchanged, then changed: the changed row stays, the earlier one goes.
        let changed = batch(&[("A", 1, Some(1.0)), ("A", 1, Some(4.0))]);
        assert_eq!(f.keep(changed).unwrap(), batch(&[("A", 1, Some(4.0))]));
    }

    #[test]
    fn an_empty_day_keeps_nothing_and_later_days_still_compare() {
        let mut f = fresh();
        f.keep(batch(&[("A", 1, Some(1.0))])).unwrap();
        assert_eq!(f.keep(batch(&[])).unwrap().num_rows(), 0);
        assert_eq!(f.keep(batch(&[("A", 1, Some(1.0))])).unwrap().num_rows(), 0);
    }
}
