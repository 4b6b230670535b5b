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
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
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
}

/// What a write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub table: String,
    /// Delta version after the write (the version a reader of this output sees).
    pub version: i64,
    pub rows: usize,
    /// False when nothing needed committing (e.g. a merge of zero rows).
    pub committed: bool,
}

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
                return Ok(None);
            }
        }
        let mut table = DeltaTable::try_from_url(url).await?;
        if table.version().is_none() {
            return Ok(None);
        }
        if let Some(v) = version {
            let v = u64::try_from(v)
                .map_err(|_| LakeError::BadLocation(name.into(), format!("invalid version {v}")))?;
            table.load_version(v).await?;
        }
        Ok(Some(table))
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
            Some(ScalarValue::Date32(Some(d))) => {
                NaiveDate::default().checked_add_signed(chrono::Duration::days(i64::from(d)))
            }
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
    /// `replace_partition`. `meta` is stored in the commit info (run id, task, ...).
    pub async fn write(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        ds: Option<NaiveDate>,
        meta: BTreeMap<String, String>,
    ) -> LakeResult<WriteOutcome> {
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
        let rows: usize = phys_batches.iter().map(|b| b.num_rows()).sum();
        phys_batches.retain(|b| b.num_rows() > 0);

        let url = self.table_url(&def.name)?;
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            std::fs::create_dir_all(p)?;
        }
        let lock = self
            .write_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(def.name.clone())
            .or_default()
            .clone();
        let _writing = lock.lock().await;
        let table = DeltaTable::try_from_url(url).await?;
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
                    return self.unchanged(def, table, rows);
                }
                table
                    .write(phys_batches)
                    .with_save_mode(SaveMode::Append)
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
                        .with_commit_properties(commit)
                        .await?
                } else if rows == 0 {
                    return self.unchanged(def, table, rows);
                } else {
                    self.merge(def, table, phys_batches, commit).await?
                }
            }
        };
        Ok(WriteOutcome {
            table: def.name.clone(),
            version: version_of(&table),
            rows,
            committed: true,
        })
    }

    fn unchanged(
        &self,
        def: &TableDef,
        table: DeltaTable,
        rows: usize,
    ) -> LakeResult<WriteOutcome> {
        Ok(WriteOutcome {
            table: def.name.clone(),
            version: version_of(&table),
            rows,
            committed: false,
        })
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
