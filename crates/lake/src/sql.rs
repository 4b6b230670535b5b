//! Read-only SQL over every table of the lake, with time travel (`table@v12`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use crate::error::{LakeError, LakeResult};
use crate::read::ReadOptions;
use crate::table::{ENGINE_PREFIX, Lake};
use datafusion::datasource::MemTable;

/// A table reference with an optional version, as written in a query (`name` or `name@v3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRef {
    pub name: String,
    pub version: i64,
    /// Byte range of `name@vN` in the query.
    pub span: (usize, usize),
}

/// Finds `ident(.ident)?@vN` occurrences outside quotes.
pub fn find_versioned_refs(sql: &str) -> Vec<VersionedRef> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut in_quote: Option<u8> = None;
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = in_quote {
            if c == q {
                in_quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            in_quote = Some(c);
            i += 1;
            continue;
        }
        if c == b'@' && i + 2 < bytes.len() + 1 && bytes.get(i + 1) == Some(&b'v') {
            let mut start = i;
            while start > 0 && is_ident(bytes[start - 1]) {
                start -= 1;
            }
            let mut end = i + 2;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if start < i && end > i + 2 {
                if let Ok(v) = sql[i + 2..end].parse::<i64>() {
                    out.push(VersionedRef {
                        name: sql[start..i].to_string(),
                        version: v,
                        span: (start, end),
                    });
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn engine_ref(name: &str) -> TableReference {
    match name.strip_prefix(&format!("{ENGINE_PREFIX}/")) {
        Some(rest) => TableReference::partial(ENGINE_PREFIX, rest),
        None => TableReference::bare(name),
    }
}

/// The lake table a query's reference names (`name`, or `_krxflow.name` for an engine
/// table); `None` for any other schema.
fn lake_name(r: &TableReference) -> Option<String> {
    match r.schema() {
        None => Some(r.table().to_string()),
        Some(s) if s == ENGINE_PREFIX => Some(format!("{ENGINE_PREFIX}/{}", r.table())),
        Some(_) => None,
    }
}

/// Registers the lake tables `sql` names (latest versions) in `ctx`: only those, so a query
/// over two tables does not open every table of the lake. An unparsable statement is an
/// `Sql` error, as planning it would be.
async fn register_referenced(lake: &Lake, ctx: &SessionContext, sql: &str) -> LakeResult<()> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let refs = state
        .sql_to_statement(sql, &dialect)
        .and_then(|statement| state.resolve_table_references(&statement))
        .map_err(|e| LakeError::Sql(e.to_string()))?;
    let mut names: Vec<String> = refs.iter().filter_map(lake_name).collect();
    names.sort();
    names.dedup();
    for name in names {
        if ctx.table_exist(engine_ref(&name)).unwrap_or(false) {
            continue;
        }
        if let Some(table) = lake.load(&name, None).await? {
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            ctx.register_table(engine_ref(&name), provider)?;
        }
    }
    Ok(())
}

/// Runs one read-only statement. `name@vN` reads version N of a table.
pub async fn query(lake: &Lake, sql: &str) -> LakeResult<(SchemaRef, Vec<RecordBatch>)> {
    let ctx = lake.datafusion_session();
    if let Some(catalog) = ctx.catalog("datafusion") {
        catalog
            .register_schema(ENGINE_PREFIX, Arc::new(MemorySchemaProvider::new()))
            .map_err(LakeError::DataFusion)?;
    }
    let refs = find_versioned_refs(sql);
    let mut rewritten = String::with_capacity(sql.len());
    let mut last = 0;
    for r in &refs {
        let lake_name = r.name.replacen('.', "/", 1);
        let read = lake
            .read(
                &lake_name,
                ReadOptions {
                    as_of: None,
                    since: None,
                    version: Some(r.version),
                    columns: None,
                },
            )
            .await?;
        let alias = format!("{}__v{}", r.name.replace('.', "__"), r.version);
        let mem = MemTable::try_new(read.schema.clone(), vec![read.batches])?;
        ctx.register_table(TableReference::bare(alias.clone()), Arc::new(mem))?;
        rewritten.push_str(&sql[last..r.span.0]);
        rewritten.push_str(&alias);
        last = r.span.1;
    }
    rewritten.push_str(&sql[last..]);
    register_referenced(lake, &ctx, &rewritten).await?;
    let opts = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&rewritten, opts)
        .await
        .map_err(|e| LakeError::Sql(e.to_string()))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    // A failed read of the store stays what it is (transient: a task retries it); any other
    // failure of the query is the query's.
    let batches = df.collect().await.map_err(|e| {
        let e = LakeError::DataFusion(e);
        if e.is_transient() {
            e
        } else {
            LakeError::Sql(e.to_string())
        }
    })?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_refs_are_found_outside_quotes() {
        let q = "SELECT * FROM features@v3 JOIN _krxflow.runs@v12 r ON 1=1 WHERE x = 'a@v1'";
        let refs = find_versioned_refs(q);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].name, "features");
        assert_eq!(refs[0].version, 3);
        assert_eq!(refs[1].name, "_krxflow.runs");
        assert_eq!(&q[refs[1].span.0..refs[1].span.1], "_krxflow.runs@v12");
    }
}
