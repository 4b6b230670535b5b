//! The scheduling loop: lease, due ticks, run launching, reloads, graceful shutdown.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use krxflow_exec::{
    Executor, Fanout, MetricsObserver, PartitionOutcome, PartitionRun, PartitionRunner, Reprocess,
    RunOptions, RunState, observe::ds_unix,
};
use krxflow_lake::{Claim, Lake, Lease};
use krxflow_metrics::Metrics;
use krxflow_schedule::Catchup;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dags::{load_all, scan};
use crate::error::DaemonError;
use crate::pause::{Paused, paused};
use crate::source::DagSource;
use crate::state::{DagState, state_json, states_from_json};
use crate::status::{RecentRuns, Shared, lock, seed_from_runs};
use crate::vacuum::Retention;
use crate::wait;

/// How the daemon runs (the `krxflow serve` flags).
pub struct Config {
    /// Folder of DAG files (*.yaml); re-read on change or SIGHUP.
    pub dags: PathBuf,
    /// HTTP address for /metrics, /healthz and /runs (port 0: any free port).
    pub listen: String,
    /// Tasks running at once across all DAG runs.
    pub max_parallel: usize,
    /// On SIGTERM/Ctrl-C, how long running DAG runs may take to finish before their tasks are
    /// cancelled.
    pub grace: Duration,
    /// If another scheduler holds the lake, wait for its lease instead of failing.
    pub wait: bool,
    /// Lease lifetime: a killed scheduler's lease expires after this long.
    pub lease_ttl: Duration,
    /// How often every table is vacuumed (`None`: never).
    pub vacuum_every: Option<Duration>,
    /// Time travel the vacuum keeps.
    pub vacuum_retain: Duration,
    /// Where runs go: `None` here; else, per DAG file, a runner of its runs elsewhere (jobs on
    /// a cluster engine, `krxflow-cluster`).
    pub runner_for: Option<RunnerFor>,
}

/// A DAG file's runner of runs outside this process.
pub type RunnerFor = Arc<dyn Fn(&Path) -> Arc<dyn PartitionRunner> + Send + Sync>;

/// How the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to (SIGTERM, Ctrl-C): running DAG runs finished or were cancelled.
    Drained,
    /// Another scheduler took the lake's lease.
    LeaseLost,
}

/// The lease one scheduler per lake holds.
pub const LEASE: &str = "scheduler";
const STATE: &str = "scheduler_state";
/// A tick older than this when handled counts as missed (for `catchup: none`).
const GRACE_ON_TIME: i64 = 60;
/// The loop wakes at least this often (file polling, health, lease renewal).
const POLL: Duration = Duration::from_secs(1);
/// How often the paused DAGs are read again (`krxflow pause` / `resume` from elsewhere).
const PAUSE_POLL: Duration = Duration::from_secs(5);

async fn take_lease(lake: &Lake, a: &Config, owner: &str) -> Result<Lease, DaemonError> {
    let ttl = chrono::Duration::from_std(a.lease_ttl).unwrap_or(chrono::Duration::seconds(30));
    let mut said = false;
    loop {
        match lake.claim_lease(LEASE, owner, ttl).await? {
            Claim::Acquired(l) => return Ok(l),
            Claim::Held(h) if !a.wait => {
                return Err(DaemonError::LeaseHeld(h));
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

/// Runs the scheduler over `lake` until SIGTERM / Ctrl-C (or a lost lease); DAG files are
/// validated by `source`, run metrics go to `metrics` (served on `/metrics`).
pub async fn serve(
    lake: &Lake,
    a: Config,
    source: &impl DagSource,
    metrics: Arc<Metrics>,
) -> Result<Stopped, DaemonError> {
    if !a.dags.is_dir() {
        return Err(DaemonError::NotAFolder(a.dags.clone()));
    }
    let owner = format!(
        "serve-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    let mut lease = take_lease(lake, &a, &owner).await?;

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
        paused: Mutex::new(BTreeMap::new()),
        waiting: Mutex::new(BTreeMap::new()),
    });
    let listener = match krxflow_metrics::http::bind(&a.listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = lease.release().await;
            return Err(DaemonError::Listen(e));
        }
    };
    let addr = listener.local_addr().map_err(|source| DaemonError::Io {
        what: "listening address",
        source,
    })?;
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
    let base = Executor::new(lake.clone(), source.calendar("krx")?)
        .with_cancel(cancel.clone())
        .with_task_slots(slots)
        .with_observer(observer)
        .with_max_parallel(a.max_parallel.max(1));

    let mut files = scan(&a.dags);
    let mut dags = load_all(&a, &files, lake, source, &base, &shared).await;
    seed_from_runs(lake, &shared).await;
    let mut states = match lake.read_control(STATE).await {
        Ok(Some(v)) => states_from_json(&v),
        Ok(None) => BTreeMap::new(),
        Err(e) => {
            eprintln!("serve: scheduler state unreadable ({e}); starting fresh");
            BTreeMap::new()
        }
    };
    let mut pauses: BTreeMap<String, Paused> = BTreeMap::new();
    refresh_pauses(lake, &mut pauses, &shared).await;
    let mut pauses_read = tokio::time::Instant::now();
    let now = Utc::now();
    for (name, l) in &dags {
        if let Some((t, _)) = &l.ticker
            && !pauses.contains_key(name)
        {
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

    let handler = |kind, what| signal(kind).map_err(|source| DaemonError::Io { what, source });
    let mut sigterm = handler(SignalKind::terminate(), "SIGTERM handler")?;
    let mut sigint = handler(SignalKind::interrupt(), "SIGINT handler")?;
    let mut sighup = handler(SignalKind::hangup(), "SIGHUP handler")?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let renew_every = a.lease_ttl / 3;
    let mut renewed = tokio::time::Instant::now();
    let mut reload = false;
    let mut lost_lease = None;
    let mut saved = Value::Null;
    let mut retention = Retention::new(a.vacuum_every, a.vacuum_retain);
    let mut run_ended = false;

    loop {
        let now = Utc::now();
        *lock(&shared.last_loop) = now;
        metrics.scheduler_loop(now.timestamp_millis() as f64 / 1000.0);

        if pauses_read.elapsed() >= PAUSE_POLL {
            refresh_pauses(lake, &mut pauses, &shared).await;
            pauses_read = tokio::time::Instant::now();
        }

        let current = scan(&a.dags);
        if reload || current != files {
            tracing::info!("reloading DAG files from {}", a.dags.display());
            let before: BTreeSet<String> = dags.keys().cloned().collect();
            files = current;
            dags = load_all(&a, &files, lake, source, &base, &shared).await;
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

        // A run ended since the last pass: partitions waiting for other DAGs look again now.
        let recheck = std::mem::take(&mut run_ended);
        for (name, l) in &dags {
            let st = states.entry(name.clone()).or_insert_with(|| {
                // First sight of this DAG: like a scheduler whose catch-up is off, run the
                // latest partition that came due (unless `catchup: none`), not the history.
                let mut st = DagState::new(now);
                if let Some((ticker, catchup)) = &l.ticker
                    && *catchup != Catchup::None
                    && let Some(prev) = ticker.between(now - chrono::Duration::days(14), now).last()
                {
                    let when = if pauses.contains_key(name) {
                        format!("once `krxflow resume {name}` resumes it")
                    } else {
                        "now".into()
                    };
                    eprintln!(
                        "serve: {name}: first start: running the latest due partition {} {when}",
                        prev.ds
                    );
                    st.enqueue(prev.ds);
                }
                st
            });
            let is_paused = pauses.contains_key(name);
            metrics.paused(name, is_paused);
            if is_paused {
                wait::clear(name, &mut st.waiting, &shared);
                // As if the scheduler were down for this DAG: its ticks wait (the catch-up
                // policy decides on resume) and nothing queued starts.
                metrics.active_runs(name, st.active);
                continue;
            }
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
                let Some(&ds) = st.queue.front() else {
                    break;
                };
                if let Some(w) = l
                    .dag
                    .spec
                    .schedule
                    .as_ref()
                    .and_then(|s| s.wait_for.as_ref())
                    && !wait::may_start(name, &l.exec, w, ds, &mut st.waiting, &shared, recheck)
                        .await
                {
                    break;
                }
                st.queue.pop_front();
                st.active += 1;
                let key = wait::key(name, ds);
                lock(&shared.active).insert(
                    key,
                    json!({"dag": name, "ds": ds.to_string(), "state": "running",
                           "started": Utc::now().to_rfc3339()}),
                );
                let (exec, dag, tx, name) =
                    (l.exec.clone(), l.dag.clone(), done_tx.clone(), name.clone());
                let (runner, cancel) = (l.runner.clone(), cancel.clone());
                tokio::spawn(async move {
                    let res = match runner {
                        Some(runner) => Ok(
                            match runner
                                .run_partition(
                                    &dag,
                                    PartitionRun::new(ds, Reprocess::Missing, "schedule"),
                                    &cancel,
                                )
                                .await
                            {
                                PartitionOutcome::Succeeded => RunState::Succeeded,
                                PartitionOutcome::Cancelled => RunState::Cancelled,
                                _ => RunState::Failed,
                            },
                        ),
                        None => {
                            let mut opts = RunOptions::new(ds);
                            opts.trigger = "schedule".into();
                            exec.run(dag, opts)
                                .await
                                .map(|r| r.state)
                                .map_err(|e| e.to_string())
                        }
                    };
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

        retention.tick(lake);

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
            Some(done) = done_rx.recv() => {
                finish(&mut states, &shared, done);
                run_ended = true;
            }
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
    retention.finish().await;
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
        Some(_) => Stopped::LeaseLost,
        None => Stopped::Drained,
    })
}

/// Reads the paused DAGs again, saying which were paused or resumed since the last read; an
/// unreadable store keeps the pauses last read.
async fn refresh_pauses(lake: &Lake, pauses: &mut BTreeMap<String, Paused>, shared: &Shared) {
    let read = match paused(lake).await {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!("cannot read the paused DAGs: {e}");
            return;
        }
    };
    for (name, p) in read.iter().filter(|(n, _)| !pauses.contains_key(*n)) {
        let why = if p.why.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.why)
        };
        eprintln!(
            "serve: {name}: schedule paused since {} by {}{why}; no scheduled runs until \
             `krxflow resume {name}`",
            p.since.format("%Y-%m-%d %H:%M:%S UTC"),
            p.by
        );
    }
    for name in pauses.keys().filter(|n| !read.contains_key(*n)) {
        eprintln!("serve: {name}: schedule resumed");
    }
    *lock(&shared.paused) = read.iter().map(|(n, p)| (n.clone(), json!(p))).collect();
    *pauses = read;
}

fn finish(states: &mut BTreeMap<String, DagState>, shared: &Shared, (name, ds, res): Done) {
    lock(&shared.active).remove(&wait::key(&name, ds));
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
