//! Sets of rows in arrow's row format, borrowed from the converted [`Rows`] instead of copied
//! one allocation per row, and hashed with foldhash (the rows come from the lake and the task,
//! not from an adversary). The key checks put the keys to write in one (duplicates, and whether
//! a stored key is among them); the merge diff keys its own map the same way (`super::diff`).

use std::collections::HashSet;

use arrow::row::Rows;

pub(super) type RowSet<'a> = HashSet<&'a [u8], foldhash::fast::RandomState>;

/// Every row of `rows`, as a set.
pub(super) fn row_set<'a>(rows: &'a [Rows]) -> RowSet<'a> {
    let mut set = RowSet::with_capacity_and_hasher(
        rows.iter().map(Rows::num_rows).sum(),
        foldhash::fast::RandomState::default(),
    );
    set.extend(rows.iter().flat_map(|r| r.iter().map(|r| r.data())));
    set
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::row::{RowConverter, SortField};

    use super::*;

    #[test]
    fn a_row_is_found_by_its_values_across_batches_and_only_then() {
        let conv = RowConverter::new(vec![
            SortField::new(DataType::Utf8),
            SortField::new(DataType::Int32),
        ])
        .unwrap();
        let batch = |codes: &[&str], n: &[i32]| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from(codes.to_vec())),
                Arc::new(Int32Array::from(n.to_vec())),
            ]
        };
        let held = [
            conv.convert_columns(&batch(&["a", "b"], &[1, 2])).unwrap(),
            conv.convert_columns(&batch(&["c"], &[3])).unwrap(),
        ];
        let set = row_set(&held);
        assert_eq!(set.len(), 3);
        let probe = conv
            .convert_columns(&batch(&["a", "c", "a", "ab"], &[1, 3, 2, 1]))
            .unwrap();
        let found: Vec<bool> = probe.iter().map(|r| set.contains(r.data())).collect();
        assert_eq!(found, [true, true, false, false]);
    }
}
