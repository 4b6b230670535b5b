//! Paused schedules: a DAG whose schedule is paused gets no scheduled runs until it is resumed
//! (`krxflow pause` / `krxflow resume`). One control object per DAG,
//! `_krxflow/control/paused/<dag>.json`, so pausing one DAG never races pausing another. While
//! paused, the scheduler treats the DAG as it would a scheduler that is down: its ticks wait,
//! and on resume its `catchup` policy decides which of the missed ones run. Runs asked for by
//! hand (`krxflow run`, `backfill`) are not affected.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use krxflow_lake::{Lake, LakeError};
use serde::{Deserialize, Serialize};

const FOLDER: &str = "paused";

/// Why and since when a DAG's schedule is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub since: DateTime<Utc>,
    /// What the user gave, or empty.
    pub why: String,
    /// Who paused it: the user and host the command ran as.
    pub by: String,
}

fn object(dag: &str) -> String {
    format!("{FOLDER}/{dag}")
}

/// Pauses `dag`'s schedule (again: the reason and time are replaced).
pub async fn pause(lake: &Lake, dag: &str, why: &str) -> Result<Paused, LakeError> {
    let p = Paused {
        since: Utc::now(),
        why: why.to_string(),
        by: who(),
    };
    let value = serde_json::to_value(&p).map_err(|e| LakeError::InvalidData {
        table: format!("_krxflow/control/{}.json", object(dag)),
        message: e.to_string(),
    })?;
    lake.write_control(&object(dag), &value).await?;
    Ok(p)
}

/// Resumes `dag`'s schedule; what it was paused with, `None` when it was not paused.
pub async fn resume(lake: &Lake, dag: &str) -> Result<Option<Paused>, LakeError> {
    let was = paused_one(lake, dag).await?;
    lake.delete_control(&object(dag)).await?;
    Ok(was)
}

/// Every paused DAG. An object that does not parse still pauses its DAG (its reason says so):
/// a pause is never dropped because its record was damaged.
pub async fn paused(lake: &Lake) -> Result<BTreeMap<String, Paused>, LakeError> {
    let mut out = BTreeMap::new();
    for dag in lake.list_controls(FOLDER).await? {
        if let Some(p) = paused_one(lake, &dag).await? {
            out.insert(dag, p);
        }
    }
    Ok(out)
}

async fn paused_one(lake: &Lake, dag: &str) -> Result<Option<Paused>, LakeError> {
    match lake.read_control(&object(dag)).await {
        Ok(Some(v)) => Ok(Some(serde_json::from_value(v).unwrap_or_else(|e| Paused {
            since: DateTime::<Utc>::UNIX_EPOCH,
            why: format!("unreadable pause record ({e})"),
            by: String::new(),
        }))),
        Ok(None) => Ok(None),
        Err(LakeError::InvalidData { message, .. }) => Ok(Some(Paused {
            since: DateTime::<Utc>::UNIX_EPOCH,
            why: format!("unreadable pause record ({message})"),
            by: String::new(),
        })),
        Err(e) => Err(e),
    }
}

/// `user@host` of this process, as far as the environment says.
fn who() -> String {
    let uid = || {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        Some(format!("uid {}", line.split_whitespace().nth(1)?))
    };
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(uid)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake(dir: &tempfile::TempDir) -> Lake {
        Lake::open(dir.path().to_str().unwrap(), krxflow_lake::Catalog::new()).unwrap()
    }

    #[tokio::test]
    async fn a_paused_dag_is_listed_with_its_reason_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        assert!(paused(&lake).await.unwrap().is_empty());
        let p = pause(&lake, "daily_batch", "vendor outage").await.unwrap();
        pause(&lake, "match-outcomes.v2", "").await.unwrap();
        let all = paused(&lake).await.unwrap();
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["daily_batch", "match-outcomes.v2"]
        );
        assert_eq!(all["daily_batch"], p);
        assert_eq!(all["daily_batch"].why, "vendor outage");
        assert_eq!(resume(&lake, "daily_batch").await.unwrap(), Some(p));
        assert_eq!(resume(&lake, "daily_batch").await.unwrap(), None);
        assert_eq!(
            paused(&lake).await.unwrap().keys().collect::<Vec<_>>(),
            ["match-outcomes.v2"]
        );
    }

    #[tokio::test]
    async fn a_damaged_pause_record_still_pauses_its_dag() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let folder = dir.path().join("_krxflow/control/paused");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("daily_batch.json"), "{not json").unwrap();
        lake.write_control("paused/weekly", &serde_json::json!({"since": 3}))
            .await
            .unwrap();
        let all = paused(&lake).await.unwrap();
        assert!(
            all["daily_batch"]
                .why
                .starts_with("unreadable pause record"),
            "{all:?}"
        );
        assert!(
            all["weekly"].why.starts_with("unreadable pause record"),
            "{all:?}"
        );
        assert!(resume(&lake, "daily_batch").await.unwrap().is_some());
        assert!(!paused(&lake).await.unwrap().contains_key("daily_batch"));
    }
}
