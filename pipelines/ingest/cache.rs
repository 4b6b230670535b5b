//! A process-wide cache of parsed source files, keyed by the file's identity (path, length,
//! modification time) and the parse settings.
//!
//! A source that is re-read whole on every run (a listing with no dates to window on) is parsed
//! once per process: a backfill of 250 partitions, or `krxflow serve` running daily, reuses the
//! parse while the file is unchanged; any change to the file (length or mtime) re-parses.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use krxflow_core::{OpError, OpResult};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    path: String,
    len: u64,
    modified: Option<SystemTime>,
    settings: String,
}

type Entries = HashMap<Key, Arc<dyn Any + Send + Sync>>;

static CACHE: LazyLock<Mutex<Entries>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Entries kept at most; the cache is cleared when full (sources per process are few).
const MAX_ENTRIES: usize = 64;

/// `parse()`'s result for `path` under `settings`, from the cache while the file is unchanged.
/// Returns whether it was a hit, for the operator's counters.
pub fn parsed<T: Send + Sync + 'static>(
    path: &str,
    settings: &str,
    parse: impl FnOnce() -> OpResult<T>,
) -> OpResult<(Arc<T>, bool)> {
    let meta = std::fs::metadata(Path::new(path))
        .map_err(|e| OpError::permanent(format!("open {path}: {e}")))?;
    let key = Key {
        path: path.to_string(),
        len: meta.len(),
        modified: meta.modified().ok(),
        settings: settings.to_string(),
    };
    let hit = CACHE
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
        .and_then(|v| v.downcast::<T>().ok());
    if let Some(v) = hit {
        return Ok((v, true));
    }
    let v = Arc::new(parse()?);
    if let Ok(mut c) = CACHE.lock() {
        if c.len() >= MAX_ENTRIES {
            c.clear();
        }
        c.insert(key, v.clone() as Arc<dyn Any + Send + Sync>);
    }
    Ok((v, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_parsed_once_until_it_changes() {
        let dir = std::env::temp_dir().join(format!("krxflow-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("listing.csv");
        std::fs::write(&f, "a\n").unwrap();
        let path = f.to_string_lossy().to_string();
        let read = || std::fs::read_to_string(&f).map_err(|e| OpError::permanent(e.to_string()));
        let (v, hit) = parsed(&path, "s", read).unwrap();
        assert_eq!((v.as_str(), hit), ("a\n", false));
        let (v, hit) = parsed(&path, "s", || -> OpResult<String> { panic!("re-parsed") }).unwrap();
        assert_eq!((v.as_str(), hit), ("a\n", true));
        // Other settings are another entry.
        let (_, hit) = parsed(&path, "t", read).unwrap();
        assert!(!hit);
        // A changed file (different length) is parsed again.
        std::fs::write(&f, "bb\n").unwrap();
        let (v, hit) = parsed(&path, "s", read).unwrap();
        assert_eq!((v.as_str(), hit), ("bb\n", false));
        // A missing file is an error naming it.
        let e = parsed(&format!("{path}.nope"), "s", read).unwrap_err();
        assert!(e.to_string().contains(".nope"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
