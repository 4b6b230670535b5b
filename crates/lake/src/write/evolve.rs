//! A declared column the stored table lacks (a column added to the catalog after the table was
//! first written, such as a new feature): added to the table's schema by one Delta commit
//! before the write, so the write lands and the rows written before it read the column as
//! null. A lacking column that is not nullable is refused: the old rows could not hold it.

use arrow::datatypes::Schema;
use deltalake::DeltaTable;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use krxflow_core::TableDef;

use crate::error::{LakeError, LakeResult};
use crate::log_cleanup::commit_properties;

/// `table` (existing) with every column of `physical` it lacks added; the same table when it
/// lacks none.
pub(super) async fn add_declared_columns(
    def: &TableDef,
    table: DeltaTable,
    physical: &Schema,
) -> LakeResult<DeltaTable> {
    let stored = table.snapshot()?.schema();
    let lacking: Vec<_> = physical
        .fields()
        .iter()
        .filter(|f| stored.field(f.name()).is_none())
        .collect();
    if lacking.is_empty() {
        return Ok(table);
    }
    if let Some(f) = lacking.iter().find(|f| !f.is_nullable()) {
        return Err(LakeError::InvalidData {
            table: def.name.clone(),
            message: format!(
                "column `{}` is declared but the stored table lacks it, and it is not \
                 nullable: the rows already written cannot hold it",
                f.name()
            ),
        });
    }
    let fields = lacking
        .iter()
        .map(|f| StructField::try_from_arrow(f.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        table = %def.name,
        columns = ?lacking.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "adding declared columns to the stored table"
    );
    Ok(table
        .add_columns()
        .with_fields(fields)
        .with_commit_properties(commit_properties())
        .await?)
}
