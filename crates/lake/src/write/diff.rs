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
use arrow::datatypes::DataType;
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
        let (mut at, mut stored_at) = (
            Vec::with_capacity(batch.num_rows()),
            Vec::with_capacity(batch.num_rows()),
        );
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
/// other than the keys (equal by construction) holds the same value. Columns of plain
/// numbers, dates, booleans and strings are compared pair by pair where they lie
/// ([`same_in_place`]); the others (nested values, and types it does not list) are gathered
/// into the order of the rows to write and compared whole ([`equal`]).
fn same_values(
    stored: &[RecordBatch],
    batch: &RecordBatch,
    key_idx: &[usize],
    at: &UInt32Array,
    stored_at: &[(usize, usize)],
) -> LakeResult<BooleanBuffer> {
    let mut same = vec![true; at.len()];
    if at.is_empty() {
        return Ok(BooleanBuffer::from(same));
    }
    for c in (0..batch.num_columns()).filter(|c| !key_idx.contains(c)) {
        let columns: Vec<&dyn Array> = stored.iter().map(|b| b.column(c).as_ref()).collect();
        let new = batch.column(c).as_ref();
        if !same_in_place(new, &columns, at.values(), stored_at, &mut same) {
            let held = arrow::compute::interleave(&columns, stored_at)?;
            let new = arrow::compute::take(new, at, None)?;
            for (s, eq) in same.iter_mut().zip(equal(&new, &held)?.iter()) {
                *s &= eq;
            }
        }
        if !same.contains(&true) {
            break;
        }
    }
    Ok(BooleanBuffer::from(same))
}

/// [`same_values`] for one column without copying it: `same[j] &=` whether row `at[j]` of
/// `new` equals row `stored_at[j]` of `stored` (nulls equal nulls, floats bit for bit, as
/// `not_distinct`). `false` when the column's type is not one compared here.
fn same_in_place(
    new: &dyn Array,
    stored: &[&dyn Array],
    at: &[u32],
    stored_at: &[(usize, usize)],
    same: &mut [bool],
) -> bool {
    fn pairs<A: Array + ?Sized>(
        new: &A,
        stored: &[&A],
        at: &[u32],
        stored_at: &[(usize, usize)],
        same: &mut [bool],
        eq: impl Fn(&A, usize, &A, usize) -> bool,
    ) {
        for ((s, &i), &(b, r)) in same.iter_mut().zip(at).zip(stored_at) {
            if !*s {
                continue;
            }
            let (i, held) = (i as usize, stored[b]);
            *s = match (new.is_valid(i), held.is_valid(r)) {
                (true, true) => eq(new, i, held, r),
                (valid, held_valid) => valid == held_valid,
            };
        }
    }
    // `typed!(cast)`: the arrays as the type `cast` gives, their values compared with `==`
    // (or with the closure given).
    macro_rules! typed {
        ($cast:ident $(::<$t:ty>)?) => {
            typed!($cast$(::<$t>)?, |a, i, b, r| a.value(i) == b.value(r))
        };
        ($cast:ident $(::<$t:ty>)?, $eq:expr) => {{
            let (Some(new), Some(stored)) = (
                new.$cast$(::<$t>)?(),
                stored
                    .iter()
                    .map(|a| a.$cast$(::<$t>)?())
                    .collect::<Option<Vec<_>>>(),
            ) else {
                return false;
            };
            pairs(new, &stored, at, stored_at, same, $eq);
            true
        }};
    }
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
        Int64Type, TimeUnit, TimestampMicrosecondType,
    };
    match new.data_type() {
        // Floats by their bits: -0.0 is not 0.0, a NaN is the NaN it was.
        DataType::Float64 => typed!(as_primitive_opt::<Float64Type>, |a, i, b, r| {
            a.value(i).to_bits() == b.value(r).to_bits()
        }),
        DataType::Float32 => typed!(as_primitive_opt::<Float32Type>, |a, i, b, r| {
            a.value(i).to_bits() == b.value(r).to_bits()
        }),
        DataType::Int64 => typed!(as_primitive_opt::<Int64Type>),
        DataType::Int32 => typed!(as_primitive_opt::<Int32Type>),
        DataType::Int16 => typed!(as_primitive_opt::<Int16Type>),
        DataType::Int8 => typed!(as_primitive_opt::<Int8Type>),
        DataType::Date32 => typed!(as_primitive_opt::<Date32Type>),
        DataType::Date64 => typed!(as_primitive_opt::<Date64Type>),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            typed!(as_primitive_opt::<TimestampMicrosecondType>)
        }
        DataType::Boolean => typed!(as_boolean_opt),
        DataType::Utf8 => typed!(as_string_opt::<i32>),
        _ => false,
    }
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

    #[test]
    fn strings_booleans_dates_and_integers_are_compared_pair_by_pair_in_place() {
        use arrow::array::{BooleanArray, Date32Array, Int64Array};
        type R<'a> = (&'a str, Option<&'a str>, Option<bool>, i32, i64);
        let batch = |rows: &[R<'_>]| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("s", DataType::Utf8, true),
                Field::new("f", DataType::Boolean, true),
                Field::new("d", DataType::Date32, false),
                Field::new("n", DataType::Int64, false),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                    Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.2))),
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.3))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
                ],
            )
            .unwrap()
        };
        let base: R<'_> = ("same", Some("x"), Some(true), 10, 7);
        let stored = [
            batch(&[base, ("s", Some("x"), Some(true), 10, 7)]),
            batch(&[
                ("empty", Some(""), Some(true), 10, 7),
                ("f", Some("x"), None, 10, 7),
                ("d", Some("x"), Some(true), 10, 7),
                ("n", Some("x"), Some(true), 10, 7),
            ]),
        ];
        let to_write = vec![batch(&[
            ("n", Some("x"), Some(true), 10, 8),
            ("d", Some("x"), Some(true), 11, 7),
            ("f", Some("x"), Some(false), 10, 7),
            ("empty", None, Some(true), 10, 7),
            ("s", Some("y"), Some(true), 10, 7),
            base,
        ])];
        let keys = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let d = diff(&stored, to_write, &[0], &keys).unwrap();
        // An empty string is not a null, a null flag not `false`.
        assert_eq!(ids(&d), ["n", "d", "f", "empty", "s"]);
        assert_eq!(d.unchanged, 1);
    }
}
