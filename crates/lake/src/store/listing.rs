//! The local backend, with a listing that does not convert every entry of a folder.
//!
//! Delta learns of new versions by listing a table's `_delta_log/` from the version it holds
//! (`list_with_offset`): on every load, every read's refresh and twice around every commit.
//! object_store's local listing walks the whole folder and turns every entry's file-system
//! path into a store path (a URL conversion) before comparing it with the offset, so each
//! listing cost grows with the log (a year of daily commits is ~300 files per table) and it
//! was ~9% of a backfill's CPU (the log clean-up after each checkpoint lists it whole). Here
//! a listing of one plain folder reads the folder's names,
//! keeps those after the offset, and converts and `stat`s only those. Anything the fast path
//! is not certain to list exactly as object_store would (a subfolder, a symlink, a name that
//! needs percent-encoding, a prefix outside the offset's folder) is listed by object_store.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// object_store's [`LocalFileSystem`] with a faster [`ObjectStore::list_with_offset`].
#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
}

impl LocalStore {
    pub fn new(inner: LocalFileSystem) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The files of folder `prefix` whose names sort after `offset`'s (all of them without
    /// one), when `offset` is in that folder and every entry is a plain file with a plain
    /// name; `None` otherwise.
    fn list_folder(&self, prefix: &Path, offset: Option<&Path>) -> Option<Vec<Result<ObjectMeta>>> {
        let after = match offset {
            Some(offset) => {
                let mut parts: Vec<_> = offset.parts().collect();
                let name = parts.pop()?;
                if parts.len() != prefix.parts().count() || !offset.prefix_matches(prefix) {
                    return None;
                }
                Some(name)
            }
            None => None,
        };
        let after = after.as_ref().map(|a| a.as_ref());
        let dir = self.inner.path_to_filesystem(prefix).ok()?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            if !entry.file_type().ok()?.is_file() {
                return None;
            }
            let name = entry.file_name();
            let name = name.to_str()?;
            if !plain(name) {
                return None;
            }
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => out.push(Ok(object_meta(prefix.clone().join(name), &meta))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return None,
            }
        }
        Some(out)
    }
}

/// A name a store path holds as it is (no percent-encoding, not `.` or `..`, not a part of
/// an upload in progress, `name#1`, which object_store leaves out).
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The listing entry object_store's local store gives for a file (its e-tag scheme too).
fn object_meta(location: Path, meta: &std::fs::Metadata) -> ObjectMeta {
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let micros = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    ObjectMeta {
        location,
        last_modified: modified.into(),
        size: meta.len(),
        e_tag: Some(format!("{inode:x}-{micros:x}-{:x}", meta.len())),
        version: None,
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix.and_then(|p| self.list_folder(p, None)) {
            Some(found) => futures::stream::iter(found).boxed(),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix.and_then(|p| self.list_folder(p, Some(offset))) {
            Some(found) => futures::stream::iter(found).boxed(),
            None => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    type Listing = Vec<(String, u64, Option<String>)>;

    async fn sorted(stream: BoxStream<'static, Result<ObjectMeta>>) -> Listing {
        let mut out: Listing = stream
            .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
            .try_collect()
            .await
            .unwrap();
        out.sort();
        out
    }

    async fn listed(store: &dyn ObjectStore, prefix: &Path, offset: &Path) -> Listing {
        sorted(store.list_with_offset(Some(prefix), offset)).await
    }

    #[tokio::test]
    async fn a_folder_is_listed_after_an_offset_exactly_as_object_store_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t").join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        for name in [
            "00000000000000000000.json",
            "00000000000000000001.json",
            "00000000000000000002.json",
            "00000000000000000002.checkpoint.parquet",
            "00000000000000000003.json",
            "_last_checkpoint",
        ] {
            std::fs::write(log.join(name), name.as_bytes()).unwrap();
        }
        let fast = LocalStore::new(LocalFileSystem::new());
        let slow = LocalFileSystem::new();
        let prefix = Path::from_filesystem_path(&log).unwrap();
        for offset in [
            "00000000000000000001.json",
            "00000000000000000000.json",
            "00000000000000000003.json",
            "zzz",
        ] {
            let offset = prefix.clone().join(offset);
            let got = listed(&fast, &prefix, &offset).await;
            assert_eq!(got, listed(&slow, &prefix, &offset).await, "{offset}");
            assert!(
                fast.list_folder(&prefix, Some(&offset)).is_some(),
                "fast path"
            );
        }
        let all = sorted(fast.list(Some(&prefix))).await;
        assert_eq!(
            (all.len(), &all),
            (6, &sorted(slow.list(Some(&prefix))).await)
        );
        let from_one = listed(
            &fast,
            &prefix,
            &prefix.clone().join("00000000000000000001.json"),
        )
        .await;
        assert_eq!(from_one.len(), 4, "{from_one:?}");

        // An upload in progress, a name that needs encoding, a subfolder, an offset
        // elsewhere: object_store lists.
        let outside = Path::from_filesystem_path(dir.path()).unwrap().join("x");
        assert!(fast.list_folder(&prefix, Some(&outside)).is_none());
        let offset = prefix.clone().join("0");
        for odd in ["00000000000000000004.json#1", "a b.json"] {
            std::fs::write(log.join(odd), b"x").unwrap();
            assert!(fast.list_folder(&prefix, Some(&offset)).is_none());
            assert_eq!(
                listed(&fast, &prefix, &offset).await,
                listed(&slow, &prefix, &offset).await
            );
            std::fs::remove_file(log.join(odd)).unwrap();
        }
        std::fs::create_dir(log.join("sub")).unwrap();
        std::fs::write(log.join("sub").join("f"), b"x").unwrap();
        assert!(fast.list_folder(&prefix, Some(&offset)).is_none());
        assert_eq!(
            listed(&fast, &prefix, &offset).await,
            listed(&slow, &prefix, &offset).await
        );
    }
}
