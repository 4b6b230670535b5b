//! The merge diff: which rows to write the table already holds exactly.
//!
//! Each row to write is paired with the stored row of the same key (the key columns in
//! arrow's row format, looked up in a hash map), and the pairs are compared column by
//! column, vectorised: the stored values gathered into the order of the rows to write, then
//! compared with `not_distinct` (nulls equal to nulls, floats bit for bit), or in the row format
//! for a nested column. Converting only the keys to rows, instead of whole rows, is what makes
//! the diff cheap: most tables re-write a window of days whose rows are nearly all unchanged.

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::BooleanBuffer;
use arrow::row::{RowConverter, SortField};
use std::collections::HashMap;

use crate::error::LakeResult;

/// Rows to write, split against what the table holds.
pub(super) struct Diff {
    /// New and changed rows.
    pub(super) rows: Vec<RecordBatch>,
    /// Rows the table already held exactly.
    pub(super) unchanged: usize,
    /// Whether a changed row has a key the table holds (it must be merged, not appended).
    pub(super) updates: bool,
}

/// Splits `batches` against `stored` (both in the table's physical schema), the key columns
/// at `key_idx` (never null) converted by `keys`. A stored key seen twice keeps its first row
/// (a table never holds one twice; if it did, the row would be merged, never dropped).
pub(super) fn diff(
    stored: &[RecordBatch],
    batches: Vec<RecordBatch>,
    key_idx: &[usize],
    keys: &RowConverter,
) -> LakeResult<Diff> {
    let key_cols = |b: &RecordBatch| {
        key_idx
            .iter()
            .map(|&i| b.column(i).clone())
            .collect::<Vec<_>>()
    };
    let stored_keys = stored
        .iter()
        .map(|b| keys.convert_columns(&key_cols(b)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut held: HashMap<&[u8], (usize, usize), foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(
            stored.iter().map(RecordBatch::num_rows).sum(),
            Default::default(),
        );
    for (b, rows) in stored_keys.iter().enumerate() {
        for (r, row) in rows.iter().enumerate() {
            held.entry(row.data()).or_insert((b, r));
        }
    }
    let mut out = Diff {
        rows: Vec::new(),
        unchanged: 0,
        updates: false,
    };
    for batch in batches {
        let rows = keys.convert_columns(&key_cols(&batch))?;
        // The rows with a held key, and where that key is held.
        let (mut at, mut stored_at) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            if let Some(&loc) = held.get(row.data()) {
                at.push(i as u32);
                stored_at.push(loc);
            }
        }
        let at = UInt32Array::from(at);
        let same = same_values(stored, &batch, key_idx, &at, &stored_at)?;
        // Keep a row unless its key is held with exactly its values.
        let mut keep = vec![true; batch.num_rows()];
        for (&i, same) in at.values().iter().zip(same.iter()) {
            if same {
                keep[i as usize] = false;
            } else {
                out.updates = true;
            }
        }
        let keep = BooleanArray::from(keep);
        out.unchanged += keep.false_count();
        let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            out.rows.push(kept);
        }
    }
    Ok(out)
}

/// For each pair (row `at[j]` of `batch`, stored row `stored_at[j]`), whether every column
/// other than the keys (equal by construction) holds the same value.
fn same_values(
    stored: &[RecordBatch],
    batch: &RecordBatch,
    key_idx: &[usize],
    at: &UInt32Array,
    stored_at: &[(usize, usize)],
) -> LakeResult<BooleanBuffer> {
    let mut same = BooleanBuffer::new_set(at.len());
    if at.is_empty() {
        return Ok(same);
    }
    for c in (0..batch.num_columns()).filter(|c| !key_idx.contains(c)) {
        let columns: Vec<&dyn Array> = stored.iter().map(|b| b.column(c).as_ref()).collect();
        let held = arrow::compute::interleave(&columns, stored_at)?;
        let new = arrow::compute::take(batch.column(c), at, None)?;
        same = &same & &equal(&new, &held)?;
        if same.count_set_bits() == 0 {
            break;
        }
    }
    Ok(same)
}

/// Row-wise equality of two arrays of one type: nulls equal nulls, floats compared bit for bit
/// (`not_distinct`), nested values in arrow's row format.
fn equal(a: &ArrayRef, b: &ArrayRef) -> LakeResult<BooleanBuffer> {
    if !a.data_type().is_nested() {
        let eq = arrow::compute::kernels::cmp::not_distinct(a, b)?;
        return Ok(match eq.nulls() {
            Some(valid) => eq.values() & valid.inner(),
            None => eq.values().clone(),
        });
    }
    let conv = RowConverter::new(vec![SortField::new(a.data_type().clone())])?;
    let (ra, rb) = (
        conv.convert_columns(std::slice::from_ref(a))?,
        conv.convert_columns(std::slice::from_ref(b))?,
    );
    Ok(BooleanBuffer::collect_bool(a.len(), |i| {
        ra.row(i).data() == rb.row(i).data()
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int32Array, ListArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;

    /// A row keyed by (id, day), with a nullable float and a list of ints.
    type Row<'a> = (&'a str, i32, Option<f64>, Option<Vec<i32>>);

    fn batch(rows: &[Row<'_>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("day", DataType::Int32, false),
            Field::new("x", DataType::Float64, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true,
            ),
        ]));
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(rows.iter().map(|r| {
            r.3.as_ref()
                .map(|v| v.iter().map(|x| Some(*x)).collect::<Vec<_>>())
        }));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(lists),
            ],
        )
        .unwrap()
    }

    fn keys() -> RowConverter {
        RowConverter::new(vec![
            SortField::new(DataType::Utf8),
            SortField::new(DataType::Int32),
        ])
        .unwrap()
    }

    fn ids(d: &Diff) -> Vec<String> {
        d.rows
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                ids.iter()
                    .map(|s| s.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn only_rows_whose_held_key_holds_exactly_their_values_are_dropped() {
        let tags = || Some(vec![1, 2]);
        let stored = [
            batch(&[
                ("same", 1, Some(1.5), tags()),
                ("nulls", 1, None, None),
                ("zero", 1, Some(0.0), tags()),
                ("nan", 1, Some(f64::NAN), tags()),
            ]),
            batch(&[
                ("moved", 1, Some(2.0), tags()),
                ("list", 1, Some(3.0), tags()),
                ("gone", 1, Some(4.0), None),
            ]),
        ];
        let to_write = vec![
            batch(&[
                ("same", 1, Some(1.5), tags()),
                ("nulls", 1, None, None),
                ("zero", 1, Some(-0.0), tags()),
                ("nan", 1, Some(f64::NAN), tags()),
            ]),
            batch(&[
                ("moved", 1, Some(2.0 + 1e-15), tags()),
                ("list", 1, Some(3.0), Some(vec![1, 3])),
                ("gone", 1, None, None),
                ("same", 2, Some(1.5), tags()),
            ]),
        ];
        let d = diff(&stored, to_write, &[0, 1], &keys()).unwrap();
        // -0.0 is not 0.0 bit for bit; the same NaN is the same; a null against a value, a
        // nudged float and a changed list element are changes; day 2 is a new key.
        assert_eq!(ids(&d), ["zero", "moved", "list", "gone", "same"]);
        assert_eq!(d.unchanged, 3);
        assert!(d.updates, "changed rows of held keys are updates");
    }

    #[test]
    fn new_keys_alone_are_no_update_and_an_empty_table_keeps_everything() {
        let stored = [batch(&[("a", 1, Some(1.0), None)])];
        let one = |id: &str| vec![batch(&[(id, 1, Some(1.0), None)])];
        let summary = |d: Diff| (ids(&d), d.unchanged, d.updates);
        let d = diff(&stored, one("b"), &[0, 1], &keys()).unwrap();
        assert_eq!(summary(d), (vec!["b".to_string()], 0, false));
        let d = diff(&[], one("a"), &[0, 1], &keys()).unwrap();
        assert_eq!(summary(d), (vec!["a".to_string()], 0, false));
        let d = diff(&stored, one("a"), &[0, 1], &keys()).unwrap();
        assert_eq!(summary(d), (Vec::<String>::new(), 1, false));
    }
}
