//! Delta table access: open, read as of a date or version, write in one commit.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, Date32Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use chrono::NaiveDate;
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use krxflow_core::{TableDef, WriteMode};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

use crate::catalog::Catalog;
use crate::error::{LakeError, LakeResult};
use crate::schema::{conform, physical_schema};

/// The folder engine tables live in.
pub const ENGINE_PREFIX: &str = "_krxflow";

/// A lake rooted at a URL, with its catalog.
#[derive(Clone)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    store_prefix: StorePath,
    catalog: Arc<Catalog>,
    /// One lock per table: writers in this process commit to a table one after the other
    /// instead of racing Delta's optimistic concurrency (other processes still can: their
    /// conflicts surface as transient errors and are retried).
    write_locks:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// The latest state loaded of each table: the next load reads only the commits since,
    /// instead of replaying the log from its last checkpoint (up to 100 commits) every time.
    snapshots: Arc<std::sync::Mutex<std::collections::HashMap<String, DeltaTable>>>,
}

/// What a write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub table: String,
    /// Delta version after the write (the version a reader of this output sees).
    pub version: i64,
    /// Rows committed: for a merge, only the new and changed ones.
    pub rows: usize,
    /// Rows given to a merge that the table already held exactly (same key, same values):
    /// skipped, so a daily run that re-sends an overlap window rewrites no file for them.
    pub unchanged: usize,
    /// False when nothing needed committing (e.g. a merge of zero rows).
    pub committed: bool,
}

/// Rows to merge, split against what the table holds.
#[derive(Default)]
struct Changes {
    /// New and changed rows.
    rows: Vec<RecordBatch>,
    /// Rows the table already held exactly.
    unchanged: usize,
    /// When no row to write has a key the table holds: the date range checked, as a predicate.
    insert_only: Option<String>,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub table: String,
    pub files_before: usize,
    pub files_removed: u64,
    pub files_added: u64,
    /// The version the compaction committed.
    pub version: i64,
}

/// Data files a table may reach before a write compacts it: a daily partition adds a small
/// file per table, and a read opens every file its date filter cannot skip.
pub const COMPACT_AT_FILES: usize = 16;

/// How to read a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Only rows whose date column is `<= as_of` (no effect on tables without a date column).
    pub as_of: Option<NaiveDate>,
    /// Only rows whose date column is `>= since` (no effect on tables without a date column).
    pub since: Option<NaiveDate>,
    /// A specific Delta version (time travel); latest when `None`.
    pub version: Option<i64>,
}

/// Rows of a table as read, with the version they came from.
#[derive(Debug, Clone)]
pub struct TableRead {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub version: i64,
}

impl TableRead {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The loaded version of a table as a signed number (-1 when not loaded).
pub fn version_of(t: &DeltaTable) -> i64 {
    t.version().map(|v| v as i64).unwrap_or(-1)
}

fn date32(d: NaiveDate) -> i32 {
    // Days since 1970-01-01; every NaiveDate in range fits in i32.
    (d - NaiveDate::default()).num_days() as i32
}

impl Lake {
    /// Opens (creating if local and absent) the lake at `location`: a path, a `file://` URL or
    /// an `s3://bucket/prefix` URL.
    pub fn open(location: &str, catalog: Catalog) -> LakeResult<Self> {
        let root = if location.contains("://") {
            let mut u = Url::parse(location)
                .map_err(|e| LakeError::BadLocation(location.into(), e.to_string()))?;
            if !u.path().ends_with('/') {
                u.set_path(&format!("{}/", u.path()));
            }
            u
        } else {
            std::fs::create_dir_all(location)?;
            let abs = std::fs::canonicalize(location)?;
            Url::from_directory_path(&abs).map_err(|_| {
                LakeError::BadLocation(location.into(), "not an absolute path".into())
            })?
        };
        match root.scheme() {
            "file" => {
                if let Ok(p) = root.to_file_path() {
                    std::fs::create_dir_all(p)?;
                }
            }
            "s3" | "s3a" => {
                #[cfg(feature = "s3")]
                deltalake::aws::register_handlers(None);
                #[cfg(not(feature = "s3"))]
                return Err(LakeError::BadLocation(
                    location.into(),
                    "this krxflow was built without S3 support: rebuild with `--features s3`"
                        .into(),
                ));
            }
            "memory" => {}
            other => {
                return Err(LakeError::BadLocation(
                    location.into(),
                    format!("unsupported scheme `{other}` (use a path, file:// or s3://)"),
                ));
            }
        }
        let (store, store_prefix) = object_store::parse_url_opts(
            &root,
            std::env::vars().filter(|(k, _)| k.starts_with("AWS_")),
        )?;
        Ok(Self {
            root,
            store: Arc::from(store),
            store_prefix,
            catalog: Arc::new(catalog),
            write_locks: Default::default(),
            snapshots: Default::default(),
        })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The object store under the lake root (models and other artifacts live there too).
    pub fn store(&self) -> (Arc<dyn ObjectStore>, StorePath) {
        (self.store.clone(), self.store_prefix.clone())
    }

    pub fn table_url(&self, name: &str) -> LakeResult<Url> {
        if name.is_empty()
            || name.starts_with('/')
            || name.contains("..")
            || name.contains('@')
            || name.chars().any(|c| c.is_whitespace())
        {
            return Err(LakeError::BadLocation(
                name.into(),
                "invalid table name".into(),
            ));
        }
        self.root
            .join(&format!("{name}/"))
            .map_err(|e| LakeError::BadLocation(name.into(), e.to_string()))
    }

    /// The table at its latest version (or `version`), `None` when it does not exist yet.
    pub async fn load(&self, name: &str, version: Option<i64>) -> LakeResult<Option<DeltaTable>> {
        let url = self.table_url(name)?;
        if url.scheme() == "file" {
            let log = url
                .to_file_path()
                .map_err(|_| LakeError::BadLocation(url.to_string(), "not a path".into()))?
                .join("_delta_log");
            if !log.exists() {
                self.forget(name);
                return Ok(None);
            }
        }
        let Some(v) = version else {
            let table = self.latest(name).await?;
            return Ok(table.version().is_some().then_some(table));
        };
        let mut table = DeltaTable::try_from_url(url).await?;
        if table.version().is_none() {
            return Ok(None);
        }
        let v = u64::try_from(v)
            .map_err(|_| LakeError::BadLocation(name.into(), format!("invalid version {v}")))?;
        table.load_version(v).await?;
        Ok(Some(table))
    }

    /// The table at its latest version (without state when it does not exist yet): the cached
    /// state brought up to date with the commits since, else loaded from the log.
    async fn latest(&self, name: &str) -> LakeResult<DeltaTable> {
        let cached = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(mut table) = cached {
            match table.update_incremental(None).await {
                Ok(()) => {
                    self.remember(name, &table);
                    return Ok(table);
                }
                // E.g. the table was deleted and created again: load it afresh.
                Err(e) => tracing::debug!(table = name, error = %e, "cached state not updatable"),
            }
        }
        let table = DeltaTable::try_from_url(self.table_url(name)?).await?;
        if table.version().is_some() {
            self.remember(name, &table);
        }
        Ok(table)
    }

    fn remember(&self, name: &str, table: &DeltaTable) {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), table.clone());
    }

    fn forget(&self, name: &str) {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Latest version of a table, `None` when absent.
    pub async fn version(&self, name: &str) -> LakeResult<Option<i64>> {
        Ok(self.load(name, None).await?.map(|t| version_of(&t)))
    }

    /// The declared schema (catalog) or, for undeclared tables, the stored one.
    pub async fn table_schema(&self, name: &str) -> LakeResult<Option<SchemaRef>> {
        if let Some(def) = self.catalog.get(name) {
            return Ok(Some(def.schema.clone()));
        }
        match self.load(name, None).await? {
            Some(t) => {
                let provider = t.table_provider().await?;
                Ok(Some(physical_schema(provider.schema().as_ref())))
            }
            None => Ok(None),
        }
    }

    /// Every table in the lake (engine tables as `_krxflow/NAME`), sorted.
    pub async fn list_tables(&self) -> LakeResult<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.store_prefix.clone(), String::new(), 0usize)];
        while let Some((prefix, rel, depth)) = stack.pop() {
            let listing = self.store.list_with_delimiter(Some(&prefix)).await?;
            let has_log = listing
                .common_prefixes
                .iter()
                .any(|p| p.filename() == Some("_delta_log"));
            if has_log && !rel.is_empty() {
                out.push(rel);
                continue;
            }
            if depth >= 2 {
                continue;
            }
            for p in listing.common_prefixes {
                let Some(name) = p.filename() else { continue };
                if name.starts_with('.') || name == "models" {
                    continue;
                }
                let child = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((p.clone(), child, depth + 1));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads a table, restricted as `opts` says, in its declared schema.
    pub async fn read(&self, name: &str, opts: ReadOptions) -> LakeResult<TableRead> {
        let table = self
            .load(name, opts.version)
            .await?
            .ok_or_else(|| LakeError::NoSuchTable(name.to_string()))?;
        let version = version_of(&table);
        let provider = table.table_provider().await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        let declared = match self.catalog.get(name) {
            Some(def) => def.schema.clone(),
            None => physical_schema(provider.schema().as_ref()),
        };
        let mut df = ctx.read_table(provider)?;
        if let (Some(ds), Some(date_col)) = (
            opts.as_of,
            self.catalog.get(name).and_then(|d| d.date_column.clone()),
        ) {
            df = df.filter(
                col(format!("\"{date_col}\"")).lt_eq(lit(ScalarValue::Date32(Some(date32(ds))))),
            )?;
        }
        if let (Some(from), Some(date_col)) = (
            opts.since,
            self.catalog.get(name).and_then(|d| d.date_column.clone()),
        ) {
            df = df.filter(
                col(format!("\"{date_col}\"")).gt_eq(lit(ScalarValue::Date32(Some(date32(from))))),
            )?;
        }
        let batches = df.collect().await?;
        let batches = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(b, &declared))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TableRead {
            schema: declared,
            batches,
            version,
        })
    }

    /// The latest value of `date_col` on or before `on_or_before` (a watermark for incremental
    /// operators); `None` when the table or such rows do not exist. Reads only that column.
    pub async fn max_date(
        &self,
        name: &str,
        date_col: &str,
        on_or_before: NaiveDate,
    ) -> LakeResult<Option<NaiveDate>> {
        let Some(table) = self.load(name, None).await? else {
            return Ok(None);
        };
        if let Some(max) = max_date_from_stats(&table, date_col, date32(on_or_before)) {
            return Ok(max.and_then(from_date32));
        }
        let provider = table.table_provider().await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        let c = col(format!("\"{date_col}\""));
        let df = ctx
            .read_table(provider)?
            .filter(
                c.clone()
                    .lt_eq(lit(ScalarValue::Date32(Some(date32(on_or_before))))),
            )?
            .aggregate(
                vec![],
                vec![datafusion::functions_aggregate::expr_fn::max(c)],
            )?;
        let batches = df.collect().await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| ScalarValue::try_from_array(b.column(0), 0))
            .transpose()?;
        Ok(match value {
            Some(ScalarValue::Date32(Some(d))) => from_date32(d),
            _ => None,
        })
    }

    /// Checks, without writing, everything [`Lake::write`] would reject in `batches`: schema,
    /// null or duplicate merge keys, rows outside the replaced partition. The executor
    /// validates every output of a task before committing any, so a task with several outputs
    /// does not leave one committed and the other refused.
    pub fn validate_write(
        &self,
        def: &TableDef,
        batches: &[RecordBatch],
        mode: WriteMode,
        ds: Option<NaiveDate>,
    ) -> LakeResult<()> {
        let invalid = |message: String| LakeError::InvalidData {
            table: def.name.clone(),
            message,
        };
        let physical = physical_schema(&def.schema);
        let mut phys = Vec::with_capacity(batches.len());
        for b in batches {
            let declared = conform(b, &def.schema).map_err(|e| invalid(e.to_string()))?;
            phys.push(conform(&declared, &physical).map_err(|e| invalid(e.to_string()))?);
        }
        match mode {
            WriteMode::Merge => {
                if def.keys.is_empty() {
                    return Err(invalid("merge needs keys".into()));
                }
                check_unique_keys(&phys, &def.keys).map_err(invalid)
            }
            WriteMode::ReplacePartition => {
                let part = def
                    .partition_column
                    .as_deref()
                    .ok_or_else(|| invalid("replace_partition needs a partition column".into()))?;
                let ds = ds.ok_or_else(|| invalid("replace_partition needs a ds".into()))?;
                check_partition(&phys, part, ds).map_err(invalid)
            }
            _ => Ok(()),
        }
    }

    /// Writes `batches` to the table `def` in one Delta commit. `ds` is required for
    /// `replace_partition`. `meta` is stored in the commit info (run id, task, ...). A table
    /// that holds [`COMPACT_AT_FILES`] files after the commit is compacted (see
    /// [`Lake::compact`]); the outcome's version is still the one this write committed.
    pub async fn write(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        ds: Option<NaiveDate>,
        meta: BTreeMap<String, String>,
    ) -> LakeResult<WriteOutcome> {
        let lock = self.write_lock(&def.name);
        let _writing = lock.lock().await;
        let (outcome, table) = self.write_locked(def, batches, mode, ds, meta).await?;
        if let Some(table) = table {
            let files = table
                .snapshot()
                .map(|s| s.log_data().num_files())
                .unwrap_or(0);
            if files >= COMPACT_AT_FILES
                && let Err(e) = self.optimize(&def.name, table, files).await
            {
                // The write is committed; a failed compaction only leaves the small files.
                tracing::warn!(table = %def.name, error = %e, "compaction failed");
            }
        }
        Ok(outcome)
    }

    /// Compacts `name` when it holds at least `min_files` data files: Delta's optimize
    /// bin-packs them into few large ones in one commit that changes no row (earlier versions
    /// stay readable). `None` when the table is absent or has fewer files.
    pub async fn compact(&self, name: &str, min_files: usize) -> LakeResult<Option<Compaction>> {
        let lock = self.write_lock(name);
        let _writing = lock.lock().await;
        let Some(table) = self.load(name, None).await? else {
            return Ok(None);
        };
        let files = table.snapshot()?.log_data().num_files();
        if files < min_files.max(2) {
            return Ok(None);
        }
        self.optimize(name, table, files).await.map(Some)
    }

    async fn optimize(
        &self,
        name: &str,
        table: DeltaTable,
        files: usize,
    ) -> LakeResult<Compaction> {
        let commit = CommitProperties::default().with_metadata([(
            "krxflow.compaction".to_string(),
            serde_json::Value::Bool(true),
        )]);
        let (table, metrics) = table
            .optimize()
            .with_writer_properties(writer_properties())
            .with_commit_properties(commit)
            .await?;
        self.remember(name, &table);
        Ok(Compaction {
            table: name.to_string(),
            files_before: files,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            version: version_of(&table),
        })
    }

    /// The in-process lock writers of `table` take in turn.
    fn write_lock(&self, table: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.write_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(table.to_string())
            .or_default()
            .clone()
    }

    /// [`Lake::write`] under the table's lock: the outcome, and the table as committed (`None`
    /// when nothing was).
    async fn write_locked(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        ds: Option<NaiveDate>,
        meta: BTreeMap<String, String>,
    ) -> LakeResult<(WriteOutcome, Option<DeltaTable>)> {
        let invalid = |message: String| LakeError::InvalidData {
            table: def.name.clone(),
            message,
        };
        let physical = physical_schema(&def.schema);
        let mut phys_batches = Vec::with_capacity(batches.len());
        for b in &batches {
            let declared = conform(b, &def.schema).map_err(|e| invalid(e.to_string()))?;
            phys_batches.push(conform(&declared, &physical).map_err(|e| invalid(e.to_string()))?);
        }
        let mut rows: usize = phys_batches.iter().map(|b| b.num_rows()).sum();
        let mut unchanged = 0;
        phys_batches.retain(|b| b.num_rows() > 0);
        if let Some(date_col) = &def.date_column {
            phys_batches = in_date_order(phys_batches, date_col)?;
        }

        let url = self.table_url(&def.name)?;
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            std::fs::create_dir_all(p)?;
        }
        let table = self.latest(&def.name).await?;
        let exists = table.version().is_some();
        let commit = CommitProperties::default().with_metadata(
            meta.into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v))),
        );

        if !exists && phys_batches.is_empty() {
            phys_batches.push(RecordBatch::new_empty(physical.clone()));
        }

        let table = match mode {
            WriteMode::Append => {
                if exists && rows == 0 {
                    return Ok((self.unchanged(def, &table, 0), None));
                }
                table
                    .write(phys_batches)
                    .with_save_mode(SaveMode::Append)
                    .with_writer_properties(writer_properties())
                    .with_commit_properties(commit)
                    .await?
            }
            WriteMode::ReplacePartition => {
                let part = def
                    .partition_column
                    .as_deref()
                    .ok_or_else(|| invalid("replace_partition needs a partition column".into()))?;
                let ds = ds.ok_or_else(|| invalid("replace_partition needs a ds".into()))?;
                check_partition(&phys_batches, part, ds).map_err(invalid)?;
                if exists {
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Overwrite)
                        .with_writer_properties(writer_properties())
                        .with_replace_where(
                            col(format!("\"{part}\""))
                                .eq(lit(ScalarValue::Date32(Some(date32(ds))))),
                        )
                        .with_commit_properties(commit)
                        .await?
                } else {
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Append)
                        .with_writer_properties(writer_properties())
                        .with_commit_properties(commit)
                        .await?
                }
            }
            WriteMode::Merge => {
                if def.keys.is_empty() {
                    return Err(invalid("merge needs keys".into()));
                }
                check_unique_keys(&phys_batches, &def.keys).map_err(invalid)?;
                if !exists {
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Append)
                        .with_writer_properties(writer_properties())
                        .with_commit_properties(commit)
                        .await?
                } else if rows == 0 {
                    return Ok((self.unchanged(def, &table, 0), None));
                } else {
                    let changes = self.changed_rows(def, &table, phys_batches).await?;
                    unchanged = changes.unchanged;
                    rows = changes.rows.iter().map(|b| b.num_rows()).sum();
                    if rows == 0 {
                        return Ok((self.unchanged(def, &table, unchanged), None));
                    }
                    match changes.insert_only {
                        Some(predicate) => {
                            self.append_checked(table, changes.rows, predicate, commit)
                                .await?
                        }
                        None => self.merge(def, table, changes.rows, commit).await?,
                    }
                }
            }
        };
        self.remember(&def.name, &table);
        let outcome = WriteOutcome {
            table: def.name.clone(),
            version: version_of(&table),
            rows,
            unchanged,
            committed: true,
        };
        Ok((outcome, Some(table)))
    }

    fn unchanged(&self, def: &TableDef, table: &DeltaTable, unchanged: usize) -> WriteOutcome {
        WriteOutcome {
            table: def.name.clone(),
            version: version_of(table),
            rows: 0,
            unchanged,
            committed: false,
        }
    }

    /// Splits the rows to merge (physical schema) against what the table holds. Stored rows
    /// are compared whole (every column, nulls and list values included, bit for bit) in
    /// arrow's row format; only rows whose date lies within the batches' date range are read,
    /// so Delta skips files by their statistics. A row is dropped only on an exact match, so
    /// merging what is left writes the same table.
    async fn changed_rows(
        &self,
        def: &TableDef,
        table: &DeltaTable,
        batches: Vec<RecordBatch>,
    ) -> LakeResult<Changes> {
        let physical = physical_schema(&def.schema);
        let provider = table.table_provider().await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        let mut df = ctx.read_table(provider)?;
        let range = def
            .date_column
            .as_ref()
            .and_then(|c| Some((c, date_range(&batches, c)?)));
        if let Some((date_col, (lo, hi))) = &range {
            let c = col(format!("\"{date_col}\""));
            df = df.filter(
                c.clone()
                    .gt_eq(lit(ScalarValue::Date32(Some(*lo))))
                    .and(c.lt_eq(lit(ScalarValue::Date32(Some(*hi))))),
            )?;
        }
        let stored = df.collect().await?;
        let converter = RowConverter::new(
            physical
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let key_idx: Vec<usize> = def
            .keys
            .iter()
            .map(|k| physical.index_of(k))
            .collect::<Result<_, _>>()?;
        let keys = RowConverter::new(
            key_idx
                .iter()
                .map(|&i| SortField::new(physical.field(i).data_type().clone()))
                .collect(),
        )?;
        let key_cols = |b: &RecordBatch| {
            key_idx
                .iter()
                .map(|&i| b.column(i).clone())
                .collect::<Vec<_>>()
        };
        let mut held = HashSet::new();
        let mut held_keys = HashSet::new();
        for b in stored.iter().filter(|b| b.num_rows() > 0) {
            let b = conform(b, &physical)?;
            for r in converter.convert_columns(b.columns())?.iter() {
                held.insert(r.as_ref().to_vec());
            }
            for r in keys.convert_columns(&key_cols(&b))?.iter() {
                held_keys.insert(r.as_ref().to_vec());
            }
        }
        let mut out = Changes::default();
        let mut updates = false;
        for b in batches {
            let rows = converter.convert_columns(b.columns())?;
            let keep: arrow::array::BooleanArray = rows
                .iter()
                .map(|r| Some(!held.contains(r.as_ref())))
                .collect();
            out.unchanged += keep.false_count();
            let kept = arrow::compute::filter_record_batch(&b, &keep)?;
            if kept.num_rows() > 0 {
                updates |= keys
                    .convert_columns(&key_cols(&kept))?
                    .iter()
                    .any(|r| held_keys.contains(r.as_ref()));
                out.rows.push(kept);
            }
        }
        // Every stored row with a key to write was read when the date is part of the key (a
        // row with that key has that date, inside the range read): then no held key means no
        // update, and the rows can be appended under a predicate on that range.
        if let Some((date_col, (lo, hi))) = range
            && def.keys.contains(date_col)
            && !updates
        {
            let day = |d: i32| from_date32(d).map(|d| d.to_string()).unwrap_or_default();
            out.insert_only = Some(format!(
                "\"{date_col}\" >= '{}' AND \"{date_col}\" <= '{}'",
                day(lo),
                day(hi)
            ));
        }
        Ok(out)
    }

    /// Appends rows whose keys the table does not hold, in a commit that declares what it
    /// checked (`predicate`, a date range): Delta's conflict check then fails this commit if a
    /// concurrent writer added rows in that range (the task retries and finds them), instead of
    /// two writers both appending the same keys. A plain merge costs far more for this case.
    async fn append_checked(
        &self,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
        predicate: String,
        commit: CommitProperties,
    ) -> LakeResult<DeltaTable> {
        let mut writer =
            RecordBatchWriter::for_table(&table)?.with_writer_properties(writer_properties());
        let schema = writer.arrow_schema();
        for b in &batches {
            writer.write(conform(b, &schema)?).await?;
        }
        let adds = writer.flush().await?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: Some(predicate),
        };
        let done = CommitBuilder::from(commit)
            .with_actions(adds.into_iter().map(Action::Add).collect())
            .build(Some(table.snapshot()?), table.log_store(), operation)
            .await?;
        let mut table = table;
        table.update_incremental(Some(done.version())).await?;
        Ok(table)
    }

    async fn merge(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
        commit: CommitProperties,
    ) -> LakeResult<DeltaTable> {
        let ctx = SessionContext::new();
        let source = ctx.read_batches(batches)?;
        let predicate = def
            .keys
            .iter()
            .map(|k| format!("t.\"{k}\" = s.\"{k}\""))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns: Vec<String> = def
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let non_keys: Vec<&String> = columns.iter().filter(|c| !def.keys.contains(c)).collect();
        let mut builder = table
            .merge(source, predicate)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_writer_properties(writer_properties())
            .with_commit_properties(commit);
        if !non_keys.is_empty() {
            builder = builder.when_matched_update(|mut u| {
                for c in &non_keys {
                    u = u.update(c.as_str(), format!("s.\"{c}\""));
                }
                u
            })?;
        }
        builder = builder.when_not_matched_insert(|mut i| {
            for c in &columns {
                i = i.set(c.as_str(), format!("s.\"{c}\""));
            }
            i
        })?;
        let (table, _metrics) = builder.await?;
        Ok(table)
    }
}

/// Rows per Parquet row group. Rows are written in date order, so a date-range read (as of
/// a day, since a day, the rows a merge compares) skips most of a large file by the row
/// groups' statistics instead of decoding all of it.
const ROW_GROUP_ROWS: usize = 16_384;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// `batches` as one batch sorted by `date_col` (stable), when there are several rows.
fn in_date_order(batches: Vec<RecordBatch>, date_col: &str) -> LakeResult<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let all = arrow::compute::concat_batches(&first.schema(), &batches)?;
    let Some(dates) = all.column_by_name(date_col) else {
        return Ok(vec![all]);
    };
    let order = arrow::compute::sort_to_indices(dates, None, None)?;
    Ok(vec![arrow::compute::take_record_batch(&all, &order)?])
}

fn from_date32(d: i32) -> Option<NaiveDate> {
    NaiveDate::default().checked_add_signed(chrono::Duration::days(i64::from(d)))
}

/// The latest `col` on or before `limit` (days since 1970-01-01) from the files' statistics
/// alone: `Some(answer)` when every file either lies wholly on or before `limit` (its max
/// counts) or wholly after it (ignored); `None` when a file straddles `limit` or has no
/// statistics for `col`, and the rows must be scanned.
fn max_date_from_stats(table: &DeltaTable, col: &str, limit: i32) -> Option<Option<i32>> {
    let snapshot = table.snapshot().ok()?;
    let parse = |v: &serde_json::Value| -> Option<i32> {
        let d = NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok()?;
        Some(date32(d))
    };
    let mut best: Option<i32> = None;
    for file in snapshot.log_data().iter() {
        let stats: serde_json::Value = serde_json::from_str(&file.stats()?).ok()?;
        if stats.get("numRecords").and_then(serde_json::Value::as_i64) == Some(0) {
            continue;
        }
        let min = parse(stats.get("minValues")?.get(col)?)?;
        let max = parse(stats.get("maxValues")?.get(col)?)?;
        if max <= limit {
            best = best.max(Some(max));
        } else if min <= limit {
            return None;
        }
    }
    Some(best)
}

/// The smallest and largest non-null value of the Date32 column `name` in `batches`.
fn date_range(batches: &[RecordBatch], name: &str) -> Option<(i32, i32)> {
    let mut range: Option<(i32, i32)> = None;
    for b in batches {
        let dates = b
            .column_by_name(name)?
            .as_any()
            .downcast_ref::<Date32Array>()?;
        for d in dates.iter().flatten() {
            range = Some(match range {
                Some((lo, hi)) => (lo.min(d), hi.max(d)),
                None => (d, d),
            });
        }
    }
    range
}

fn check_partition(batches: &[RecordBatch], part: &str, ds: NaiveDate) -> Result<(), String> {
    let want = date32(ds);
    for b in batches {
        let idx = b
            .schema()
            .index_of(part)
            .map_err(|_| format!("partition column `{part}` missing"))?;
        let arr = b
            .column(idx)
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| format!("partition column `{part}` must be Date32"))?;
        if let Some(bad) = (0..arr.len()).find(|&i| arr.is_null(i) || arr.value(i) != want) {
            let got = if arr.is_null(bad) {
                "null".to_string()
            } else {
                arrow::temporal_conversions::date32_to_datetime(arr.value(bad))
                    .map(|d| d.date().to_string())
                    .unwrap_or_default()
            };
            return Err(format!(
                "replace_partition for {ds}: row {bad} has `{part}` = {got}"
            ));
        }
    }
    Ok(())
}

fn check_unique_keys(batches: &[RecordBatch], keys: &[String]) -> Result<(), String> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let schema = first.schema();
    let mut fields = Vec::new();
    for k in keys {
        let f = schema
            .field_with_name(k)
            .map_err(|_| format!("key column `{k}` missing"))?;
        fields.push(SortField::new(f.data_type().clone()));
    }
    let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    for b in batches {
        let cols = keys
            .iter()
            .map(|k| {
                b.column_by_name(k)
                    .cloned()
                    .ok_or_else(|| format!("key column `{k}` missing"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for c in &cols {
            if c.null_count() > 0 {
                return Err("key columns must not be null".to_string());
            }
        }
        let rows = converter
            .convert_columns(&cols)
            .map_err(|e| e.to_string())?;
        for (i, r) in rows.iter().enumerate() {
            if !seen.insert(r.owned()) {
                let desc = cols
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(format!(
                    "duplicate key ({}) = ({desc}) in the rows to merge",
                    keys.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn def() -> TableDef {
        TableDef::new(
            "prices",
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("date", DataType::Date32, false),
                Field::new("close", DataType::Float64, true),
            ])),
        )
        .keys(&["code", "date"])
        .date_column("date")
    }

    fn rows(rows: &[(&str, i32, f64)]) -> Vec<RecordBatch> {
        let b = RecordBatch::try_new(
            def().schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap();
        vec![conform(&b, &physical_schema(&def().schema)).unwrap()]
    }

    fn on(day: i32) -> String {
        let d = from_date32(day).unwrap();
        format!("\"date\" >= '{d}' AND \"date\" <= '{d}'")
    }

    #[tokio::test]
    async fn a_checked_append_conflicts_only_with_a_concurrent_write_in_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let prices = def();
        let write =
            |r: Vec<RecordBatch>| lake.write(&prices, r, WriteMode::Merge, None, BTreeMap::new());
        write(rows(&[("a", 100, 1.0)])).await.unwrap();
        let stale = lake.load("prices", None).await.unwrap().unwrap();
        // Another writer adds day 101 after `stale` was read; it goes in as an append too.
        let w = write(rows(&[("a", 101, 2.0)])).await.unwrap();
        assert_eq!((w.rows, w.committed), (1, true));
        let props = CommitProperties::default;
        let again = lake
            .append_checked(stale.clone(), rows(&[("a", 101, 2.0)]), on(101), props())
            .await;
        match again {
            Err(e) => assert!(e.is_transient(), "a conflict is retried: {e}"),
            Ok(_) => panic!("appending day 101 again must conflict"),
        }
        // A day the other writer did not touch commits over its commit.
        lake.append_checked(stale, rows(&[("a", 102, 3.0)]), on(102), props())
            .await
            .unwrap();
        let read = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(read.num_rows(), 3, "no key twice");
    }
}
