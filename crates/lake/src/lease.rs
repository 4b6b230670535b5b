//! A lease in the lake: one `krxflow serve` per lake.
//!
//! A lease is a sequence of generations, `_krxflow/leases/NAME/<generation>.json` (owner, host,
//! pid, expiry); the newest generation is the lease. Every change of holder creates the next
//! generation with a conditional put (`PutMode::Create`: create-if-absent, atomic on the local
//! filesystem and on S3-compatible stores that support `If-None-Match`), so when several
//! claimants find an expired or released lease, exactly one of them creates generation N+1 and
//! the others see it held. This is compare-and-swap built from create-if-absent, the same way
//! Delta commits its log (`LocalFileSystem` has no `PutMode::Update`).
//!
//! Only the holder writes its own generation: renewal extends the expiry there, and is refused
//! once the holder's own clock has passed the expiry (someone may have taken over), or when a
//! newer generation exists. Releasing marks the generation expired. A claimant that created its
//! generation checks that it is still the newest before it reports success, and removes the
//! generations before the previous one.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, LakeResult};
use crate::table::Lake;

/// What a lease generation holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub acquired: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// Which generation of the lease this is (1 for the first holder ever).
    #[serde(default)]
    pub generation: u64,
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
    folder: StorePath,
    info: LeaseInfo,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("folder", &self.folder)
            .field("info", &self.info)
            .finish()
    }
}

fn encode(info: &LeaseInfo) -> PutPayload {
    PutPayload::from(serde_json::to_vec(info).unwrap_or_default())
}

/// Generation files sort by name: zero-padded to 20 digits (all of u64).
fn generation_path(folder: &StorePath, generation: u64) -> StorePath {
    folder.clone().join(format!("{generation:020}.json"))
}

fn parse_generation(path: &StorePath) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

/// The generations present, oldest first.
async fn generations(store: &dyn ObjectStore, folder: &StorePath) -> LakeResult<Vec<u64>> {
    let metas: Vec<_> = store.list(Some(folder)).try_collect().await?;
    let mut gens: Vec<u64> = metas
        .iter()
        .filter_map(|m| parse_generation(&m.location))
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// Reads one generation. An unreadable one (a truncated write) counts as expired; one removed
/// in between reads as `None`.
async fn read_generation(
    store: &dyn ObjectStore,
    folder: &StorePath,
    generation: u64,
) -> LakeResult<Option<LeaseInfo>> {
    match store.get(&generation_path(folder, generation)).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            let mut info = serde_json::from_slice(&bytes).unwrap_or(LeaseInfo {
                owner: "?".into(),
                host: "?".into(),
                pid: 0,
                acquired: DateTime::<Utc>::MIN_UTC,
                expires: DateTime::<Utc>::MIN_UTC,
                generation,
            });
            info.generation = generation;
            Ok(Some(info))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The newest generation and what it holds, if any.
async fn newest(
    store: &dyn ObjectStore,
    folder: &StorePath,
) -> LakeResult<Option<(u64, Option<LeaseInfo>)>> {
    match generations(store, folder).await?.last() {
        Some(&g) => Ok(Some((g, read_generation(store, folder, g).await?))),
        None => Ok(None),
    }
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// How many times a claimant retries when the newest generation moves under it.
const ATTEMPTS: usize = 5;

impl Lake {
    fn lease_folder(&self, name: &str) -> LakeResult<StorePath> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LakeError::BadLocation(
                name.into(),
                "lease names are [A-Za-z0-9_]+".into(),
            ));
        }
        let (_, prefix) = self.store();
        Ok(prefix.join("_krxflow").join("leases").join(name))
    }

    /// Tries to take lease `name` for `owner` for `ttl`. An expired or released lease is taken
    /// over by creating its next generation: among racing claimants exactly one succeeds.
    pub async fn claim_lease(&self, name: &str, owner: &str, ttl: Duration) -> LakeResult<Claim> {
        let (store, _) = self.store();
        let folder = self.lease_folder(name)?;
        for _ in 0..ATTEMPTS {
            let next = match newest(store.as_ref(), &folder).await? {
                Some((_, Some(held))) if held.expires > Utc::now() => return Ok(Claim::Held(held)),
                Some((g, Some(stale))) => {
                    tracing::warn!(
                        "lease `{name}` of {} (pid {} on {}) expired at {}: taking it over",
                        stale.owner,
                        stale.pid,
                        stale.host,
                        stale.expires
                    );
                    g + 1
                }
                Some((_, None)) => continue, // removed between the listing and the read
                None => 1,
            };
            let now = Utc::now();
            let info = LeaseInfo {
                owner: owner.to_string(),
                host: host(),
                pid: std::process::id(),
                acquired: now,
                expires: now + ttl,
                generation: next,
            };
            let put = store
                .put_opts(
                    &generation_path(&folder, next),
                    encode(&info),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match put {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => continue, // another won
                Err(e) => return Err(e.into()),
            }
            // A claimant that listed before an older generation was cleaned up can recreate
            // it: only the newest generation is the lease.
            let gens = generations(store.as_ref(), &folder).await?;
            if gens.last().is_some_and(|&g| g > next) {
                continue;
            }
            for &old in gens.iter().filter(|&&g| g + 1 < next) {
                match store.delete(&generation_path(&folder, old)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Claim::Acquired(Lease {
                store,
                folder,
                info,
                ttl,
            }));
        }
        match newest(store.as_ref(), &folder).await? {
            Some((_, Some(held))) => Ok(Claim::Held(held)),
            _ => Err(LakeError::Sql(format!(
                "lease `{name}`: contention, try again"
            ))),
        }
    }

    /// Who holds lease `name`, if anyone (expired or not): its newest generation.
    pub async fn lease_holder(&self, name: &str) -> LakeResult<Option<LeaseInfo>> {
        let (store, _) = self.store();
        let folder = self.lease_folder(name)?;
        Ok(newest(store.as_ref(), &folder).await?.and_then(|(_, i)| i))
    }
}

impl Lease {
    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    fn lost(&self, why: String) -> LakeError {
        LakeError::InvalidData {
            table: self.folder.to_string(),
            message: format!("lease lost: {why}"),
        }
    }

    /// Whether a newer generation than ours exists, and whose it is.
    async fn superseded(&self) -> LakeResult<Option<String>> {
        match newest(self.store.as_ref(), &self.folder).await? {
            Some((g, info)) if g > self.info.generation => Ok(Some(
                info.map(|i| i.owner)
                    .unwrap_or_else(|| format!("generation {g}")),
            )),
            Some((g, _)) if g == self.info.generation => Ok(None),
            _ => Ok(Some("nobody (the lease was removed)".into())),
        }
    }

    /// Extends the lease by its ttl. Fails once it has expired by our own clock or someone took
    /// it over (we were stalled): the caller must stop scheduling.
    pub async fn renew(&mut self) -> LakeResult<()> {
        if Utc::now() >= self.info.expires {
            return Err(self.lost(format!(
                "it expired at {} before it was renewed",
                self.info.expires
            )));
        }
        if let Some(by) = self.superseded().await? {
            return Err(self.lost(format!("now held by {by}")));
        }
        let mut next = self.info.clone();
        next.expires = Utc::now() + self.ttl;
        self.write_own(&next).await?;
        // A claimant reads the old expiry only if it read before this write finished: had the
        // write finished after that expiry, it may have taken over already.
        if Utc::now() >= self.info.expires {
            return Err(self.lost(format!(
                "it expired at {} while it was being renewed",
                self.info.expires
            )));
        }
        self.info = next;
        Ok(())
    }

    /// Gives the lease up (marks our generation expired) if it is still ours.
    pub async fn release(self) -> LakeResult<()> {
        if self.superseded().await?.is_some() {
            return Ok(());
        }
        let mut done = self.info.clone();
        done.expires = Utc::now().min(self.info.expires);
        self.write_own(&done).await
    }

    /// Overwrites our own generation (only its holder ever writes it after creating it).
    async fn write_own(&self, info: &LeaseInfo) -> LakeResult<()> {
        self.store
            .put_opts(
                &generation_path(&self.folder, self.info.generation),
                encode(info),
                PutOptions::from(PutMode::Overwrite),
            )
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

    /// Claimants racing for the lease of a killed holder, each through its own `Lake` as
    /// separate `serve` processes would: exactly one acquires it, every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_claimants_after_a_killed_holder_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..25 {
            // A lease per round: the winner's lives 30 s, longer than any claimant can lag.
            let name = format!("serve_{round}");
            let Claim::Acquired(dead) = lake(&dir)
                .claim_lease(&name, "dead", Duration::milliseconds(20))
                .await
                .unwrap()
            else {
                panic!("round {round}: a fresh lease is free")
            };
            std::mem::forget(dead); // killed: never renewed, never released
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            let start = Arc::new(tokio::sync::Barrier::new(6));
            let claims: Vec<_> = (0..6)
                .map(|i| {
                    let (lake, start, name) = (lake(&dir), start.clone(), name.clone());
                    tokio::spawn(async move {
                        start.wait().await;
                        let claim = lake
                            .claim_lease(&name, &format!("c{i}"), Duration::seconds(30))
                            .await;
                        claim.map(|c| match c {
                            Claim::Acquired(l) => {
                                let owner = l.info().owner.clone();
                                std::mem::forget(l);
                                Some(owner)
                            }
                            Claim::Held(_) => None,
                        })
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for c in claims {
                if let Some(owner) = c.await.unwrap().unwrap() {
                    winners.push(owner);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let holder = lake(&dir).lease_holder(&name).await.unwrap().unwrap();
            assert_eq!(holder.owner, winners[0], "round {round}");
        }
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once_and_old_generations_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        for owner in ["a", "b", "c", "d"] {
            let Claim::Acquired(l) = lake
                .claim_lease("serve", owner, Duration::seconds(30))
                .await
                .unwrap()
            else {
                panic!("{owner}: a released lease must be free")
            };
            l.release().await.unwrap();
        }
        let holder = lake.lease_holder("serve").await.unwrap().unwrap();
        assert_eq!((holder.owner.as_str(), holder.generation), ("d", 4));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("_krxflow/leases/serve"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}"); // the newest and the one before
    }

    #[tokio::test]
    async fn a_holder_stalled_past_its_expiry_cannot_renew_even_if_nobody_took_over() {
        let dir = tempfile::tempdir().unwrap();
        let Claim::Acquired(mut a) = lake(&dir)
            .claim_lease("serve", "a", Duration::milliseconds(20))
            .await
            .unwrap()
        else {
            panic!()
        };
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let e = a.renew().await.unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
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
