//! Control objects: small JSON objects under `_krxflow/control/` (scheduler state), each
//! replaced by a single put.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{LakeError, LakeResult};
use crate::table::Lake;

impl Lake {
    fn control_path(&self, name: &str) -> LakeResult<StorePath> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LakeError::BadLocation(
                name.into(),
                "control object names are [A-Za-z0-9_]+".into(),
            ));
        }
        let (_, prefix) = self.store();
        Ok(prefix
            .join("_krxflow")
            .join("control")
            .join(format!("{name}.json")))
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
}
