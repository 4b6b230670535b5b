//! The artifact store: model artifacts as objects under the lake root.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::LakeError;
use crate::table::Lake;

/// Model artifacts as objects under the lake root ([`krxflow_core::ArtifactStore`]).
#[derive(Clone)]
pub struct LakeArtifacts {
    lake: Lake,
}

impl LakeArtifacts {
    pub fn new(lake: Lake) -> Self {
        Self { lake }
    }

    fn path(&self, rel: &str) -> krxflow_core::OpResult<StorePath> {
        if !krxflow_core::valid_artifact_path(rel) {
            return Err(krxflow_core::OpError::permanent(format!(
                "bad artifact path `{rel}`"
            )));
        }
        let (_, prefix) = self.lake.store();
        let mut p = prefix;
        for seg in rel.split('/') {
            p = p.join(seg);
        }
        Ok(p)
    }
}

#[async_trait::async_trait]
impl krxflow_core::ArtifactStore for LakeArtifacts {
    async fn put(&self, rel: &str, bytes: Vec<u8>) -> krxflow_core::OpResult<()> {
        let (store, _) = self.lake.store();
        store
            .put(&self.path(rel)?, PutPayload::from(bytes))
            .await
            .map_err(|e| LakeError::from(e).into())
            .map(|_| ())
    }

    async fn get(&self, rel: &str) -> krxflow_core::OpResult<Option<Vec<u8>>> {
        let (store, _) = self.lake.store();
        match store.get(&self.path(rel)?).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| krxflow_core::OpError::from(LakeError::from(e)))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::from(e).into()),
        }
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
    async fn artifacts_round_trip_under_the_lake_root_and_escapes_are_refused() {
        use krxflow_core::ArtifactStore;
        let dir = tempfile::tempdir().unwrap();
        let store = LakeArtifacts::new(lake(&dir));
        store
            .put("models/lexical/v1/model.json", b"{}".to_vec())
            .await
            .unwrap();
        assert!(dir.path().join("models/lexical/v1/model.json").exists());
        assert_eq!(
            store.get("models/lexical/v1/model.json").await.unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(store.get("models/none.json").await.unwrap(), None);
        assert!(store.put("../escape", vec![]).await.is_err());
        assert!(store.get("/abs").await.is_err());
    }
}
