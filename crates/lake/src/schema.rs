//! Physical <-> declared schema mapping.
//!
//! Delta stores timestamps as UTC microseconds and has no unsigned or view types; DataFusion
//! reads strings as `Utf8View`. Writes cast declared batches to the physical schema, reads cast
//! back to the declared schema, so operators only ever see the catalog's types.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

/// The type a declared type is stored as.
pub fn physical_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Timestamp(_, Some(_)) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::List(f) | DataType::LargeList(f) => DataType::List(Arc::new(physical_field(f))),
        DataType::FixedSizeList(f, _) => DataType::List(Arc::new(physical_field(f))),
        other => other.clone(),
    }
}

fn physical_field(f: &Field) -> Field {
    Field::new(f.name(), physical_type(f.data_type()), f.is_nullable())
}

pub fn physical_schema(declared: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        declared
            .fields()
            .iter()
            .map(|f| physical_field(f))
            .collect::<Vec<_>>(),
    ))
}

/// Casts `batch` to `target`, matching columns by name. Missing nullable columns become null;
/// a missing non-nullable column or a failed cast is an error naming the column.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        match batch.schema().index_of(f.name()) {
            Ok(i) => {
                let col = batch.column(i);
                if col.data_type() == f.data_type() {
                    cols.push(col.clone());
                } else {
                    let c = cast_with_options(col, f.data_type(), &opts).map_err(|e| {
                        ArrowError::CastError(format!(
                            "column `{}` ({} -> {}): {e}",
                            f.name(),
                            col.data_type(),
                            f.data_type()
                        ))
                    })?;
                    cols.push(c);
                }
            }
            Err(_) if f.is_nullable() => cols.push(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
            Err(_) => {
                return Err(ArrowError::SchemaError(format!(
                    "column `{}` is missing and not nullable",
                    f.name()
                )));
            }
        }
    }
    RecordBatch::try_new_with_options(
        target.clone(),
        cols,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};

    #[test]
    fn kst_timestamps_round_trip_through_the_physical_schema() {
        let declared = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("Asia/Seoul".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            declared.clone(),
            vec![
                Arc::new(StringArray::from(vec!["005930"])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![1_700_000_000_000])
                        .with_timezone("Asia/Seoul"),
                ),
            ],
        )
        .unwrap();
        let phys = conform(&batch, &physical_schema(&declared)).unwrap();
        assert_eq!(
            phys.schema().field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let back = conform(&phys, &declared).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn missing_required_column_is_named() {
        let declared = Arc::new(Schema::new(vec![Field::new(
            "close",
            DataType::Float64,
            false,
        )]));
        let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
        let err = conform(&empty, &declared).unwrap_err().to_string();
        assert!(err.contains("close"), "{err}");
    }
}
