//! Retries of failed store calls: a call that fails with a `Generic` error (the store's way of
//! saying "something went wrong on the way", as a dropped connection or a 5xx does) is tried
//! again, up to [`ATTEMPTS`] times with a short jittered backoff (object_store's HTTP stores
//! retry 10 times by default too). Answers that retrying cannot
//! change (not found, already exists, precondition failed, ...) are returned at once: a Delta
//! commit's "already exists" is how it learns of a concurrent writer.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Tries per call.
pub const ATTEMPTS: u32 = 10;

/// First backoff; doubled per retry up to [`MAX_BACKOFF`] (5, 10, 20, ... 250 ms, about 1.1 s
/// over all nine), each scaled by a jitter in [0.5, 1].
const BASE: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Clones share the store and the jitter sequence.
#[derive(Debug, Clone)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    jitter: Arc<AtomicU64>,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            jitter: Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15)),
        }
    }

    async fn pause(&self, retry: u32) {
        let x = super::faults::splitmix(self.jitter.fetch_add(1, Ordering::Relaxed));
        let scale = 0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        let backoff = BASE.saturating_mul(1u32 << retry.min(16)).min(MAX_BACKOFF);
        tokio::time::sleep(backoff.mul_f64(scale)).await;
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "object store call failed; retrying");
                    self.pause(attempt - 1).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A listing, collected with retries (a failure as any item lists again from the start).
    fn list_retrying(
        &self,
        list: impl Fn() -> BoxStream<'static, Result<ObjectMeta>> + Send + Sync + 'static,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone();
        futures::stream::once(async move {
            let items: Result<Vec<ObjectMeta>> = this
                .retry(|| async { list().collect::<Vec<_>>().await.into_iter().collect() })
                .await;
            let items: Vec<Result<ObjectMeta>> = match items {
                Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        })
        .flatten()
        .boxed()
    }
}

/// Whether trying the same call again could succeed.
pub fn retryable(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. })
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.retry(|| self.inner.put_opts(location, payload.clone(), opts.clone()))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.retry(|| self.inner.put_multipart_opts(location, opts.clone()))
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry(|| self.inner.get_opts(location, options.clone()))
            .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.retry(|| self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix) = (self.inner.clone(), prefix.cloned());
        self.list_retrying(move || inner.list(prefix.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix, offset) = (self.inner.clone(), prefix.cloned(), offset.clone());
        self.list_retrying(move || inner.list_with_offset(prefix.as_ref(), &offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.retry(|| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.retry(|| self.inner.copy_opts(from, to, options.clone()))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.retry(|| self.inner.rename_opts(from, to, options.clone()))
            .await
    }
}
