//! observability/: every metric the dashboards and alerts use is exported; promtool accepts
//! the config and rules and the alert unit tests pass; a real Prometheus scrapes
//! `krxflow serve`; a real Pushgateway receives a one-shot run's metrics.
//!
//! promtool, prometheus and prometheus-pushgateway come from scripts/setup.sh (Debian packages).

use crate::common::{repo_root, wait_for};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn obs(file: &str) -> PathBuf {
    repo_root().join("observability").join(file)
}

pub(crate) fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run scripts/setup.sh (Debian package)");
}

fn exprs_in(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs_in(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs_in(x, out)),
        _ => {}
    }
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("krxflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Family name of an exposed series name (`_bucket`/`_count`/`_sum` of a histogram).
fn family(name: &str) -> String {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix)
            && base.ends_with("_seconds")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// Every family /metrics exports once each kind of event happened.
fn exported() -> BTreeSet<String> {
    let m = krxflow_metrics::Metrics::new();
    m.attempt_started("d", "t", 2);
    m.task_finished("d", "t", "succeeded", 1.0);
    m.rows_written("t", 1);
    m.rejects("t_rejects", "zero_volume", 1);
    m.check("d", "t", "c", "warn", "failed");
    m.run_finished("d", "succeeded", 1.0, 0);
    m.expected_ds("d", 0);
    m.backfill_progress("d", 1, 0, 0, 1);
    m.scheduler_loop(0.0);
    m.tick_lag(0.0);
    m.dags_loaded(1, 0);
    m.next_tick("d", 0.0);
    m.active_runs("d", 0);
    m.paused("p", true);
    m.inference("chronos", 0.1);
    m.model_quality("005930", 1, "lgbm", Some(0.5), 0.5);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_dashboards_and_alerts_use_is_exported_and_every_metric_is_used() {
    let dash: serde_json::Value =
        serde_json::from_slice(&std::fs::read(obs("grafana/krxflow.json")).unwrap()).unwrap();
    let alerts: serde_json::Value =
        serde_norway::from_slice(&std::fs::read(obs("alerts.yml")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    exprs_in(&dash, &mut exprs);
    let panel_exprs = exprs.len();
    exprs_in(&alerts, &mut exprs);
    assert!(panel_exprs >= 20, "dashboard has {panel_exprs} queries");
    assert!(exprs.len() - panel_exprs >= 5, "alert rules");

    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .map(|n| family(&n))
        .collect();
    let exported = exported();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    let declared: BTreeSet<String> = krxflow_metrics::DECLARED
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(exported, declared, "every declared family is exported");
    let unused: Vec<&String> = declared.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "exported but on no panel or alert: {unused:?}"
    );
}

#[test]
fn promtool_accepts_the_config_and_rules_and_the_alert_unit_tests_pass() {
    let promtool = tool("promtool");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let o = Command::new(&promtool)
            .current_dir(repo_root().join("observability"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

pub(crate) struct Killed(pub(crate) Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_serve_and_sees_task_durations() {
    let prometheus = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("tick.yaml"),
        r#"dag: tick
schedule: { cron: "*/2 * * * * *", timezone: Asia/Seoul, calendar: daily }
tasks:
  ingest:
    op: ingest.synthetic
    with: { tickers: 3, seed: 7, lookback_days: 10 }
    outputs: { bars: ohlcv_daily, news: news, universe: universe }
"#,
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", dir.path().join("lake"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dags"])
        .arg(&dags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut serve_out = BufReader::new(serve.stdout.take().unwrap());
    serve_out.read_line(&mut first).unwrap();
    let _serve = Killed(serve);
    let target = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n  - job_name: krxflow\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prom = Killed(prom);

    let query = "/api/v1/query?query=krxflow_task_duration_seconds_count%7Bdag%3D%22tick%22%7D%3E0";
    wait_for(
        "Prometheus to see a task duration from krxflow serve",
        120,
        || {
            http_get(&prom_addr, query).is_some_and(|r| {
                r.contains("\"status\":\"success\"") && r.contains("\"task\":\"ingest\"")
            })
        },
    );
    let up = http_get(
        &prom_addr,
        "/api/v1/query?query=up%7Bjob%3D%22krxflow%22%7D",
    )
    .unwrap();
    assert!(up.contains("\"1\"]"), "{up}");
}

#[test]
fn a_one_shot_run_pushes_its_metrics_to_a_real_pushgateway() {
    let gateway = tool("prometheus-pushgateway");
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let gw = Command::new(gateway)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _gw = Killed(gw);
    wait_for("the pushgateway to listen", 30, || {
        http_get(&addr, "/-/ready").is_some()
    });
    let o = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", dir.path().join("lake"))
        .args(["run", "demo", "--date", "2024-12-16", "--pushgateway"])
        .arg(format!("http://{addr}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not pushed"));
    let m = http_get(&addr, "/metrics").unwrap();
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("krxflow_task_duration_seconds_count{")
                && l.contains("command=\"run\"")
                && l.contains("dag=\"demo\"")
                && l.contains("task=\"ingest\"")
        })
        .unwrap_or_else(|| panic!("no pushed task duration in\n{m}"));
    assert!(line.ends_with(" 1"), "{line}");
}
