//! A table as each run of a range batch would have seen it: the rows the lake held before the
//! batch, and every version of a row the batch's own writers produced, each valid from the run
//! that wrote it until the run that next wrote its key.
//!
//! Runs are numbered by their place in the replay (the *ordinal*). A reader in run `p` sees a
//! version written in an earlier run, or in run `p` itself by another task (an upstream one);
//! never its own output of run `p`. So each version gets a *stamp*, `2·ordinal`, plus one
//! when the reader is the writer, and a reader in run `p` sees stamps `<= 2p`. A merge
//! replaces a key's row and never deletes one, so the row a reader sees for a key is its
//! latest version with a visible stamp, or the stored row when there is none.

use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use std::collections::HashMap;

/// A stamp no reader reaches (a row never superseded).
pub(crate) const NEVER: i64 = i64::MAX;
/// The stamp of the rows stored before the batch (visible to every reader).
pub(crate) const STORED: i64 = i64::MIN;

/// The stamp of a version written in run `ordinal`, as seen by `reader_is_writer`.
pub(crate) fn stamp(ordinal: usize, reader_is_writer: bool) -> i64 {
    2 * ordinal as i64 + i64::from(reader_is_writer)
}

/// The horizon of a reader in run `ordinal`: it sees stamps `<=` this.
pub(crate) fn horizon(ordinal: usize) -> i64 {
    2 * ordinal as i64
}

/// One version written by the batch: its rows (in the table's schema) and their stamp.
pub(crate) struct Version {
    pub(crate) batch: RecordBatch,
    pub(crate) stamp: i64,
}

/// The rows of a table with the stamps between which each is the visible row of its key.
pub(crate) struct Timeline {
    rows: RecordBatch,
    from: Vec<i64>,
    until: Vec<i64>,
    date: Option<usize>,
}

impl Timeline {
    /// `stored` (the rows read from the lake) and `versions` (the batch's writes of the same
    /// table, any order), keyed by `keys`; `date_column` is the table's as-of column.
    pub(crate) fn new(
        schema: &SchemaRef,
        stored: &[RecordBatch],
        mut versions: Vec<Version>,
        keys: &[String],
        date_column: Option<&str>,
    ) -> Result<Self, ArrowError> {
        versions.sort_by_key(|v| v.stamp);
        let mut parts: Vec<RecordBatch> = stored.to_vec();
        let mut from: Vec<i64> = vec![STORED; stored.iter().map(|b| b.num_rows()).sum()];
        for v in &versions {
            from.extend(std::iter::repeat_n(v.stamp, v.batch.num_rows()));
            parts.push(v.batch.clone());
        }
        let rows = concat_batches(schema, &parts)?;
        let mut until = vec![NEVER; rows.num_rows()];
        if !versions.is_empty() {
            // Rows in stamp order (stored first): each row is superseded by the next row of
            // its key that has a later stamp.
            let key_rows = key_rows(&rows, keys)?;
            let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
            for (i, k) in key_rows.iter().enumerate() {
                if let Some(prev) = last.insert(k.data(), i) {
                    if from[prev] < from[i] {
                        until[prev] = from[i];
                    } else {
                        // Two rows of one key in the same write (or both stored): the later
                        // one wins, as a merge keeps the last.
                        until[prev] = from[prev];
                    }
                }
            }
        }
        let date = date_column.and_then(|c| schema.index_of(c).ok());
        Ok(Self {
            rows,
            from,
            until,
            date,
        })
    }

    /// The rows a reader with horizon `horizon` sees, dated within `[since, as_of]` (days since
    /// the epoch; a bound is ignored when the table has no date column), with `columns` only
    /// (all when `None`).
    pub(crate) fn view(
        &self,
        horizon: i64,
        since: Option<i32>,
        as_of: Option<i32>,
        columns: Option<&[usize]>,
    ) -> Result<RecordBatch, ArrowError> {
        let dates = self
            .date
            .and_then(|i| self.rows.column(i).as_any().downcast_ref::<Date32Array>());
        let keep: BooleanArray = (0..self.rows.num_rows())
            .map(|i| {
                let live = self.from[i] <= horizon && horizon < self.until[i];
                let dated = match dates {
                    Some(d) if d.is_valid(i) => {
                        let v = d.value(i);
                        since.is_none_or(|s| v >= s) && as_of.is_none_or(|a| v <= a)
                    }
                    // A null date passes no as-of bound, as in the lake's scan.
                    Some(_) => since.is_none() && as_of.is_none(),
                    None => true,
                };
                Some(live && dated)
            })
            .collect();
        let kept = filter_record_batch(&self.rows, &keep)?;
        match columns {
            Some(c) => kept.project(c),
            None => Ok(kept),
        }
    }

    /// The rows no later version supersedes: what the table holds after the batch commits
    /// (stored rows included).
    pub(crate) fn latest(&self) -> Result<RecordBatch, ArrowError> {
        let keep: BooleanArray = self.until.iter().map(|u| Some(*u == NEVER)).collect();
        filter_record_batch(&self.rows, &keep)
    }

    /// Whether a row visible to some reader differs from its key's final row, or is dated
    /// after a run that already shows it: what a reader outside the batch (which reads the
    /// final table as of its day) would see differently. `ordinal_ds` gives the day of each
    /// ordinal (days since the epoch).
    pub(crate) fn revised_or_early(
        &self,
        keys: &[String],
        ordinal_ds: &[i32],
    ) -> Result<Option<String>, ArrowError> {
        let all: Vec<usize> = (0..self.rows.num_columns()).collect();
        let values = convert(&self.rows, &all)?;
        let key_rows = key_rows(&self.rows, keys)?;
        let mut final_of: HashMap<&[u8], usize> = HashMap::new();
        for (i, u) in self.until.iter().enumerate() {
            if *u == NEVER {
                final_of.insert(key_rows.row(i).data(), i);
            }
        }
        let dates = self
            .date
            .and_then(|i| self.rows.column(i).as_any().downcast_ref::<Date32Array>());
        for i in 0..self.rows.num_rows() {
            if self.from[i] == self.until[i] {
                continue;
            }
            if let Some(&f) = final_of.get(key_rows.row(i).data())
                && values.row(f) != values.row(i)
            {
                return Ok(Some(format!(
                    "row {i} is replaced by another value later in the range"
                )));
            }
            if self.from[i] != STORED
                && let Some(d) = dates.filter(|d| d.is_valid(i))
            {
                let ordinal = usize::try_from(self.from[i] / 2).unwrap_or(0);
                if ordinal_ds.get(ordinal).is_some_and(|ds| d.value(i) > *ds) {
                    return Ok(Some(format!(
                        "a row dated after the run that wrote it ({})",
                        d.value(i)
                    )));
                }
            }
        }
        Ok(None)
    }
}

fn convert(batch: &RecordBatch, columns: &[usize]) -> Result<arrow::row::Rows, ArrowError> {
    let fields = columns
        .iter()
        .map(|&i| SortField::new(batch.schema().field(i).data_type().clone()))
        .collect();
    let arrays: Vec<ArrayRef> = columns.iter().map(|&i| batch.column(i).clone()).collect();
    RowConverter::new(fields)?.convert_columns(&arrays)
}

fn key_rows(batch: &RecordBatch, keys: &[String]) -> Result<arrow::row::Rows, ArrowError> {
    let schema = batch.schema();
    let idx = keys
        .iter()
        .map(|k| schema.index_of(k))
        .collect::<Result<Vec<_>, _>>()?;
    convert(batch, &idx)
}

/// A schema's column positions for `names` (`None`: every column).
pub(crate) fn positions(
    schema: &SchemaRef,
    names: Option<&[String]>,
) -> Result<Option<Vec<usize>>, ArrowError> {
    names
        .map(|n| n.iter().map(|c| schema.index_of(c)).collect())
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("date", DataType::Date32, true),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    fn rows(r: &[(&str, i32, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(r.iter().map(|x| x.0).collect::<Vec<_>>())),
                Arc::new(Date32Array::from(r.iter().map(|x| x.1).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(
                    r.iter().map(|x| x.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    fn seen(t: &Timeline, horizon: i64, as_of: Option<i32>) -> Vec<(String, i32, f64)> {
        let b = t.view(horizon, None, as_of, None).expect("view");
        let code = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("s");
        let date = b
            .column(1)
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("d");
        let v = b
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f");
        let mut out: Vec<_> = (0..b.num_rows())
            .map(|i| (code.value(i).to_string(), date.value(i), v.value(i)))
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).expect("cmp"));
        out
    }

    fn keys() -> Vec<String> {
        vec!["code".into(), "date".into()]
    }

    #[test]
    fn a_reader_sees_the_stored_rows_and_the_versions_written_before_its_run() {
        let stored = [rows(&[("a", 1, 1.0), ("b", 1, 1.0)])];
        let versions = vec![
            // Run 0 rewrites a@1 and adds a@2; run 2 rewrites a@2 again.
            Version {
                batch: rows(&[("a", 1, 10.0), ("a", 2, 20.0)]),
                stamp: stamp(0, false),
            },
            Version {
                batch: rows(&[("a", 2, 22.0)]),
                stamp: stamp(2, false),
            },
        ];
        let t = Timeline::new(&schema(), &stored, versions, &keys(), Some("date")).expect("t");
        // Before run 0's write is visible (its own writer in run 0): the stored rows only.
        let before = Timeline::new(
            &schema(),
            &stored,
            vec![Version {
                batch: rows(&[("a", 1, 10.0)]),
                stamp: stamp(0, true),
            }],
            &keys(),
            Some("date"),
        )
        .expect("t");
        assert_eq!(
            seen(&before, horizon(0), None),
            [("a".into(), 1, 1.0), ("b".into(), 1, 1.0)]
        );
        assert_eq!(
            seen(&before, horizon(1), None),
            [("a".into(), 1, 10.0), ("b".into(), 1, 1.0)]
        );
        // Another task in run 0 sees run 0's write; run 1 too; run 2 sees the rewrite.
        assert_eq!(
            seen(&t, horizon(1), None),
            [
                ("a".into(), 1, 10.0),
                ("a".into(), 2, 20.0),
                ("b".into(), 1, 1.0)
            ]
        );
        assert_eq!(
            seen(&t, horizon(2), Some(2)),
            [
                ("a".into(), 1, 10.0),
                ("a".into(), 2, 22.0),
                ("b".into(), 1, 1.0)
            ]
        );
        // The as-of bound applies to the date column.
        assert_eq!(
            seen(&t, horizon(2), Some(1)),
            [("a".into(), 1, 10.0), ("b".into(), 1, 1.0)]
        );
        // What the batch commits: the last version of every key, the untouched stored row.
        let latest = t.latest().expect("latest");
        assert_eq!(latest.num_rows(), 3);
    }

    #[test]
    fn a_value_replaced_later_or_a_row_dated_after_its_run_is_reported() {
        let same = Timeline::new(
            &schema(),
            &[],
            vec![
                Version {
                    batch: rows(&[("a", 1, 1.0)]),
                    stamp: stamp(1, false),
                },
                Version {
                    batch: rows(&[("a", 1, 1.0)]),
                    stamp: stamp(2, false),
                },
            ],
            &keys(),
            Some("date"),
        )
        .expect("t");
        assert_eq!(same.revised_or_early(&keys(), &[0, 1, 2]).expect("r"), None);
        let revised = Timeline::new(
            &schema(),
            &[],
            vec![
                Version {
                    batch: rows(&[("a", 1, 1.0)]),
                    stamp: stamp(1, false),
                },
                Version {
                    batch: rows(&[("a", 1, 2.0)]),
                    stamp: stamp(2, false),
                },
            ],
            &keys(),
            Some("date"),
        )
        .expect("t");
        assert!(
            revised
                .revised_or_early(&keys(), &[0, 1, 2])
                .expect("r")
                .is_some()
        );
        let early = Timeline::new(
            &schema(),
            &[],
            vec![Version {
                batch: rows(&[("a", 5, 1.0)]),
                stamp: stamp(1, false),
            }],
            &keys(),
            Some("date"),
        )
        .expect("t");
        assert!(
            early
                .revised_or_early(&keys(), &[0, 1, 2])
                .expect("r")
                .is_some()
        );
    }
}
