//! `schedule.wait_for`: a due partition starts once the latest run of each DAG it waits for
//! has succeeded for the same day; after the timeout it starts anyway, and says so. The wait
//! holds no task slot and no run record: the partition stays at the head of its queue.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use krxflow_dag::{WaitFor, format_duration};
use krxflow_exec::{Executor, RunRecord, history::latest_runs_on};
use serde_json::json;

use crate::status::{Shared, lock};

/// How often a waiting partition reads the run history again (at once after a run ends).
const WAIT_POLL: Duration = Duration::from_secs(5);

/// A partition at the head of its queue waiting for other DAGs' runs of its day.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    ds: NaiveDate,
    since: DateTime<Utc>,
    checked: Option<tokio::time::Instant>,
    /// The DAGs still waited for, as last read.
    on: Vec<String>,
}

/// The DAGs of `dags` whose latest run for the day (in `latest`) has not succeeded, each with
/// where it stands.
pub(crate) fn unmet(dags: &[String], latest: &BTreeMap<String, RunRecord>) -> Vec<String> {
    dags.iter()
        .filter_map(|d| match latest.get(d) {
            Some(r) if r.state == "succeeded" => None,
            Some(r) => Some(format!("{d} ({})", r.state)),
            None => Some(format!("{d} (no run)")),
        })
        .collect()
}

/// The key of a partition in `/healthz`'s `active` runs and `waiting` partitions.
pub(crate) fn key(name: &str, ds: NaiveDate) -> String {
    format!("{name}@{ds}")
}

/// Forgets `waiting` (the DAG was paused, or its partition started) and its `/healthz` entry.
pub(crate) fn clear(name: &str, waiting: &mut Option<Waiting>, shared: &Shared) {
    if let Some(w) = waiting.take() {
        lock(&shared.waiting).remove(&key(name, w.ds));
    }
}

/// Whether `ds` of DAG `name` may start now under `wait`: every DAG waited for has succeeded
/// for `ds`, or `wait.timeout` has passed since the partition began waiting. `recheck`: a run
/// ended since the last look, so the history is read again at once.
pub(crate) async fn may_start(
    name: &str,
    exec: &Executor,
    wait: &WaitFor,
    ds: NaiveDate,
    waiting: &mut Option<Waiting>,
    shared: &Shared,
    recheck: bool,
) -> bool {
    if waiting.as_ref().is_some_and(|w| w.ds != ds) {
        clear(name, waiting, shared);
    }
    let now = Utc::now();
    let first = waiting.is_none();
    let w = waiting.get_or_insert_with(|| Waiting {
        ds,
        since: now,
        checked: None,
        on: wait.dags.clone(),
    });
    if !recheck && w.checked.is_some_and(|c| c.elapsed() < WAIT_POLL) {
        return false;
    }
    w.checked = Some(tokio::time::Instant::now());
    match latest_runs_on(exec, &wait.dags, ds).await {
        Ok(latest) => w.on = unmet(&wait.dags, &latest),
        Err(e) => tracing::warn!("{name} {ds}: cannot read the runs it waits for: {e}"),
    }
    let timeout = format_duration(wait.timeout);
    if w.on.is_empty() {
        if !first {
            eprintln!("serve: {name} {ds}: what it waited for has succeeded; starting");
        }
        clear(name, waiting, shared);
        return true;
    }
    let waited = (now - w.since).to_std().unwrap_or_default();
    if waited >= wait.timeout {
        eprintln!(
            "serve: {name} {ds}: waited {timeout} for {}; starting anyway (its tasks read \
             what the lake holds)",
            w.on.join(", ")
        );
        clear(name, waiting, shared);
        return true;
    }
    if first {
        eprintln!(
            "serve: {name} {ds}: waiting for {} to succeed for {ds} (at most {timeout})",
            w.on.join(", ")
        );
    }
    lock(&shared.waiting).insert(
        key(name, ds),
        json!({"dag": name, "ds": ds.to_string(), "waiting_for": w.on,
               "since": w.since.to_rfc3339(), "timeout": timeout}),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dag: &str, state: &str) -> RunRecord {
        RunRecord {
            run_id: format!("{dag}-1"),
            dag: dag.into(),
            ds: NaiveDate::from_ymd_opt(2024, 12, 16).unwrap(),
            state: state.into(),
            trigger: "schedule".into(),
            started: Utc::now(),
            ended: None,
            tasks_total: 1,
            tasks_failed: 0,
        }
    }

    #[test]
    fn only_a_succeeded_latest_run_meets_a_wait() {
        let dags = ["a".to_string(), "b".into(), "c".into()];
        let latest = BTreeMap::from([
            ("a".to_string(), run("a", "succeeded")),
            ("b".to_string(), run("b", "failed")),
        ]);
        assert_eq!(unmet(&dags, &latest), ["b (failed)", "c (no run)"]);
        let all = BTreeMap::from([
            ("a".to_string(), run("a", "succeeded")),
            ("b".to_string(), run("b", "succeeded")),
            ("c".to_string(), run("c", "succeeded")),
        ]);
        assert!(unmet(&dags, &all).is_empty());
    }
}
