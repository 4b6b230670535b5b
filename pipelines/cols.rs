//! Typed access to the columns of input batches, with an error that names the column.
//!
//! Operators read lake tables whose schemas the catalog enforces, so a wrong type is a
//! programming or catalog error; it still surfaces as a permanent task failure, never a panic.

use arrow::array::{Array, Date32Array, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use krxflow_core::{OpError, OpResult};

/// Rows over an input's batches (one per data file, as read).
pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Column `name` of `b` downcast to `T`; `what` names the expected type in the error.
pub fn typed<'a, T: Array + 'static>(
    b: &'a RecordBatch,
    name: &str,
    what: &str,
) -> OpResult<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| OpError::permanent(format!("column `{name}` missing or not {what}")))
}

pub fn str_col<'a>(b: &'a RecordBatch, name: &str) -> OpResult<&'a StringArray> {
    typed(b, name, "Utf8")
}

pub fn date_col<'a>(b: &'a RecordBatch, name: &str) -> OpResult<&'a Date32Array> {
    typed(b, name, "Date32")
}

pub fn f64_col<'a>(b: &'a RecordBatch, name: &str) -> OpResult<&'a Float64Array> {
    typed(b, name, "Float64")
}

pub fn ts_col<'a>(b: &'a RecordBatch, name: &str) -> OpResult<&'a TimestampMillisecondArray> {
    typed(b, name, "Timestamp(ms)")
}

/// Ids of the `scores` input (a `news_scores` table) already scored by `model`: scorers skip
/// them, so a re-run scores only new articles and never one twice.
pub fn scored_ids(
    scores: Option<&RecordBatch>,
    model: &str,
) -> OpResult<std::collections::HashSet<String>> {
    let mut done = std::collections::HashSet::new();
    let Some(s) = scores.filter(|s| s.num_rows() > 0) else {
        return Ok(done);
    };
    let (ids, models) = (str_col(s, "id")?, str_col(s, "model")?);
    for i in 0..s.num_rows() {
        if models.value(i) == model {
            done.insert(ids.value(i).to_string());
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_missing_or_mistyped_column_is_an_error_naming_it() {
        let b = RecordBatch::try_from_iter([(
            "id",
            Arc::new(StringArray::from(vec!["a"])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        assert!(str_col(&b, "id").is_ok());
        let e = f64_col(&b, "id").unwrap_err().to_string();
        assert!(e.contains("`id`") && e.contains("Float64"), "{e}");
        assert!(
            date_col(&b, "date")
                .unwrap_err()
                .to_string()
                .contains("`date`")
        );
    }

    #[test]
    fn scored_ids_keep_only_the_named_model() {
        let b = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as arrow::array::ArrayRef,
            ),
            ("model", Arc::new(StringArray::from(vec!["m1", "m2", "m1"]))),
        ])
        .unwrap();
        let done = scored_ids(Some(&b), "m1").unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.contains("a") && done.contains("c") && !done.contains("b"));
        assert!(scored_ids(None, "m1").unwrap().is_empty());
    }
}
