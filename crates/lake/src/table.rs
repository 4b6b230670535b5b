//! The lake handle: opening a lake from a path or URL, table locations, and the cache of
//! each table's latest loaded state (snapshot cache); per-table write locks.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

use crate::cache::{DEFAULT_CACHE_BYTES, FileCache};
use crate::catalog::Catalog;
use crate::error::{LakeError, LakeResult};
use crate::schema::physical_schema;

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
    /// Footers and decoded column chunks of the data files read (see [`FileCache`]).
    pub(crate) files: Arc<FileCache>,
}

/// The loaded version of a table as a signed number (-1 when not loaded).
pub fn version_of(t: &DeltaTable) -> i64 {
    t.version().map(|v| v as i64).unwrap_or(-1)
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
                    "this krxflow was built without S3 support: rebuild with `cargo build --release -p krxflow-cli --features s3`"
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
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        let store = match root.scheme() {
            "file" | "memory" => {
                crate::store::register()?;
                crate::store::wrap(crate::store::local_listing(&root, store))?
            }
            _ => store,
        };
        Ok(Self {
            root,
            store,
            store_prefix,
            catalog: Arc::new(catalog),
            write_locks: Default::default(),
            snapshots: Default::default(),
            files: Arc::new(FileCache::new(DEFAULT_CACHE_BYTES)),
        })
    }

    /// This lake with a cache of decoded data files of at most `bytes` (0: none), instead
    /// of [`DEFAULT_CACHE_BYTES`]. Clones made before keep the cache they had.
    pub fn with_file_cache(mut self, bytes: usize) -> Self {
        self.files = Arc::new(FileCache::new(bytes));
        self
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A DataFusion session that reads local files through the lake's store (its retries, and
    /// the test faults): Delta's scans name data files by absolute `file://` URLs, which
    /// DataFusion's default registry would serve with a plain `LocalFileSystem` of its own.
    pub fn datafusion_session(&self) -> datafusion::prelude::SessionContext {
        let ctx = datafusion::prelude::SessionContext::new();
        if self.root.scheme() == "file"
            && let Ok(url) = Url::parse("file://")
        {
            ctx.register_object_store(&url, self.store.clone());
        }
        ctx
    }

    /// The object store under the lake root (models and other artifacts live there too).
    pub fn store(&self) -> (Arc<dyn ObjectStore>, StorePath) {
        (self.store.clone(), self.store_prefix.clone())
    }

    /// The object-store path of table `name`'s folder.
    pub(crate) fn table_path(&self, name: &str) -> StorePath {
        name.split('/')
            .fold(self.store_prefix.clone(), |p, part| p.join(part))
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
        let Some(latest) = table.version() else {
            return Ok(None);
        };
        let latest = i64::try_from(latest).unwrap_or(i64::MAX);
        if v < 0 || v > latest {
            return Err(LakeError::NoSuchVersion {
                table: name.into(),
                version: v,
                latest,
            });
        }
        if v == latest {
            return Ok(Some(table));
        }
        let v = u64::try_from(v)
            .map_err(|_| LakeError::BadLocation(name.into(), format!("invalid version {v}")))?;
        table.load_version(v).await?;
        Ok(Some(table))
    }

    /// The table at its latest version (without state when it does not exist yet): the cached
    /// state brought up to date with the commits since, else loaded from the log.
    pub(crate) async fn latest(&self, name: &str) -> LakeResult<DeltaTable> {
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

    pub(crate) fn remember(&self, name: &str, table: &DeltaTable) {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), table.clone());
    }

    pub(crate) fn forget(&self, name: &str) {
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

    /// The in-process lock writers of `table` take in turn.
    pub(crate) fn write_lock(&self, table: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.write_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(table.to_string())
            .or_default()
            .clone()
    }
}
