//! Walking lineage back from a table version to the sources it was built from.

use std::collections::HashSet;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use datafusion::prelude::{SessionContext, col, lit};
use krxflow_lake::{Lake, ReadOptions};

use crate::error::ExecResult;
use crate::records::{LINEAGE, LineageRecord, lineage_from_batches};

/// One table version in a lineage tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LineageNode {
    pub table: String,
    pub version: i64,
    /// The task output that committed this version, or the last one before it when a
    /// compaction (which changes no row) committed it (`None` for an absent optional input or
    /// a table krxflow never wrote).
    pub producer: Option<LineageRecord>,
    pub inputs: Vec<LineageNode>,
    /// Rows of this version matching `--key` (when asked).
    pub key_rows: Option<usize>,
}

/// Reads every lineage record (the table is small: one row per committed output).
pub async fn all_records(lake: &Lake) -> ExecResult<Vec<LineageRecord>> {
    match lake.read(LINEAGE, ReadOptions::default()).await {
        Ok(read) => Ok(lineage_from_batches(&read.batches)),
        Err(krxflow_lake::LakeError::NoSuchTable(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Builds the lineage tree of `table`: its latest committed output (for `ds` when given),
/// then recursively the exact versions of every input read. Inputs committed by a run for
/// another partition (the model a weekly retrain registered, yesterday's weights) appear with
/// their producer but are not expanded: a loop like predictions -> outcomes -> weights ->
/// predictions would otherwise walk every earlier day. `krxflow lineage <table> --ds <that
/// day>` continues from there.
pub fn build_tree(
    records: &[LineageRecord],
    table: &str,
    ds: Option<NaiveDate>,
) -> Option<LineageNode> {
    let root = records
        .iter()
        .filter(|r| r.output_table == table && ds.is_none_or(|d| r.ds == d))
        .max_by_key(|r| (r.output_version, r.created))?;
    let mut visited = HashSet::new();
    Some(node_for(records, root, root.ds, &mut visited))
}

fn node_for(
    records: &[LineageRecord],
    rec: &LineageRecord,
    partition: NaiveDate,
    visited: &mut HashSet<(String, i64)>,
) -> LineageNode {
    visited.insert((rec.output_table.clone(), rec.output_version));
    let mut inputs = Vec::new();
    let expand = rec.ds == partition;
    for input in rec.inputs.iter().filter(|_| expand) {
        if visited.contains(&(input.table.clone(), input.version)) {
            continue;
        }
        // The record that committed exactly this version (the earliest if several runs
        // found nothing to change and reported the same version); else the last output
        // committed before it: a compaction commits a version that changes no row.
        let producer = records
            .iter()
            .filter(|r| r.output_table == input.table && r.output_version == input.version)
            .min_by_key(|r| r.created)
            .or_else(|| {
                records
                    .iter()
                    .filter(|r| r.output_table == input.table && r.output_version < input.version)
                    .max_by_key(|r| (r.output_version, r.created))
            });
        match producer {
            Some(p) => inputs.push(node_for(records, p, partition, visited)),
            None => inputs.push(LineageNode {
                table: input.table.clone(),
                version: input.version,
                producer: None,
                inputs: Vec::new(),
                key_rows: None,
            }),
        }
    }
    LineageNode {
        table: rec.output_table.clone(),
        version: rec.output_version,
        producer: Some(rec.clone()),
        inputs,
        key_rows: None,
    }
}

/// Rows of `table@version` whose key column (the first catalog key, else `code`) equals `key`,
/// and whose date column equals `ds` when given.
pub async fn rows_for_key(
    lake: &Lake,
    table: &str,
    version: i64,
    key: &str,
    ds: Option<NaiveDate>,
) -> ExecResult<Vec<RecordBatch>> {
    let read = lake
        .read(
            table,
            ReadOptions {
                as_of: None,
                since: None,
                version: Some(version),
                columns: None,
            },
        )
        .await?;
    let def = lake.catalog().get(table);
    let key_col = def
        .and_then(|d| d.keys.first().cloned())
        .unwrap_or_else(|| "code".to_string());
    if read.schema.index_of(&key_col).is_err() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    let mut df = ctx.read_batches(read.batches)?;
    df = df.filter(col(format!("\"{key_col}\"")).eq(lit(key)))?;
    if let (Some(ds), Some(date_col)) = (ds, def.and_then(|d| d.date_column.clone())) {
        df = df.filter(col(format!("\"{date_col}\"")).eq(lit(
            datafusion::scalar::ScalarValue::Date32(Some(crate::records::days(ds))),
        )))?;
    }
    Ok(df.collect().await?)
}

/// Fills `key_rows` of every node.
pub async fn annotate_keys(
    lake: &Lake,
    node: &mut LineageNode,
    key: &str,
    ds: Option<NaiveDate>,
) -> ExecResult<()> {
    annotate_rec(lake, node, key, ds).await
}

fn annotate_rec<'a>(
    lake: &'a Lake,
    node: &'a mut LineageNode,
    key: &'a str,
    ds: Option<NaiveDate>,
) -> futures::future::BoxFuture<'a, ExecResult<()>> {
    Box::pin(async move {
        if node.version >= 0 {
            let rows = rows_for_key(lake, &node.table, node.version, key, ds).await?;
            node.key_rows = Some(rows.iter().map(|b| b.num_rows()).sum());
        }
        for child in &mut node.inputs {
            annotate_rec(lake, child, key, ds).await?;
        }
        Ok(())
    })
}
