//! The decoded-file cache of direct scans: Parquet footers and decoded column chunks of the
//! data files this process has read, kept in memory up to a byte budget.
//!
//! A Delta data file never changes once written (a rewrite adds a new file with a new name),
//! so what was decoded from it stays true for as long as the name is live. A daily run reads
//! the same files many times: `features`, both forecasters, the matcher and the merge diffs
//! all read `ohlcv_daily`'s compacted file, and a backfill does so again every day until the
//! next compaction. Entries are keyed by the file's full location and size and by row group
//! and column, so a read that wants one more column decodes only that column. The least
//! recently used entries go first when the budget is exceeded.

use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::ArrayRef;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderMetadata;

/// The default budget: the decoded history of a few tables of the full-market universe.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// A decoded column chunk: `(row group, root column)` of one file.
type ChunkKey = (usize, usize);

#[derive(Default)]
struct File {
    metadata: Option<ArrowReaderMetadata>,
    chunks: HashMap<ChunkKey, ArrayRef>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, File>,
    bytes: usize,
    clock: u64,
}

/// See the module documentation. Shared by the clones of a lake.
pub(crate) struct FileCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl FileCache {
    /// A cache holding at most `budget` bytes of decoded data (0: caches nothing).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The footer of file `key`, when cached.
    pub(crate) fn metadata(&self, key: &str) -> Option<ArrowReaderMetadata> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let file = inner.files.get_mut(key)?;
        file.used = now;
        file.metadata.clone()
    }

    pub(crate) fn put_metadata(&self, key: &str, metadata: ArrowReaderMetadata) {
        if self.budget == 0 {
            return;
        }
        let bytes = metadata.metadata().memory_size();
        self.insert(key, bytes, |f| {
            f.metadata
                .replace(metadata)
                .map_or(0, |m| m.metadata().memory_size())
        });
    }

    /// The cached chunks of `columns` in row group `group` of file `key`, one slot per column.
    pub(crate) fn chunks(
        &self,
        key: &str,
        group: usize,
        columns: &[usize],
    ) -> Vec<Option<ArrayRef>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        match inner.files.get_mut(key) {
            Some(file) => {
                file.used = now;
                columns
                    .iter()
                    .map(|c| file.chunks.get(&(group, *c)).cloned())
                    .collect()
            }
            None => vec![None; columns.len()],
        }
    }

    pub(crate) fn put_chunk(&self, key: &str, group: usize, column: usize, chunk: ArrayRef) {
        if self.budget == 0 {
            return;
        }
        let bytes = chunk.get_array_memory_size();
        self.insert(key, bytes, |f| {
            f.chunks
                .insert((group, column), chunk)
                .map_or(0, |c| c.get_array_memory_size())
        });
    }

    /// Drops every file of the table at `table_url` (its files were deleted: a read of a
    /// version that needed them must fail as it would without the cache).
    pub(crate) fn forget_table(&self, table_url: &str) {
        let prefix = table_prefix(table_url);
        let mut inner = self.lock();
        let mut freed = 0;
        inner.files.retain(|k, f| {
            let keep = !k.starts_with(&prefix);
            if !keep {
                freed += f.bytes;
            }
            keep
        });
        inner.bytes -= freed;
    }

    /// Puts `bytes` into file `key`'s entry with `put`, which returns the bytes of what it
    /// replaced (two tasks decoding the same chunk at once both put it).
    fn insert(&self, key: &str, bytes: usize, put: impl FnOnce(&mut File) -> usize) {
        if bytes > self.budget {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let file = inner.files.entry(key.to_string()).or_default();
        file.used = now;
        let replaced = put(file);
        file.bytes = (file.bytes + bytes).saturating_sub(replaced);
        inner.bytes = (inner.bytes + bytes).saturating_sub(replaced);
        if inner.bytes > self.budget {
            evict(&mut inner, self.budget, key);
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// The key of the data file at `path` (relative to the table) of `size` bytes.
pub(crate) fn file_key(table_url: &str, path: &str, size: u64) -> String {
    format!("{}{path}\u{0}{size}", table_prefix(table_url))
}

fn table_prefix(table_url: &str) -> String {
    format!("{table_url}\u{0}")
}

/// Drops the least recently used files (never `keep`, the one just filled) until the cache
/// holds at most three quarters of `budget`, so that eviction does not run on every insert.
fn evict(inner: &mut Inner, budget: usize, keep: &str) {
    let mut by_age: Vec<(u64, String)> = inner
        .files
        .iter()
        .filter(|(k, _)| k.as_str() != keep)
        .map(|(k, f)| (f.used, k.clone()))
        .collect();
    by_age.sort_unstable();
    let target = budget / 4 * 3;
    for (_, k) in by_age {
        if inner.bytes <= target {
            break;
        }
        if let Some(f) = inner.files.remove(&k) {
            inner.bytes -= f.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;

    use super::*;

    fn chunk(n: usize) -> ArrayRef {
        Arc::new(Int64Array::from(vec![1i64; n]))
    }

    #[test]
    fn a_cached_chunk_is_served_per_row_group_and_column() {
        let cache = FileCache::new(1 << 20);
        cache.put_chunk("f", 0, 2, chunk(10));
        let got = cache.chunks("f", 0, &[1, 2]);
        assert!(got[0].is_none(), "column 1 was never decoded");
        assert_eq!(got[1].as_ref().map(|a| a.len()), Some(10));
        assert!(cache.chunks("f", 1, &[2])[0].is_none(), "another row group");
        assert!(cache.chunks("g", 0, &[2])[0].is_none(), "another file");
    }

    #[test]
    fn the_least_recently_used_file_goes_first_and_the_budget_holds() {
        let one = chunk(1000).get_array_memory_size();
        let cache = FileCache::new(one * 3);
        cache.put_chunk("a", 0, 0, chunk(1000));
        cache.put_chunk("b", 0, 0, chunk(1000));
        cache.put_chunk("c", 0, 0, chunk(1000));
        // "a" is read again, so "b" is now the oldest.
        assert!(cache.chunks("a", 0, &[0])[0].is_some());
        cache.put_chunk("d", 0, 0, chunk(1000));
        assert!(cache.bytes() <= one * 3);
        assert!(cache.chunks("b", 0, &[0])[0].is_none(), "oldest evicted");
        assert!(cache.chunks("d", 0, &[0])[0].is_some(), "the new one stays");
        assert!(
            cache.chunks("a", 0, &[0])[0].is_some(),
            "recently read stays"
        );
    }

    #[test]
    fn forgetting_a_table_drops_its_files_only() {
        let cache = FileCache::new(1 << 20);
        cache.put_chunk(&file_key("file:///l/a/", "x.parquet", 1), 0, 0, chunk(10));
        cache.put_chunk(&file_key("file:///l/ab/", "x.parquet", 1), 0, 0, chunk(10));
        cache.forget_table("file:///l/a/");
        assert!(cache.chunks(&file_key("file:///l/a/", "x.parquet", 1), 0, &[0])[0].is_none());
        assert!(cache.chunks(&file_key("file:///l/ab/", "x.parquet", 1), 0, &[0])[0].is_some());
        assert_eq!(cache.bytes(), chunk(10).get_array_memory_size());
    }

    #[test]
    fn a_chunk_put_twice_is_counted_once() {
        let cache = FileCache::new(1 << 20);
        cache.put_chunk("a", 0, 0, chunk(10));
        cache.put_chunk("a", 0, 0, chunk(10));
        assert_eq!(cache.bytes(), chunk(10).get_array_memory_size());
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let cache = FileCache::new(0);
        cache.put_chunk("a", 0, 0, chunk(10));
        assert!(cache.chunks("a", 0, &[0])[0].is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
