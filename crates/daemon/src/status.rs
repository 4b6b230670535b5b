//! What `/healthz` and `/runs` report, kept up to date by the loop and a run observer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use krxflow_exec::{RunObserver, RunReport, observe::ds_unix};
use krxflow_lake::Lake;
use krxflow_metrics::Metrics;
use krxflow_metrics::http::StatusSource;
use serde_json::{Value, json};

pub(crate) const RECENT: usize = 50;

/// What `/healthz` and `/runs` read.
pub(crate) struct Shared {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: DateTime<Utc>,
    pub(crate) last_loop: Mutex<DateTime<Utc>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) lease_owner: String,
    pub(crate) loaded: Mutex<Vec<String>>,
    pub(crate) invalid: Mutex<Vec<Value>>,
    pub(crate) active: Mutex<BTreeMap<String, Value>>,
    pub(crate) recent: Mutex<VecDeque<Value>>,
    /// Paused DAGs: name -> since, why, by.
    pub(crate) paused: Mutex<BTreeMap<String, Value>>,
    /// Due partitions waiting for other DAGs (`schedule.wait_for`): `dag@ds` -> what for.
    pub(crate) waiting: Mutex<BTreeMap<String, Value>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusSource for Shared {
    fn health(&self) -> (bool, Value) {
        let last = *lock(&self.last_loop);
        let age = (Utc::now() - last).num_milliseconds() as f64 / 1000.0;
        let alive = age < 15.0;
        let stopping = self.stopping.load(Ordering::Relaxed);
        let status = match (alive, stopping) {
            (false, _) => "stalled",
            (true, true) => "draining",
            (true, false) => "ok",
        };
        (
            alive,
            json!({
                "status": status,
                "last_tick": last.to_rfc3339(),
                "seconds_since_last_tick": age,
                "started": self.started.to_rfc3339(),
                "lease_owner": self.lease_owner,
                "dags_loaded": *lock(&self.loaded),
                "dags_invalid": *lock(&self.invalid),
                "dags_paused": *lock(&self.paused),
                "active_runs": lock(&self.active).len(),
                "waiting": *lock(&self.waiting),
            }),
        )
    }

    fn runs(&self) -> Value {
        let active: Vec<Value> = lock(&self.active).values().cloned().collect();
        let recent: Vec<Value> = lock(&self.recent).iter().cloned().collect();
        let waiting: Vec<Value> = lock(&self.waiting).values().cloned().collect();
        json!({ "active": active, "waiting": waiting, "recent": recent })
    }
}

/// Keeps finished runs for `/runs`.
pub(crate) struct RecentRuns(pub(crate) Arc<Shared>);

fn run_json(r: &RunReport) -> Value {
    json!({
        "run_id": r.run_id,
        "dag": r.dag,
        "ds": r.ds.to_string(),
        "state": r.state.to_string(),
        "started": r.started.to_rfc3339(),
        "ended": r.ended.to_rfc3339(),
        "seconds": (r.ended - r.started).num_milliseconds() as f64 / 1000.0,
        "tasks": r.tasks.iter().map(|t| json!({"task": t.task, "state": t.state.to_string()})).collect::<Vec<_>>(),
    })
}

impl RunObserver for RecentRuns {
    fn run_finished(&self, r: &RunReport) {
        let mut recent = lock(&self.0.recent);
        recent.push_front(run_json(r));
        recent.truncate(RECENT);
    }
}

/// Seeds `last_success_ds` and `/runs` from the runs table so nothing starts blank.
pub(crate) async fn seed_from_runs(lake: &Lake, shared: &Shared) {
    let Ok(mut runs) = krxflow_exec::history::all_runs(lake).await else {
        return;
    };
    runs.retain(|r| r.ended.is_some());
    runs.sort_by_key(|r| std::cmp::Reverse(r.ended));
    for r in &runs {
        if r.state == "succeeded" {
            shared.metrics.success_ds_at_least(&r.dag, ds_unix(r.ds));
        }
    }
    let mut recent = lock(&shared.recent);
    for r in runs.iter().take(RECENT) {
        recent.push_back(json!({
            "run_id": r.run_id, "dag": r.dag, "ds": r.ds.to_string(), "state": r.state,
            "trigger": r.trigger, "started": r.started.to_rfc3339(),
            "ended": r.ended.map(|e| e.to_rfc3339()),
        }));
    }
}
