//! Parquet panels (`source: panel` with a `.parquet` file): every column rendered as text and
//! routed like a CSV row.

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;

use super::checks::RawRow;
use super::csv::{Collector, Columns, Window, header_index};

/// Reads a Parquet panel: every column is rendered as text and validated like a CSV row.
pub(super) fn read_parquet(
    file: std::fs::File,
    cols: &Columns,
    w: &Window<'_>,
    out: &mut Collector,
) -> Result<(), String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let schema = batch.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let find = |want: &str| {
            header_index(&names, want).ok_or_else(|| format!("column `{want}` not found"))
        };
        let idx = [
            find(&cols.code)?,
            find(&cols.date)?,
            find(&cols.open)?,
            find(&cols.high)?,
            find(&cols.low)?,
            find(&cols.close)?,
            find(&cols.volume)?,
        ];
        let text: Vec<ArrayRef> = idx
            .iter()
            .map(|&i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let strs: Vec<&StringArray> = text
            .iter()
            .map(|a| {
                a.as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or("cast to text failed")
            })
            .collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let v = |k: usize| {
                if strs[k].is_null(r) {
                    ""
                } else {
                    strs[k].value(r)
                }
            };
            let raw = (0..7).map(v).collect::<Vec<_>>().join(",");
            let row = RawRow {
                code: v(0),
                date: v(1),
                open: v(2),
                high: v(3),
                low: v(4),
                close: v(5),
                volume: v(6),
            };
            out.push(&row, &raw, w);
        }
    }
    Ok(())
}
