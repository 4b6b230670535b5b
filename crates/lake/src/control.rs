//! Control objects: small JSON objects under `_krxflow/control/` (the scheduler's state, a
//! folder of paused DAGs), each replaced by a single put.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{LakeError, LakeResult};
use crate::table::Lake;

/// Whether `s` may name a control object or its folder: letters, digits, `_`, `-` and `.`
/// (a DAG's name), not starting with `.`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Lake {
    fn control_root(&self) -> StorePath {
        let (_, prefix) = self.store();
        prefix.join("_krxflow").join("control")
    }

    /// `_krxflow/control/<name>.json`; `name` is `object` or `folder/object`.
    fn control_path(&self, name: &str) -> LakeResult<StorePath> {
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_segment(p)) {
            return Err(LakeError::BadLocation(
                name.into(),
                "control object names are `name` or `folder/name` of [A-Za-z0-9_.-] \
                 (not starting with `.`)"
                    .into(),
            ));
        }
        let mut path = self.control_root();
        for (i, part) in parts.iter().enumerate() {
            path = if i + 1 == parts.len() {
                path.join(format!("{part}.json"))
            } else {
                path.join(*part)
            };
        }
        Ok(path)
    }

    /// A small JSON control object under `_krxflow/control/` (scheduler state), if present.
    pub async fn read_control(&self, name: &str) -> LakeResult<Option<serde_json::Value>> {
        let (store, _) = self.store();
        match store.get(&self.control_path(name)?).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| LakeError::InvalidData {
                        table: format!("_krxflow/control/{name}.json"),
                        message: e.to_string(),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a control object (a single put: readers see the old or the new one).
    pub async fn write_control(&self, name: &str, value: &serde_json::Value) -> LakeResult<()> {
        let (store, _) = self.store();
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        store
            .put(&self.control_path(name)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Deletes a control object; whether it was there.
    pub async fn delete_control(&self, name: &str) -> LakeResult<bool> {
        let (store, _) = self.store();
        let path = self.control_path(name)?;
        match store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The names of the control objects in `folder` (without `.json`), sorted.
    pub async fn list_controls(&self, folder: &str) -> LakeResult<Vec<String>> {
        if !valid_segment(folder) {
            return Err(LakeError::BadLocation(
                folder.into(),
                "a control folder is named by [A-Za-z0-9_.-]".into(),
            ));
        }
        let (store, _) = self.store();
        let listing = store
            .list_with_delimiter(Some(&self.control_root().join(folder)))
            .await?;
        let mut names: Vec<String> = listing
            .objects
            .iter()
            .filter_map(|o| {
                o.location
                    .filename()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .filter(|n| valid_segment(n))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn lake(dir: &tempfile::TempDir) -> Lake {
        Lake::open(dir.path().to_str().unwrap(), Catalog::new()).unwrap()
    }

    #[tokio::test]
    async fn control_objects_round_trip_and_absent_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        assert_eq!(lake.read_control("scheduler").await.unwrap(), None);
        let v = serde_json::json!({"daily": {"last_tick": "2024-12-16T07:00:00Z"}});
        lake.write_control("scheduler", &v).await.unwrap();
        assert_eq!(lake.read_control("scheduler").await.unwrap(), Some(v));
        assert!(lake.read_control("../x").await.is_err());
    }

    #[tokio::test]
    async fn a_folder_of_control_objects_lists_writes_and_deletes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        assert!(lake.list_controls("paused").await.unwrap().is_empty());
        let v = serde_json::json!({"why": "vendor outage"});
        lake.write_control("paused/daily-batch.v2", &v)
            .await
            .unwrap();
        lake.write_control("paused/a", &v).await.unwrap();
        assert_eq!(
            lake.list_controls("paused").await.unwrap(),
            vec!["a".to_string(), "daily-batch.v2".to_string()]
        );
        assert_eq!(
            lake.read_control("paused/daily-batch.v2").await.unwrap(),
            Some(v)
        );
        assert!(lake.delete_control("paused/a").await.unwrap());
        assert!(
            !lake.delete_control("paused/a").await.unwrap(),
            "already gone"
        );
        assert_eq!(
            lake.list_controls("paused").await.unwrap(),
            vec!["daily-batch.v2".to_string()]
        );
        for bad in ["paused/../x", "a/b/c", "paused/.hidden", "", "paused/"] {
            assert!(lake.read_control(bad).await.is_err(), "{bad}");
        }
        assert!(lake.list_controls("..").await.is_err());
    }
}
