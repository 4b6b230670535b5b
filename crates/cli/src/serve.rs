//! `krxflow serve`: the scheduler daemon.
//!
//! * Loads every DAG file in a folder; invalid ones are reported (log, `/healthz`,
//!   `krxflow_scheduler_dags{state="invalid"}`) and not scheduled, the others run.
//! * Each DAG's cron is evaluated in its time zone; a tick on a day its calendar closes is
//!   skipped; the run's ds is the tick's local date. Ticks missed while down follow the DAG's
//!   `catchup` policy; a DAG seen for the first time runs its latest due partition (unless
//!   `catchup: none`) and then follows its schedule.
//! * One scheduler per lake: a lease object in the lake, renewed every ttl/3.
//! * `max_active_runs` per DAG; one pool of task slots (`--max-parallel`) for all runs.
//! * SIGTERM / Ctrl-C: no new runs; running ones get `--grace` to finish, then their tasks are
//!   cancelled (recorded as cancelled). Unfinished partitions are kept in the scheduler state
//!   (`_krxflow/control/scheduler_state.json`) and run first after a restart; succeeded tasks
//!   are skipped there by fingerprint, so a restart resumes where it stopped.
//! * DAG files are re-read when they change (polled every second) or on SIGHUP; a running DAG
//!   run keeps the definition it started with.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use krxflow_dag::ValidatedDag;
use krxflow_exec::records::{self, runs_from_batches};
use krxflow_exec::{
    Executor, Fanout, MetricsObserver, RunObserver, RunOptions, RunReport, RunState,
    observe::ds_unix,
};
use krxflow_lake::{Claim, Lake, Lease, ReadOptions};
use krxflow_metrics::Metrics;
use krxflow_metrics::http::StatusSource;
use krxflow_schedule::{Catchup, Ticker};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::commands::usage;
use crate::wiring;

pub struct ServeArgs {
    pub dags: PathBuf,
    pub listen: String,
    pub max_parallel: usize,
    pub grace: Duration,
    pub wait: bool,
    pub lease_ttl: Duration,
}

const LEASE: &str = "scheduler";
const STATE: &str = "scheduler_state";
/// A tick older than this when handled counts as missed (for `catchup: none`).
const GRACE_ON_TIME: i64 = 60;
/// The loop wakes at least this often (file polling, health, lease renewal).
const POLL: Duration = Duration::from_secs(1);
const RECENT: usize = 50;

/// What `/healthz` and `/runs` read.
struct Shared {
    metrics: Arc<Metrics>,
    started: DateTime<Utc>,
    last_loop: Mutex<DateTime<Utc>>,
    stopping: AtomicBool,
    lease_owner: String,
    loaded: Mutex<Vec<String>>,
    invalid: Mutex<Vec<Value>>,
    active: Mutex<BTreeMap<String, Value>>,
    recent: Mutex<VecDeque<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
                "active_runs": lock(&self.active).len(),
            }),
        )
    }

    fn runs(&self) -> Value {
        let active: Vec<Value> = lock(&self.active).values().cloned().collect();
        let recent: Vec<Value> = lock(&self.recent).iter().cloned().collect();
        json!({ "active": active, "recent": recent })
    }
}

/// Keeps finished runs for `/runs`.
struct RecentRuns(Arc<Shared>);

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

/// A loaded, valid DAG.
struct Loaded {
    dag: Arc<ValidatedDag>,
    ticker: Option<(Ticker, Catchup)>,
    exec: Executor,
}

/// Per-DAG scheduling state; `last` and `pending` survive restarts.
struct DagState {
    /// The newest tick handled.
    last: DateTime<Utc>,
    /// Partitions queued or running and not yet finished.
    pending: BTreeSet<NaiveDate>,
    queue: VecDeque<NaiveDate>,
    active: usize,
}

impl DagState {
    fn new(last: DateTime<Utc>) -> Self {
        Self {
            last,
            pending: BTreeSet::new(),
            queue: VecDeque::new(),
            active: 0,
        }
    }

    fn enqueue(&mut self, ds: NaiveDate) -> bool {
        if self.pending.insert(ds) {
            self.queue.push_back(ds);
            true
        } else {
            false
        }
    }
}

fn state_json(states: &BTreeMap<String, DagState>) -> Value {
    let m: serde_json::Map<String, Value> = states
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                json!({
                    "last_tick": s.last.to_rfc3339(),
                    "pending": s.pending.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    Value::Object(m)
}

fn states_from_json(v: &Value) -> BTreeMap<String, DagState> {
    let mut out = BTreeMap::new();
    let Some(m) = v.as_object() else {
        return out;
    };
    for (name, s) in m {
        let Some(last) = s
            .get("last_tick")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let mut st = DagState::new(last.with_timezone(&Utc));
        for d in s
            .get("pending")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ds) = d
                .as_str()
                .and_then(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
            {
                st.enqueue(ds);
            }
        }
        out.insert(name.clone(), st);
    }
    out
}

type Stamp = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// The DAG files of a folder with their modification stamps.
fn scan(dir: &Path) -> Stamp {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let is_yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
            if !is_yaml {
                continue;
            }
            if let Ok(md) = e.metadata() {
                out.insert(p, (md.modified().ok(), md.len()));
            }
        }
    }
    out
}

fn catchup_of(c: krxflow_dag::Catchup) -> Catchup {
    match c {
        krxflow_dag::Catchup::Latest => Catchup::Latest,
        krxflow_dag::Catchup::All => Catchup::All,
        krxflow_dag::Catchup::None => Catchup::None,
    }
}

/// (Re)loads every DAG file; returns the valid DAGs by name.
async fn load_all(
    dir: &Path,
    files: &Stamp,
    lake: &Lake,
    base: &Executor,
    shared: &Shared,
) -> BTreeMap<String, Loaded> {
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let mut out: BTreeMap<String, Loaded> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut report = |path: &Path, problems: Vec<String>| {
        for p in &problems {
            tracing::error!("{p}");
            eprintln!("serve: {p}");
        }
        invalid.push(json!({"file": path.display().to_string(), "problems": problems}));
    };
    for path in files.keys() {
        let dag = match wiring::load(path, &registry, &known) {
            Ok(d) => d,
            Err(diags) => {
                report(path, diags.iter().map(|d| d.to_string()).collect());
                continue;
            }
        };
        let name = dag.spec.name.clone();
        if out.contains_key(&name) {
            report(
                path,
                vec![format!(
                    "{}: DAG name `{name}` is already used by another file in {}; not scheduled",
                    path.display(),
                    dir.display()
                )],
            );
            continue;
        }
        let calendar = match wiring::calendar(&dag.spec.calendar) {
            Ok(c) => c,
            Err(e) => {
                report(path, vec![format!("{}: {e}", path.display())]);
                continue;
            }
        };
        let ticker = match &dag.spec.schedule {
            None => None,
            Some(s) => match (s.cron_schedule(), s.tz()) {
                (Ok(cron), Ok(tz)) => Some((
                    Ticker::new(cron, tz, calendar.clone()),
                    catchup_of(s.catchup),
                )),
                (Err(e), _) | (_, Err(e)) => {
                    report(path, vec![format!("{}: {e}", path.display())]);
                    continue;
                }
            },
        };
        let exec = base.clone().with_calendar(calendar);
        out.insert(
            name,
            Loaded {
                dag: Arc::new(dag),
                ticker,
                exec,
            },
        );
    }
    shared.metrics.dags_loaded(out.len(), invalid.len());
    *lock(&shared.loaded) = out.keys().cloned().collect();
    *lock(&shared.invalid) = invalid;
    out
}

/// Seeds `last_success_ds` and `/runs` from the runs table so nothing starts blank.
async fn seed_from_runs(lake: &Lake, shared: &Shared) {
    let Ok(read) = lake.read(records::RUNS, ReadOptions::default()).await else {
        return;
    };
    let mut runs = runs_from_batches(&read.batches);
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

async fn take_lease(lake: &Lake, a: &ServeArgs, owner: &str) -> anyhow::Result<Lease> {
    let ttl = chrono::Duration::from_std(a.lease_ttl).unwrap_or(chrono::Duration::seconds(30));
    let mut said = false;
    loop {
        match lake.claim_lease(LEASE, owner, ttl).await? {
            Claim::Acquired(l) => return Ok(l),
            Claim::Held(h) if !a.wait => {
                return Err(usage(format!(
                    "another scheduler holds this lake ({}: pid {} on {}, lease until {}); \
                     stop it, or pass --wait to take over when it stops",
                    h.owner, h.pid, h.host, h.expires
                )));
            }
            Claim::Held(h) => {
                if !said {
                    eprintln!(
                        "serve: waiting for the scheduler lease ({} pid {} on {}, until {})",
                        h.owner, h.pid, h.host, h.expires
                    );
                    said = true;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

type Done = (String, NaiveDate, Result<RunState, String>);

pub async fn serve(lake: &Lake, a: ServeArgs) -> anyhow::Result<ExitCode> {
    if !a.dags.is_dir() {
        return Err(usage(format!("--dags {}: not a folder", a.dags.display())));
    }
    let owner = format!(
        "serve-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    let mut lease = take_lease(lake, &a, &owner).await?;

    let metrics = Arc::new(Metrics::new());
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        started: Utc::now(),
        last_loop: Mutex::new(Utc::now()),
        stopping: AtomicBool::new(false),
        lease_owner: owner.clone(),
        loaded: Mutex::new(Vec::new()),
        invalid: Mutex::new(Vec::new()),
        active: Mutex::new(BTreeMap::new()),
        recent: Mutex::new(VecDeque::new()),
    });
    let listener = match krxflow_metrics::http::bind(&a.listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = lease.release().await;
            return Err(usage(e.to_string()));
        }
    };
    let addr = listener.local_addr().context("listening address")?;
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(krxflow_metrics::http::serve(
        listener,
        metrics.clone(),
        shared.clone(),
        http_stop.clone(),
    ));

    let cancel = CancellationToken::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(a.max_parallel.max(1)));
    let observer = Arc::new(Fanout(vec![
        Arc::new(MetricsObserver::new(metrics.clone())),
        Arc::new(RecentRuns(shared.clone())),
    ]));
    let base = Executor::new(lake.clone(), wiring::calendar("krx")?)
        .with_cancel(cancel.clone())
        .with_task_slots(slots)
        .with_observer(observer)
        .with_max_parallel(a.max_parallel.max(1));

    let mut files = scan(&a.dags);
    let mut dags = load_all(&a.dags, &files, lake, &base, &shared).await;
    seed_from_runs(lake, &shared).await;
    let mut states = match lake.read_control(STATE).await {
        Ok(Some(v)) => states_from_json(&v),
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            eprintln!("serve: scheduler state unreadable ({e}); starting fresh");
            BTreeMap::new()
        }
    };
    let now = Utc::now();
    for (name, l) in &dags {
        if let Some((t, _)) = &l.ticker {
            if let Some(next) = t.next_after(now) {
                metrics.next_tick(name, next.at.timestamp() as f64);
            }
            if let Some(prev) = t.between(now - chrono::Duration::days(14), now).last() {
                metrics.expected_ds(name, ds_unix(prev.ds));
            }
        }
        metrics.active_runs(name, 0);
    }
    metrics.scheduler_loop(now.timestamp_millis() as f64 / 1000.0);
    metrics.tick_lag(0.0);
    println!(
        "krxflow serve: {} DAGs scheduled, {} invalid; http://{addr}/metrics /healthz /runs; lake {}",
        dags.len(),
        lock(&shared.invalid).len(),
        lake.root()
    );

    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let renew_every = a.lease_ttl / 3;
    let mut renewed = tokio::time::Instant::now();
    let mut reload = false;
    let mut lost_lease = None;
    let mut saved = Value::Null;

    loop {
        let now = Utc::now();
        *lock(&shared.last_loop) = now;
        metrics.scheduler_loop(now.timestamp_millis() as f64 / 1000.0);

        let current = scan(&a.dags);
        if reload || current != files {
            tracing::info!("reloading DAG files from {}", a.dags.display());
            let before: BTreeSet<String> = dags.keys().cloned().collect();
            files = current;
            dags = load_all(&a.dags, &files, lake, &base, &shared).await;
            for gone in before.iter().filter(|n| !dags.contains_key(*n)) {
                metrics.forget_dag(gone);
            }
            eprintln!(
                "serve: reloaded: {} DAGs scheduled, {} invalid",
                dags.len(),
                lock(&shared.invalid).len()
            );
            reload = false;
        }

        for (name, l) in &dags {
            let st = states.entry(name.clone()).or_insert_with(|| {
                // First sight of this DAG: like a scheduler whose catch-up is off, run the
                // latest partition that came due (unless `catchup: none`), not the history.
                let mut st = DagState::new(now);
                if let Some((ticker, catchup)) = &l.ticker
                    && *catchup != Catchup::None
                    && let Some(prev) = ticker.between(now - chrono::Duration::days(14), now).last()
                {
                    eprintln!(
                        "serve: {name}: first start: running the latest due partition {}",
                        prev.ds
                    );
                    st.enqueue(prev.ds);
                }
                st
            });
            if let Some((ticker, catchup)) = &l.ticker {
                if let Some(newest) = ticker.between(st.last, now).last().copied() {
                    let due = ticker.due(
                        st.last,
                        now,
                        *catchup,
                        chrono::Duration::seconds(GRACE_ON_TIME),
                    );
                    let skipped = due.is_empty();
                    for t in due {
                        metrics.tick_lag((now - t.at).num_milliseconds() as f64 / 1000.0);
                        if st.enqueue(t.ds) {
                            tracing::info!("{name}: tick {} → run ds {}", t.at, t.ds);
                        }
                    }
                    if skipped {
                        eprintln!(
                            "serve: {name}: missed ticks up to {} skipped (catchup: none)",
                            newest.at
                        );
                    }
                    st.last = newest.at;
                    metrics.expected_ds(name, ds_unix(newest.ds));
                }
                if let Some(next) = ticker.next_after(now) {
                    metrics.next_tick(name, next.at.timestamp() as f64);
                }
            }
            let limit = l.dag.spec.max_active_runs.max(1) as usize;
            while st.active < limit {
                let Some(ds) = st.queue.pop_front() else {
                    break;
                };
                st.active += 1;
                let key = format!("{name}@{ds}");
                lock(&shared.active).insert(
                    key,
                    json!({"dag": name, "ds": ds.to_string(), "state": "running",
                           "started": Utc::now().to_rfc3339()}),
                );
                let (exec, dag, tx, name) =
                    (l.exec.clone(), l.dag.clone(), done_tx.clone(), name.clone());
                tokio::spawn(async move {
                    let mut opts = RunOptions::new(ds);
                    opts.trigger = "schedule".into();
                    let res = exec
                        .run(dag, opts)
                        .await
                        .map(|r| r.state)
                        .map_err(|e| e.to_string());
                    let _ = tx.send((name, ds, res));
                });
            }
            metrics.active_runs(name, st.active);
        }

        let snapshot = state_json(&states);
        if snapshot != saved {
            match lake.write_control(STATE, &snapshot).await {
                Ok(()) => saved = snapshot,
                Err(e) => tracing::warn!("cannot save scheduler state: {e}"),
            }
        }

        if renewed.elapsed() >= renew_every {
            match lease.renew().await {
                Ok(()) => renewed = tokio::time::Instant::now(),
                Err(e) => {
                    eprintln!("serve: {e}; stopping");
                    lost_lease = Some(e.to_string());
                    break;
                }
            }
        }

        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(done) = done_rx.recv() => finish(&mut states, &shared, done),
            _ = sigterm.recv() => { eprintln!("serve: SIGTERM: draining"); break; }
            _ = sigint.recv() => { eprintln!("serve: interrupt: draining"); break; }
            _ = sighup.recv() => { reload = true; }
        }
    }

    // Graceful shutdown: no new runs; running ones get the grace period, then are cancelled.
    shared.stopping.store(true, Ordering::Relaxed);
    for st in states.values_mut() {
        st.queue.clear(); // stays in `pending`: runs first after a restart
    }
    let active =
        |states: &BTreeMap<String, DagState>| states.values().map(|s| s.active).sum::<usize>();
    let deadline = tokio::time::Instant::now() + a.grace;
    while active(&states) > 0 {
        tokio::select! {
            Some(done) = done_rx.recv() => finish(&mut states, &shared, done),
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!(
                    "serve: grace period over: cancelling {} running DAG runs",
                    active(&states)
                );
                cancel.cancel();
                while active(&states) > 0 {
                    match done_rx.recv().await {
                        Some(done) => finish(&mut states, &shared, done),
                        None => break,
                    }
                }
            }
        }
    }
    if let Err(e) = lake.write_control(STATE, &state_json(&states)).await {
        eprintln!("serve: cannot save scheduler state: {e}");
    }
    http_stop.cancel();
    let _ = http.await;
    if lost_lease.is_none()
        && let Err(e) = lease.release().await
    {
        eprintln!("serve: cannot release the lease: {e}");
    }
    let unfinished: usize = states.values().map(|s| s.pending.len()).sum();
    println!("krxflow serve: stopped ({unfinished} partitions left for the next start)");
    Ok(match lost_lease {
        Some(_) => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    })
}

fn finish(states: &mut BTreeMap<String, DagState>, shared: &Shared, (name, ds, res): Done) {
    lock(&shared.active).remove(&format!("{name}@{ds}"));
    let Some(st) = states.get_mut(&name) else {
        return;
    };
    st.active = st.active.saturating_sub(1);
    match res {
        Ok(RunState::Cancelled) => {
            eprintln!("serve: {name} {ds}: cancelled; resumes at the next start");
        }
        Ok(state) => {
            st.pending.remove(&ds);
            eprintln!("serve: {name} {ds}: {state}");
        }
        Err(e) => {
            // The run could not even be recorded (lake unreachable): keep it pending.
            eprintln!("serve: {name} {ds}: error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_state_round_trips_with_pending_partitions_requeued() {
        let mut states = BTreeMap::new();
        let mut s = DagState::new("2024-12-16T07:00:00Z".parse().unwrap());
        let d = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        assert!(s.enqueue(d));
        assert!(!s.enqueue(d), "a partition is queued once");
        states.insert("daily".to_string(), s);
        let back = states_from_json(&state_json(&states));
        let s = &back["daily"];
        assert_eq!(s.last.to_rfc3339(), "2024-12-16T07:00:00+00:00");
        assert_eq!(s.queue.iter().copied().collect::<Vec<_>>(), [d]);
    }

    #[test]
    fn a_damaged_state_object_is_ignored_not_fatal() {
        assert!(states_from_json(&json!("garbage")).is_empty());
        let v = json!({"daily": {"last_tick": "not a time"}, "x": {"last_tick": "2024-12-16T07:00:00Z", "pending": ["bad", "2024-12-16"]}});
        let s = states_from_json(&v);
        assert_eq!(s.len(), 1);
        assert_eq!(s["x"].queue.len(), 1);
    }
}
