//! End-to-end `krxflow serve`: scheduled runs, /metrics /healthz /runs over real HTTP, invalid
//! DAGs reported, hot reload, one scheduler per lake, SIGTERM, and a SIGKILLed scheduler's
//! lease expiring.

use crate::common::{repo_root, wait_for};
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
    assert!(lake.join("_krxflow/leases/scheduler.json").exists());
    let t0 = Instant::now();
    let second = start(&lake, &dags, &["--wait"]);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(get(&second.addr, "/healthz").0, 200);
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
