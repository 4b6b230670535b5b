//! Read-only SQL over every table of the lake, with time travel (`table@v12`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;

use crate::cached_table::CachedTable;
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

/// Registers the lake tables `statement` names (latest versions) in `ctx`: only those, so a
/// query over two tables does not open every table of the lake. `cached`: a catalog table is
/// read through the lake's scan and cache ([`CachedTable`]) rather than Delta's provider.
async fn register_referenced(
    lake: &Lake,
    ctx: &SessionContext,
    statement: &Statement,
    cached: bool,
) -> LakeResult<()> {
    let refs = ctx
        .state()
        .resolve_table_references(statement)
        .map_err(|e| LakeError::Sql(e.to_string()))?;
    let mut names: Vec<String> = refs.iter().filter_map(lake_name).collect();
    names.sort();
    names.dedup();
    for name in names {
        if ctx.table_exist(engine_ref(&name)).unwrap_or(false) {
            continue;
        }
        // A catalog table that does not exist yet fails the query when it is read.
        if cached && let Some(def) = lake.catalog().get(&name) {
            let table = CachedTable {
                lake: lake.clone(),
                name: name.clone(),
                schema: def.schema.clone(),
                date_column: def.date_column.clone(),
            };
            register_once(ctx, &name, Arc::new(table))?;
            continue;
        }
        if let Some(table) = lake.load(&name, None).await? {
            table.update_datafusion_session(&ctx.state())?;
            let provider = table.table_provider().await?;
            register_once(ctx, &name, provider)?;
        }
    }
    Ok(())
}

/// Registers `provider` as lake table `name` unless a statement running at the same time in
/// the session registered it first (DataFusion refuses a second registration).
fn register_once(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> LakeResult<()> {
    match ctx.register_table(engine_ref(name), provider) {
        Ok(_) => Ok(()),
        Err(_) if ctx.table_exist(engine_ref(name)).unwrap_or(false) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs one read-only statement. `name@vN` reads version N of a table.
pub async fn query(lake: &Lake, sql: &str) -> LakeResult<(SchemaRef, Vec<RecordBatch>)> {
    Session::new(lake)?.query(sql).await
}

/// Several read-only statements over one lake (a task's checks), one after another or at
/// once: a table is registered once, for the first statement that names it.
pub struct Session {
    lake: Lake,
    ctx: SessionContext,
    cached: bool,
}

impl Session {
    /// Tables read by Delta's provider, at the version of the first statement naming them
    /// (what `krxflow sql` reads).
    pub fn new(lake: &Lake) -> LakeResult<Self> {
        Self::with(lake, false)
    }

    /// Catalog tables read through the lake's scan and its cache of decoded columns, each
    /// statement reading their latest version: many small queries over the same tables (a
    /// task's checks) cost a fraction of Delta's provider's each (see [`CachedTable`]).
    pub fn cached(lake: &Lake) -> LakeResult<Self> {
        Self::with(lake, true)
    }

    fn with(lake: &Lake, cached: bool) -> LakeResult<Self> {
        let ctx = lake.datafusion_session();
        if let Some(catalog) = ctx.catalog("datafusion") {
            catalog
                .register_schema(ENGINE_PREFIX, Arc::new(MemorySchemaProvider::new()))
                .map_err(LakeError::DataFusion)?;
        }
        Ok(Self {
            lake: lake.clone(),
            ctx,
            cached,
        })
    }

    /// Runs one read-only statement. `name@vN` reads version N of a table.
    pub async fn query(&self, sql: &str) -> LakeResult<(SchemaRef, Vec<RecordBatch>)> {
        let (lake, ctx, cached) = (&self.lake, &self.ctx, self.cached);
        let refs = find_versioned_refs(sql);
        let mut rewritten = String::with_capacity(sql.len());
        let mut last = 0;
        for r in &refs {
            let alias = format!("{}__v{}", r.name.replace('.', "__"), r.version);
            if !ctx
                .table_exist(TableReference::bare(alias.clone()))
                .unwrap_or(false)
            {
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
                let mem = MemTable::try_new(read.schema.clone(), vec![read.batches])?;
                ctx.register_table(TableReference::bare(alias.clone()), Arc::new(mem))?;
            }
            rewritten.push_str(&sql[last..r.span.0]);
            rewritten.push_str(&alias);
            last = r.span.1;
        }
        rewritten.push_str(&sql[last..]);
        let t0 = std::time::Instant::now();
        // Parsed once: its table references decide what to register, then it is planned (an
        // unparsable or unplannable statement is the query's error).
        let sql_error = |e: datafusion::error::DataFusionError| LakeError::Sql(e.to_string());
        let dialect = ctx.state().config().options().sql_parser.dialect;
        let statement = ctx
            .state()
            .sql_to_statement(&rewritten, &dialect)
            .map_err(sql_error)?;
        register_referenced(lake, ctx, &statement, cached).await?;
        let registered = t0.elapsed();
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(sql_error)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(sql_error)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(sql_error)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let planned = t0.elapsed();
        // A failed read of the store stays what it is (transient: a task retries it); any
        // other failure of the query is the query's.
        let batches = df.collect().await.map_err(|e| {
            let e = LakeError::DataFusion(e);
            if e.is_transient() {
                e
            } else {
                LakeError::Sql(e.to_string())
            }
        })?;
        tracing::debug!(
            register_ms = registered.as_secs_f64() * 1e3,
            plan_ms = (planned - registered).as_secs_f64() * 1e3,
            run_ms = (t0.elapsed() - planned).as_secs_f64() * 1e3,
            "sql"
        );
        Ok((schema, batches))
    }
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
