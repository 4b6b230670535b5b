//! Injected store failures, for the reliability tests only (enabled by
//! [`FAULTS_ENV`](super::FAULTS_ENV)): each call fails with probability `rate`, as a `Generic`
//! error (what a dropped connection or a 5xx looks like), before it reaches the backend, so a
//! failed call changes nothing. Decisions come from a seeded counter, so a run's fault rate is
//! reproducible (which call gets which decision depends on the order concurrent calls arrive).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The store name in injected errors.
pub const INJECTED: &str = "injected fault";

/// `store=P[,op=Q][,seed=N]`: each store call fails with probability P, each operator run
/// (the executor's wrapper, `krxflow-exec`) with probability Q.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Share of store calls that fail.
    pub rate: f64,
    /// Share of operator runs that fail (before or after the operator ran).
    pub op: f64,
    pub seed: u64,
}

impl FaultConfig {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (mut rate, mut op, mut seed) = (None, None, 0);
        let probability = |k: &str, v: &str| -> Result<f64, String> {
            let p: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{k}={v}: not a probability"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{k}={v}: not in [0, 1]"));
            }
            Ok(p)
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("`{part}` is not key=value (expected store=P[,op=Q][,seed=N])")
            })?;
            match k.trim() {
                "store" => rate = Some(probability("store", v)?),
                "op" => op = Some(probability("op", v)?),
                "seed" => {
                    seed = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("seed={v}: not an integer"))?;
                }
                other => return Err(format!("unknown key `{other}` (expected store, op, seed)")),
            }
        }
        if rate.is_none() && op.is_none() {
            return Err("store=P or op=Q is missing".into());
        }
        Ok(Self {
            rate: rate.unwrap_or(0.0),
            op: op.unwrap_or(0.0),
            seed,
        })
    }

    /// Whether decision number `call` of a stream (`stream` keeps the store's and the
    /// operators' decisions apart) fails at probability `rate`: a seeded, well-mixed draw.
    pub fn fails(&self, stream: u64, call: u64, rate: f64) -> bool {
        let x = splitmix(call ^ stream ^ self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        u < rate
    }
}

/// SplitMix64: a well-mixed 64-bit value from a counter.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Calls decided so far in this process, over every store instance (Delta opens one per
/// table load: a counter per instance would give every instance the same first decisions).
static CALLS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    config: FaultConfig,
    injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        Self {
            inner,
            config,
            injected: Default::default(),
        }
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// `Err` (and a count and a debug line) when this call is to fail.
    fn check(&self, op: &str, location: Option<&Path>) -> Result<()> {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        if !self.config.fails(0, call, self.config.rate) {
            return Ok(());
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let at = location.map_or(String::new(), |l| format!(" {l}"));
        tracing::debug!(target: "krxflow_lake::faults", call, op, location = %at.trim(), "injected store fault");
        Err(object_store::Error::Generic {
            store: INJECTED,
            source: format!(
                "{op}{at} failed on purpose ({}: store={})",
                super::FAULTS_ENV,
                self.config.rate
            )
            .into(),
        })
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({}, {})", self.config.rate, self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check("put", Some(location))?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check("put_multipart", Some(location))?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check("get", Some(location))?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check("get_ranges", Some(location))?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.check("list", prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.check("list", prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check("list", prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check("copy", Some(from))?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check("rename", Some(from))?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RetryingStore;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[test]
    fn the_config_names_what_is_wrong() {
        assert_eq!(
            FaultConfig::parse("store=0.3,seed=7"),
            Ok(FaultConfig {
                rate: 0.3,
                op: 0.0,
                seed: 7
            })
        );
        assert_eq!(
            FaultConfig::parse("op=0.25"),
            Ok(FaultConfig {
                rate: 0.0,
                op: 0.25,
                seed: 0
            })
        );
        assert!(FaultConfig::parse("op=-1").unwrap_err().contains("[0, 1]"));
        assert!(
            FaultConfig::parse("store=1.5")
                .unwrap_err()
                .contains("[0, 1]")
        );
        assert!(
            FaultConfig::parse("seed=1")
                .unwrap_err()
                .contains("store=P or op=Q")
        );
        assert!(
            FaultConfig::parse("disk=0.1")
                .unwrap_err()
                .contains("unknown key")
        );
    }

    #[tokio::test]
    async fn faults_fail_about_the_configured_share_of_calls_and_retries_hide_them() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = Arc::new(FaultyStore::new(
            mem.clone(),
            FaultConfig {
                rate: 0.3,
                op: 0.0,
                seed: 1,
            },
        ));
        let p = Path::from("a/b");
        let mut failed = 0;
        for i in 0..1000u32 {
            if faulty
                .put(&p, i.to_le_bytes().to_vec().into())
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        assert!(
            (250..350).contains(&failed),
            "{failed} of 1000 failed at 0.3"
        );
        assert_eq!(faulty.injected(), failed);

        // Through the retrying layer a call fails only when all 10 tries do: 0.3^10 = 6e-6.
        let retrying = RetryingStore::new(faulty.clone());
        let mut still_failed = 0;
        for i in 0..1000u32 {
            let put = retrying.put(&p, i.to_le_bytes().to_vec().into()).await;
            let got = match put {
                Ok(_) => retrying.get(&p).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(got) => {
                    assert_eq!(got.bytes().await.expect("bytes").as_ref(), i.to_le_bytes())
                }
                Err(_) => still_failed += 1,
            }
            let listed: Vec<_> = retrying.list(None).collect().await;
            still_failed += listed.iter().filter(|r| r.is_err()).count();
        }
        assert!(
            still_failed <= 1,
            "{still_failed} of 3,000 calls failed after retries"
        );
        assert!(
            faulty.injected() > failed,
            "the retried calls met faults too"
        );
    }

    #[tokio::test]
    async fn answers_that_a_retry_cannot_change_are_returned_at_once() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = Arc::new(FaultyStore::new(
            mem,
            FaultConfig {
                rate: 0.0,
                op: 0.0,
                seed: 0,
            },
        ));
        let retrying = RetryingStore::new(faulty.clone());
        let p = Path::from("x");
        assert!(matches!(
            retrying.get(&p).await,
            Err(object_store::Error::NotFound { .. })
        ));
        retrying.put(&p, vec![1].into()).await.expect("put");
        let create = PutOptions::from(object_store::PutMode::Create);
        assert!(matches!(
            retrying.put_opts(&p, vec![2].into(), create).await,
            Err(object_store::Error::AlreadyExists { .. })
        ));
    }

    #[tokio::test]
    async fn at_rate_one_every_call_fails_even_after_retries_with_a_clear_error() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = Arc::new(FaultyStore::new(
            mem,
            FaultConfig {
                rate: 1.0,
                op: 0.0,
                seed: 0,
            },
        ));
        let retrying = RetryingStore::new(faulty.clone());
        let e = retrying
            .put(&Path::from("x"), vec![1].into())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("failed on purpose"), "{e}");
        assert_eq!(faulty.injected(), u64::from(super::super::retry::ATTEMPTS));
    }
}
