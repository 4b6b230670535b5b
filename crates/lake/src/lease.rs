//! A lease object in the lake: one `krxflow serve` per lake.
//!
//! The lease is a small JSON object (`_krxflow/leases/NAME.json`: owner, host, pid, expiry)
//! created with a conditional put (`PutMode::Create`: create-if-absent, atomic on the local
//! filesystem and on S3-compatible stores that support `If-None-Match`). The holder renews it
//! well before it expires; a lease whose holder was killed simply expires and the next
//! claimant removes it and creates its own. Releasing deletes it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, LakeResult};
use crate::table::Lake;

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub acquired: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Why a lease could not be taken.
#[derive(Debug)]
pub enum Claim {
    Acquired(Lease),
    /// Someone else holds an unexpired lease.
    Held(LeaseInfo),
}

/// A held lease. Renew it before `ttl` runs out; release it on shutdown.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    info: LeaseInfo,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

fn encode(info: &LeaseInfo) -> PutPayload {
    PutPayload::from(serde_json::to_vec(info).unwrap_or_default())
}

async fn read_info(store: &dyn ObjectStore, path: &StorePath) -> LakeResult<Option<LeaseInfo>> {
    match store.get(path).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            // An unreadable lease (truncated write) counts as expired.
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(LeaseInfo {
                owner: "?".into(),
                host: "?".into(),
                pid: 0,
                acquired: DateTime::<Utc>::MIN_UTC,
                expires: DateTime::<Utc>::MIN_UTC,
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl Lake {
    fn lease_path(&self, name: &str) -> LakeResult<StorePath> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LakeError::BadLocation(
                name.into(),
                "lease names are [A-Za-z0-9_]+".into(),
            ));
        }
        let (_, prefix) = self.store();
        Ok(prefix
            .join("_krxflow")
            .join("leases")
            .join(format!("{name}.json")))
    }

    /// Tries to take lease `name` for `owner` for `ttl`. An expired lease is taken over.
    pub async fn claim_lease(&self, name: &str, owner: &str, ttl: Duration) -> LakeResult<Claim> {
        let (store, _) = self.store();
        let path = self.lease_path(name)?;
        for _ in 0..3 {
            let now = Utc::now();
            let info = LeaseInfo {
                owner: owner.to_string(),
                host: host(),
                pid: std::process::id(),
                acquired: now,
                expires: now + ttl,
            };
            let put = store
                .put_opts(&path, encode(&info), PutOptions::from(PutMode::Create))
                .await;
            match put {
                Ok(_) => {
                    return Ok(Claim::Acquired(Lease {
                        store,
                        path,
                        info,
                        ttl,
                    }));
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match read_info(store.as_ref(), &path).await? {
                Some(held) if held.expires > Utc::now() => return Ok(Claim::Held(held)),
                Some(stale) => {
                    tracing::warn!(
                        "lease `{name}` of {} (pid {} on {}) expired at {}: taking it over",
                        stale.owner,
                        stale.pid,
                        stale.host,
                        stale.expires
                    );
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {} // released in between: try again
            }
        }
        match read_info(store.as_ref(), &path).await? {
            Some(held) => Ok(Claim::Held(held)),
            None => Err(LakeError::Sql(format!(
                "lease `{name}`: contention, try again"
            ))),
        }
    }

    /// Who holds lease `name`, if anyone (expired or not).
    pub async fn lease_holder(&self, name: &str) -> LakeResult<Option<LeaseInfo>> {
        let (store, _) = self.store();
        read_info(store.as_ref(), &self.lease_path(name)?).await
    }
}

impl Lease {
    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Extends the lease by its ttl. Fails if someone else took it over (we were stalled past
    /// expiry): the caller must stop scheduling.
    pub async fn renew(&mut self) -> LakeResult<()> {
        match read_info(self.store.as_ref(), &self.path).await? {
            Some(cur) if cur.owner == self.info.owner && cur.acquired == self.info.acquired => {}
            other => {
                return Err(LakeError::InvalidData {
                    table: self.path.to_string(),
                    message: format!(
                        "lease lost: now held by {}",
                        other.map(|o| o.owner).unwrap_or_else(|| "nobody".into())
                    ),
                });
            }
        }
        let mut next = self.info.clone();
        next.expires = Utc::now() + self.ttl;
        self.store
            .put_opts(
                &self.path,
                encode(&next),
                PutOptions::from(PutMode::Overwrite),
            )
            .await?;
        self.info = next;
        Ok(())
    }

    /// Deletes the lease if it is still ours.
    pub async fn release(self) -> LakeResult<()> {
        if let Some(cur) = read_info(self.store.as_ref(), &self.path).await?
            && cur.owner == self.info.owner
            && cur.acquired == self.info.acquired
        {
            match self.store.delete(&self.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
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
    async fn a_second_claimant_is_refused_while_the_lease_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let Claim::Acquired(first) = lake
            .claim_lease("serve", "a", Duration::seconds(30))
            .await
            .unwrap()
        else {
            panic!("first claim must succeed");
        };
        match lake
            .claim_lease("serve", "b", Duration::seconds(30))
            .await
            .unwrap()
        {
            Claim::Held(info) => assert_eq!(info.owner, "a"),
            Claim::Acquired(_) => panic!("two holders"),
        }
        first.release().await.unwrap();
        assert!(matches!(
            lake.claim_lease("serve", "b", Duration::seconds(30))
                .await
                .unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test]
    async fn a_stale_lease_from_a_killed_holder_expires_and_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let Claim::Acquired(dead) = lake
            .claim_lease("serve", "a", Duration::milliseconds(50))
            .await
            .unwrap()
        else {
            panic!()
        };
        std::mem::forget(dead); // killed: never renewed, never released
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        let Claim::Acquired(mut b) = lake
            .claim_lease("serve", "b", Duration::seconds(30))
            .await
            .unwrap()
        else {
            panic!("an expired lease must be taken over")
        };
        assert_eq!(
            lake.lease_holder("serve").await.unwrap().unwrap().owner,
            "b"
        );
        let before = b.info().expires;
        b.renew().await.unwrap();
        assert!(b.info().expires >= before);
    }

    #[tokio::test]
    async fn renewing_a_lease_someone_else_took_over_fails() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let Claim::Acquired(mut a) = lake
            .claim_lease("serve", "a", Duration::milliseconds(30))
            .await
            .unwrap()
        else {
            panic!()
        };
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        let Claim::Acquired(_b) = lake
            .claim_lease("serve", "b", Duration::seconds(30))
            .await
            .unwrap()
        else {
            panic!()
        };
        let e = a.renew().await.unwrap_err();
        assert!(e.to_string().contains("lease lost"), "{e}");
        // A's release must not delete B's lease.
        a.release().await.unwrap();
        assert_eq!(
            lake.lease_holder("serve").await.unwrap().unwrap().owner,
            "b"
        );
    }

    #[tokio::test]
    async fn lease_names_cannot_escape_the_lease_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            lake(&dir)
                .claim_lease("../x", "a", Duration::seconds(1))
                .await
                .is_err()
        );
    }
}
