//! The object store under the lake and under every Delta table of it: the backend (local
//! folder, memory, S3), with failed calls retried for the stores that do not retry themselves,
//! and, in tests only, injected faults.
//!
//! Delta opens a table's store from its URL through deltalake's registry of store factories, so
//! the lake registers its own factory for `file://` and `memory://` (once per process):
//! [`RetryingStore`] over, when `KRXFLOW_TEST_FAULTS` asks for it, [`FaultyStore`] over the
//! backend ([`LocalStore`] for a local folder: object_store's, listing the log faster). Every
//! read, commit, listing and scan of the lake then goes through the same
//! layers as the lake's own artifact and lease calls. S3 stores retry in their HTTP client
//! (object_store's `RetryConfig`), so they are left as they are.

mod faults;
mod listing;
mod retry;

use std::sync::{Arc, OnceLock};

use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

pub use faults::{FaultConfig, FaultyStore};
pub use listing::LocalStore;
pub use retry::{RetryingStore, retryable};

use crate::error::{LakeError, LakeResult};

/// The environment variable that turns fault injection on (tests only): `store=P` fails each
/// store call with probability P before it reaches the backend, `op=Q` each operator run (the
/// executor's wrapper), `seed=N` picks the sequence.
pub const FAULTS_ENV: &str = "KRXFLOW_TEST_FAULTS";

/// The process's fault configuration, read once from [`FAULTS_ENV`]; `None` when unset.
pub fn faults() -> LakeResult<Option<FaultConfig>> {
    static CONFIG: OnceLock<Result<Option<FaultConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| match std::env::var(FAULTS_ENV) {
            Ok(v) if !v.trim().is_empty() => FaultConfig::parse(&v).map(Some),
            _ => Ok(None),
        })
        .clone()
        .map_err(|e| LakeError::Config(format!("{FAULTS_ENV}: {e}")))
}

/// `store` with the lake's layers for a `file://` or `memory://` backend.
pub(crate) fn wrap(store: Arc<dyn ObjectStore>) -> LakeResult<Arc<dyn ObjectStore>> {
    let store = match faults()? {
        Some(config) if config.rate > 0.0 => {
            Arc::new(FaultyStore::new(store, config)) as Arc<dyn ObjectStore>
        }
        _ => store,
    };
    Ok(Arc::new(RetryingStore::new(store)))
}

/// The backend for `url`: a local folder gets [`LocalStore`]'s faster log listing.
pub(crate) fn local_listing(url: &Url, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match url.scheme() {
        "file" => Arc::new(LocalStore::new(object_store::local::LocalFileSystem::new())),
        _ => store,
    }
}

/// Registers the lake's store factory for `file://` and `memory://` with deltalake, once.
pub(crate) fn register() -> LakeResult<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    faults()?;
    DONE.get_or_init(|| {
        let factories = deltalake::logstore::object_store_factories();
        for scheme in ["file://", "memory://"] {
            if let Ok(url) = Url::parse(scheme) {
                factories.insert(url, Arc::new(LakeStoreFactory));
            }
        }
    });
    Ok(())
}

/// Builds the backend as deltalake's default factory does, then [`wrap`]s it.
struct LakeStoreFactory;

impl ObjectStoreFactory for LakeStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        let store = wrap(local_listing(url, Arc::from(store)))
            .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}
