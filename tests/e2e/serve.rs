//! End-to-end `krxflow serve`: scheduled runs, /metrics /healthz /runs over real HTTP, invalid
//! DAGs reported, hot reload, one scheduler per lake, SIGTERM, and a SIGKILLed scheduler's
//! lease expiring, with claimants racing for it.

use crate::common::{count, krxflow, parquet_files, repo_root, small_dag, text, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A DAG ticking every `secs` seconds on every calendar day (the test must not depend on
/// today being a KRX trading day).
fn ticking_dag(name: &str, secs: u32) -> String {
    format!(
        r#"dag: {name}
schedule: {{ cron: "*/{secs} * * * * *", timezone: Asia/Seoul, calendar: daily }}
tasks:
  ingest:
    op: ingest.synthetic
    with: {{ tickers: 3, seed: 7, lookback_days: 10 }}
    outputs: {{ bars: ohlcv_daily, news: news, universe: universe }}
  returns:
    op: features.returns
    inputs: {{ bars: ohlcv_daily }}
    outputs: {{ features: features_returns }}
"#
    )
}

struct Serve {
    child: Child,
    addr: String,
    /// Kept open: the daemon prints a last line when it stops.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(lake: &Path, dags: &Path, extra: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake)
        .args(["serve", "--dags"])
        .arg(dags)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in `{first}`"))
        .to_string();
    Serve {
        child,
        addr,
        _stdout: stdout,
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn serve_schedules_runs_and_reports_them_over_http_with_reload_and_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("tick.yaml"), ticking_dag("tick", 2)).unwrap();
    std::fs::write(
        dags.join("broken.yaml"),
        "dag: broken\ntasks:\n  a:\n    op: no.such\n",
    )
    .unwrap();
    let mut s = start(&lake, &dags, &["--grace", "20s"]);

    // Before any run: the scheduler's own series are there.
    let (code, m) = get(&s.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(m.contains("krxflow_build_info{version="), "{m}");
    assert!(
        m.contains("krxflow_scheduler_dags{state=\"invalid\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("krxflow_scheduler_dags{state=\"loaded\"} 1"),
        "{m}"
    );
    assert!(m.contains("krxflow_scheduler_next_tick_timestamp_seconds{dag=\"tick\"}"));
    let (code, h) = get(&s.addr, "/healthz");
    assert_eq!(code, 200, "{h}");
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(h["status"], "ok");
    assert!(
        h["dags_invalid"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("no.such")
    );

    // A scheduled run happens and is visible in /runs and /metrics.
    wait_for("a scheduled run", 120, || {
        let (_, r) = get(&s.addr, "/runs");
        r.contains("\"state\":\"succeeded\"")
    });
    let (_, m) = get(&s.addr, "/metrics");
    assert!(
        m.contains(
            "krxflow_task_duration_seconds_count{dag=\"tick\",state=\"succeeded\",task=\"ingest\"}"
        ),
        "{m}"
    );
    assert!(m.contains("krxflow_dag_runs_total{dag=\"tick\",state=\"succeeded\"}"));

    // A second scheduler on the same lake refuses to start.
    let o = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", &lake)
        .args(["serve", "--listen", "127.0.0.1:0", "--dags"])
        .arg(&dags)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another scheduler holds this lake"));

    // Hot reload: a new file is picked up, the fixed broken one too.
    std::fs::write(dags.join("second.yaml"), ticking_dag("second", 3)).unwrap();
    std::fs::remove_file(dags.join("broken.yaml")).unwrap();
    wait_for("the reload", 30, || {
        let (_, h) = get(&s.addr, "/healthz");
        h.contains("\"second\"") && h.contains("\"dags_invalid\":[]")
    });

    // SIGTERM: drains and exits 0, releasing the lease so the next start is immediate.
    sigterm(&s.child);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let again = start(&lake, &dags, &[]);
    assert_eq!(get(&again.addr, "/healthz").0, 200);
}

#[test]
fn a_killed_schedulers_lease_expires_and_a_waiting_one_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("tick.yaml"), ticking_dag("tick", 5)).unwrap();
    let mut first = start(&lake, &dags, &["--lease-ttl", "2s"]);
    first.child.kill().unwrap(); // SIGKILL: the lease stays behind
    first.child.wait().unwrap();
    assert!(
        lake.join("_krxflow/leases/scheduler")
            .read_dir()
            .unwrap()
            .count()
            > 0
    );
    let t0 = Instant::now();
    let second = start(&lake, &dags, &["--wait"]);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(get(&second.addr, "/healthz").0, 200);
}

/// Three `serve --wait` started together behind a SIGKILLed holder: exactly one takes the
/// lease and schedules, the others keep waiting while it renews.
#[test]
fn three_waiting_schedulers_behind_a_killed_one_exactly_one_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("tick.yaml"), ticking_dag("tick", 5)).unwrap();
    let mut dead = start(&lake, &dags, &["--lease-ttl", "2s"]);
    dead.child.kill().unwrap(); // SIGKILL: the lease stays behind
    dead.child.wait().unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let mut waiting: Vec<Child> = (0..3)
        .map(|i| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_krxflow"))
                .current_dir(repo_root())
                .env("KRXFLOW_LAKE", &lake)
                .args(["serve", "--wait", "--lease-ttl", "3s", "--dags"])
                .arg(&dags)
                .args(["--listen", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                // The first line (the address) is printed once the lease is held.
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send((i, line));
                }
                for _ in lines {} // keep the pipe open
            });
            child
        })
        .collect();
    let (winner, line) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("one waiting scheduler must take the expired lease");
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    // Past two more lease lifetimes: the winner renews, nobody else starts.
    assert!(
        rx.recv_timeout(Duration::from_secs(8)).is_err(),
        "a second scheduler started beside #{winner}"
    );
    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 200);
    let holder = std::fs::read_dir(lake.join("_krxflow/leases/scheduler"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let holder: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(holder).unwrap()).unwrap();
    let owner = holder["owner"].as_str().unwrap();
    assert!(body.contains(owner), "{owner} not in {body}");
    for (i, c) in waiting.iter_mut().enumerate() {
        if i != winner {
            assert!(c.try_wait().unwrap().is_none(), "#{i} gave up waiting");
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The retention policy: serve vacuums on its interval; meanwhile a short-window
/// `krxflow vacuum` is refused, since the scheduler's runs may be reading older files.
#[test]
fn serve_vacuums_on_its_interval_and_a_short_manual_vacuum_is_refused_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    let dag = small_dag(dir.path(), "small");
    crate::vacuum::written_and_compacted(&lake, &dag);
    let table = lake.join("ohlcv_daily");
    let stored = parquet_files(&table);
    let _serve = start(
        &lake,
        &dags,
        &["--vacuum-every", "1s", "--vacuum-retain", "0s"],
    );
    let refused = krxflow(&lake, &["vacuum", "--retain", "0s"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("scheduler"), "{}", text(&refused));
    wait_for("serve's vacuum", 30, || parquet_files(&table) < stored);
}

/// A daily DAG with a catch-up policy, at most one run at a time.
fn daily_dag(name: &str, catchup: &str) -> String {
    format!(
        r#"dag: {name}
schedule: {{ cron: "0 0 0 * * *", timezone: Asia/Seoul, calendar: daily, catchup: {catchup} }}
max_active_runs: 1
tasks:
  ingest:
    op: ingest.synthetic
    with: {{ tickers: 3, seed: 7, lookback_days: 10 }}
    outputs: {{ bars: bars_{name}, news: news_{name}, universe: universe_{name} }}
"#
    )
}

/// A midnight DAG `<prefix>_<catchup>` (file `<catchup>.yaml`) per catch-up policy, and a saved
/// scheduler state whose last tick for each is 4 days old, as if the scheduler had been down
/// since; returns now.
fn four_days_down(
    lake: &Path,
    dags: &Path,
    prefix: &str,
    catchups: &[&str],
) -> chrono::DateTime<chrono::Utc> {
    std::fs::create_dir_all(dags).unwrap();
    std::fs::create_dir_all(lake.join("_krxflow/control")).unwrap();
    let now = chrono::Utc::now();
    let last = (now - chrono::Duration::days(4)).to_rfc3339();
    let mut state = serde_json::Map::new();
    for c in catchups {
        let name = format!("{prefix}_{c}");
        std::fs::write(dags.join(format!("{c}.yaml")), daily_dag(&name, c)).unwrap();
        state.insert(name, serde_json::json!({"last_tick": last, "pending": []}));
    }
    std::fs::write(
        lake.join("_krxflow/control/scheduler_state.json"),
        serde_json::Value::Object(state).to_string(),
    )
    .unwrap();
    now
}

/// How many runs of `dag` succeeded (0 before any run was recorded).
fn succeeded_runs(lake: &Path, dag: &str) -> i64 {
    if !lake.join("_krxflow/runs/_delta_log").exists() {
        return 0;
    }
    count(
        lake,
        &format!("SELECT count(*) FROM _krxflow.runs WHERE dag = '{dag}' AND state = 'succeeded'"),
    )
}

/// After four days down (the saved state's last tick is 4 days old), `catchup: all` runs the
/// four missed days oldest first and one at a time (`max_active_runs: 1`), `latest` runs the
/// newest only, `none` runs none.
#[test]
fn after_downtime_catchup_all_latest_and_none_run_four_one_and_no_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    let now = four_days_down(&lake, &dags, "c", &["all", "latest", "none"]);
    let serve = start(&lake, &dags, &[]);
    let runs = |dag: &str| succeeded_runs(&lake, dag);
    wait_for("four catch-up runs", 90, || runs("c_all") == 4);
    // Midnight KST ticks in (now - 4 days, now]: four, the newest today's.
    let kst_midnight_age =
        (now.with_timezone(&chrono_tz::Asia::Seoul).time() - chrono::NaiveTime::MIN).num_seconds();
    let none_expected = i64::from(kst_midnight_age <= 60); // a tick under a minute old is on time
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs("c_all"), 4);
    assert_eq!(runs("c_latest"), 1);
    assert_eq!(runs("c_none"), none_expected);
    let days = count(
        &lake,
        "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE dag = 'c_all'",
    );
    assert_eq!(days, 4, "one run per missed day");
    // One at a time: each run started after the one before it ended.
    let overlaps = count(
        &lake,
        "SELECT count(*) FROM _krxflow.runs a JOIN _krxflow.runs b \
         ON a.dag = b.dag AND a.run_id < b.run_id \
         WHERE a.dag = 'c_all' AND a.started < b.ended AND b.started < a.ended",
    );
    assert_eq!(overlaps, 0, "max_active_runs: 1");
    let oldest_first = count(
        &lake,
        "SELECT count(*) FROM _krxflow.runs a JOIN _krxflow.runs b ON a.dag = b.dag \
         WHERE a.dag = 'c_all' AND a.ds < b.ds AND a.started > b.started",
    );
    assert_eq!(oldest_first, 0, "missed days run oldest first");
    drop(serve);
}

/// A paused DAG gets no scheduled run while the others run; `/healthz` and `/metrics` say it
/// is paused and why; once resumed, its `catchup: all` runs the four days it missed.
#[test]
fn a_paused_schedule_waits_and_its_catchup_runs_the_missed_days_once_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    four_days_down(&lake, &dags, "p", &["all", "latest"]);
    let file = dags.join("all.yaml");
    let paused = krxflow(
        &lake,
        &["pause", file.to_str().unwrap(), "--why", "vendor outage"],
    );
    assert!(paused.status.success(), "{}", text(&paused));
    let listed = text(&krxflow(&lake, &["pause"]));
    assert!(
        listed.contains("p_all") && listed.contains("vendor outage"),
        "{listed}"
    );

    let serve = start(&lake, &dags, &[]);
    let runs = |dag: &str| succeeded_runs(&lake, dag);
    wait_for("the unpaused DAG's run", 90, || runs("p_latest") == 1);
    let (_, h) = get(&serve.addr, "/healthz");
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(h["dags_paused"]["p_all"]["why"], "vendor outage", "{h}");
    let (_, m) = get(&serve.addr, "/metrics");
    assert!(
        m.contains("krxflow_scheduler_paused{dag=\"p_all\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("krxflow_scheduler_paused{dag=\"p_latest\"} 0"),
        "{m}"
    );
    assert!(
        !m.contains("krxflow_dag_expected_ds_timestamp_seconds{dag=\"p_all\"}"),
        "a paused DAG is expected nowhere, so it raises no lateness alert: {m}"
    );
    // Longer than the scheduler takes to read the pauses again and to start a due run.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(runs("p_all"), 0, "no scheduled run while paused");

    // Resumed by its name (as `krxflow pause` lists it): catchup all runs the four days.
    let resumed = krxflow(&lake, &["resume", "p_all"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("resumed p_all's schedule"),
        "{}",
        text(&resumed)
    );
    wait_for("the four missed days", 90, || runs("p_all") == 4);
    let (_, m) = get(&serve.addr, "/metrics");
    assert!(
        m.contains("krxflow_scheduler_paused{dag=\"p_all\"} 0"),
        "{m}"
    );
    assert_eq!(runs("p_latest"), 1);
    assert_eq!(
        text(&krxflow(&lake, &["pause"])).trim(),
        "no DAG's schedule is paused"
    );
    drop(serve);
}

/// `schedule.wait_for`: a due partition waits (seen in `/healthz`) until the DAG it waits for
/// has succeeded for the same day, then starts at once; with a short timeout it starts anyway;
/// a wait for a DAG no file defines is an invalid DAG.
#[test]
fn a_schedule_waiting_for_another_dag_starts_once_that_dag_succeeded_for_the_day() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    let waiting = |name: &str, wait_for: &str| {
        daily_dag(name, "latest").replace(
            "catchup: latest }",
            &format!("catchup: latest, wait_for: {wait_for} }}"),
        )
    };
    std::fs::write(dags.join("up.yaml"), daily_dag("w_up", "latest")).unwrap();
    std::fs::write(
        dags.join("down.yaml"),
        waiting("w_down", "{ dags: [w_up] }"),
    )
    .unwrap();
    std::fs::write(
        dags.join("late.yaml"),
        waiting("w_late", "{ dags: [w_up], timeout: 3s }"),
    )
    .unwrap();
    std::fs::write(dags.join("bad.yaml"), waiting("w_bad", "{ dags: [w_upp] }")).unwrap();
    let up = dags.join("up.yaml");
    let paused = krxflow(&lake, &["pause", up.to_str().unwrap()]);
    assert!(paused.status.success(), "{}", text(&paused));

    let serve = start(&lake, &dags, &[]);
    let runs = |dag: &str| succeeded_runs(&lake, dag);
    let health =
        || -> serde_json::Value { serde_json::from_str(&get(&serve.addr, "/healthz").1).unwrap() };
    wait_for("the wait with a timeout to run anyway", 60, || {
        runs("w_late") == 1
    });
    let h = health();
    let down = h["waiting"]
        .as_object()
        .and_then(|a| a.iter().find(|(k, _)| k.starts_with("w_down@")))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("w_down is not waiting: {h}"));
    assert_eq!(
        down["waiting_for"],
        serde_json::json!(["w_up (no run)"]),
        "{h}"
    );
    assert_eq!(
        h["active_runs"], 0,
        "a waiting partition is not a running one: {h}"
    );
    assert_eq!(runs("w_down"), 0);
    let invalid = h["dags_invalid"].to_string();
    assert!(
        invalid.contains("names `w_upp` (did you mean `w_up`?), which no valid DAG file defines"),
        "{h}"
    );

    let resumed = krxflow(&lake, &["resume", "w_up"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    wait_for("the waiting DAG to start after w_up", 60, || {
        runs("w_down") == 1
    });
    let (started_after, up_ended) = (
        count(
            &lake,
            "SELECT count(*) FROM _krxflow.runs d, _krxflow.runs u WHERE d.dag = 'w_down' \
             AND d.state = 'running' AND u.dag = 'w_up' AND u.state = 'succeeded' \
             AND d.started >= u.ended AND d.ds = u.ds",
        ),
        runs("w_up"),
    );
    assert_eq!(
        (started_after, up_ended),
        (1, 1),
        "w_down started after w_up ended"
    );
    assert_eq!(runs("w_late"), 1);
    drop(serve);
}

/// SIGHUP re-validates the DAG folder although no file changed: a DAG whose input table did
/// not exist becomes valid once another run created it.
#[test]
fn sighup_reloads_dags_whose_validity_changed_without_a_file_change() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("late.yaml"),
        "dag: late\ntasks:\n  returns:\n    op: features.returns\n    inputs: { bars: extra_bars }\n    outputs: { features: extra_returns }\n",
    )
    .unwrap();
    let serve = start(&lake, &dags, &[]);
    let loaded = || {
        let body = get(&serve.addr, "/healthz").1;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["dags_loaded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "late")
    };
    let body = get(&serve.addr, "/healthz").1;
    assert!(
        body.contains("dags_invalid") && body.contains("late"),
        "{body}"
    );
    assert!(!loaded(), "{body}");

    let maker = dir.path().join("maker.yaml");
    std::fs::write(
        &maker,
        "dag: maker\ntasks:\n  ingest:\n    op: ingest.synthetic\n    with: { tickers: 2, seed: 1, lookback_days: 5 }\n    outputs: { bars: extra_bars, news: extra_news, universe: extra_universe }\n",
    )
    .unwrap();
    let o = krxflow(
        &lake,
        &["run", maker.to_str().unwrap(), "--date", "2024-12-16"],
    );
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_secs(3)); // file polling alone changes nothing
    assert!(!loaded());

    let ok = Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for("the reload after SIGHUP", 20, loaded);
}

#[test]
fn sigterm_cancels_after_the_grace_period_and_a_restart_resumes_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, dags) = (dir.path().join("lake"), dir.path().join("dags"));
    std::fs::create_dir_all(&dags).unwrap();
    // Ticks at midnight KST; on first sight the scheduler runs the latest due partition. Big
    // enough to still be running when SIGTERM arrives.
    std::fs::write(
        dags.join("slow.yaml"),
        r#"dag: slow
schedule: { cron: "0 0 0 * * *", timezone: Asia/Seoul, calendar: daily }
tasks:
  ingest:
    op: ingest.synthetic
    with: { tickers: 300, seed: 7, lookback_days: 1500 }
    outputs: { bars: ohlcv_daily, news: news, universe: universe }
  returns:
    op: features.returns
    inputs: { bars: ohlcv_daily }
    outputs: { features: features_returns }
"#,
    )
    .unwrap();
    let mut s = start(&lake, &dags, &["--grace", "1s"]);
    let mut ds = String::new();
    wait_for("the first-sight run to start", 30, || {
        let (_, r) = get(&s.addr, "/runs");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        match v["active"][0]["ds"].as_str() {
            Some(d) => {
                ds = d.to_string();
                true
            }
            None => false,
        }
    });
    sigterm(&s.child);
    let mut rest = String::new();
    s._stdout.read_to_string(&mut rest).unwrap();
    assert!(s.child.wait().unwrap().success());
    assert!(rest.contains("1 partitions left"), "{rest}");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join("_krxflow/control/scheduler_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["slow"]["pending"][0], ds.as_str(), "{state}");

    // Restart: the unfinished partition runs first and succeeds.
    let again = start(&lake, &dags, &[]);
    wait_for("the resumed partition to succeed", 240, || {
        let (_, r) = get(&again.addr, "/runs");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        v["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["ds"] == ds.as_str() && x["state"] == "succeeded" && x["tasks"].is_array())
    });
    let o = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", &lake)
        .args([
            "sql",
            "SELECT state FROM _krxflow.runs WHERE ended IS NOT NULL ORDER BY ended",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    let states = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        states
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        ["cancelled", "succeeded"],
        "{states}"
    );
}
