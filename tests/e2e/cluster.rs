//! Scale-out on a real Ray cluster: `krxflow backfill --ray-address` submits each partition as
//! a Ray job (its Job Submission REST API) that runs `krxflow run` over the same lake. The test
//! starts a Ray head (the venv's `ray[default]`, installed by `scripts/setup.sh --tests`) with
//! `tests/cluster/with_ray.sh`, in user, network and PID namespaces of its own (`unshare -r`,
//! no root needed): the namespace keeps Ray's traffic on loopback, and every Ray process ends
//! with the script.

use std::path::Path;
use std::process::Command;

use crate::common::{count, krxflow, repo_root, text};

pub(crate) const RAY: &str = "--ray-address http://127.0.0.1:8265";

/// Runs `commands` (each with `bash -c`) while a Ray head runs; their exit codes and output.
pub(crate) fn with_ray(commands: &[String]) -> Vec<(i32, String)> {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("unshare")
        .args(["-r", "-n", "-p", "-f", "--mount-proc", "bash"])
        .arg(repo_root().join("tests/cluster/with_ray.sh"))
        .arg(out.path())
        .args(commands)
        .current_dir(repo_root())
        .output()
        .expect("unshare runs (util-linux, scripts/setup.sh --tests)");
    assert!(
        o.status.success(),
        "the Ray head did not start:\n{}",
        text(&o)
    );
    (1..=commands.len())
        .map(|n| {
            let rc = std::fs::read_to_string(out.path().join(format!("{n}.rc"))).unwrap();
            let log = std::fs::read_to_string(out.path().join(format!("{n}.log"))).unwrap();
            (rc.trim().parse().unwrap(), log)
        })
        .collect()
}

fn dump(lake: &Path, table: &str, order: &str) -> String {
    let o = krxflow(
        lake,
        &[
            "sql",
            &format!("SELECT * FROM {table} ORDER BY {order}"),
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_backfill_on_ray_writes_what_a_backfill_here_writes_and_says_why_partitions_fail() {
    let bin = env!("CARGO_BIN_EXE_krxflow");
    let here = tempfile::tempdir().unwrap();
    let there = tempfile::tempdir().unwrap();
    let (ok, faulty, unreachable) = (
        there.path().join("ok"),
        there.path().join("faulty"),
        there.path().join("no-binary"),
    );
    // Both from an empty lake, two partitions at a time: Ray may start a later day's job
    // before an earlier one's, which must not change what the earliest day's cold start writes.
    let o = krxflow(
        here.path(),
        &[
            "backfill",
            "demo",
            "--from",
            "2024-12-09",
            "--to",
            "2024-12-13",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // A run that would retry for minutes (every operator run fails, 30 s between tries),
    // interrupted: the driver stops its job on the cluster.
    let slow = there.path().join("slow.yaml");
    std::fs::write(
        &slow,
        "dag: slow\ndefaults:\n  retries: { max: 5, backoff: fixed, base: 30s, jitter: none }\n\
         tasks:\n  ingest:\n    op: ingest.synthetic\n    with: { tickers: 3, seed: 7, lookback_days: 10 }\n\
         \x20   outputs: { bars: ohlcv_daily, news: news, universe: universe }\n",
    )
    .unwrap();
    let python = repo_root().join(".venv/bin/python");
    let running_py = "import json, time, urllib.request\n\
        for _ in range(600):\n\
        \x20   jobs = json.load(urllib.request.urlopen('http://127.0.0.1:8265/api/jobs/'))\n\
        \x20   if any(j['metadata'].get('krxflow_dag') == 'slow' and j['status'] == 'RUNNING' for j in jobs): break\n\
        \x20   time.sleep(0.1)\n\
        else: raise SystemExit('the job never ran')";
    let jobs_py = "import json, urllib.request; \
        print(json.dumps(json.load(urllib.request.urlopen('http://127.0.0.1:8265/api/jobs/'))))";
    let said = with_ray(&[
        format!(
            "{bin} --lake {} backfill demo --from 2024-12-09 --to 2024-12-13 {RAY}",
            ok.display()
        ),
        // Again: the workers' records in the lake say every partition is done; no job.
        format!(
            "{bin} --lake {} backfill demo --from 2024-12-09 --to 2024-12-13 {RAY}",
            ok.display()
        ),
        // Every operator run fails (the fault switch reaches the jobs as a KRXFLOW_ variable):
        // the run fails on the worker after the DAG's retries; submitting it again would not help.
        format!(
            "KRXFLOW_TEST_FAULTS=op=1 {bin} --lake {} backfill demo --from 2024-12-16 --to 2024-12-16 {RAY}",
            faulty.display()
        ),
        // The workers have no binary at that path: the job fails around the run, and is
        // submitted again, three times in all.
        format!(
            "{bin} --lake {} backfill demo --from 2024-12-16 --to 2024-12-16 {RAY} --ray-krxflow /nonexistent/krxflow",
            unreachable.display()
        ),
        // Interrupted once its job runs (Ray says so), however slow the machine is.
        format!(
            "set -m; KRXFLOW_TEST_FAULTS=op=1 {bin} --lake {} backfill {} --from 2024-12-16 --to 2024-12-16 {RAY} & \
             {} -c \"{running_py}\" && kill -INT %1; wait %1; echo \"exit $?\"",
            there.path().join("slow-lake").display(),
            slow.display(),
            python.display(),
        ),
        format!(
            "{}/.venv/bin/python -c \"{jobs_py}\"",
            repo_root().display()
        ),
    ]);

    let (rc, log) = &said[0];
    assert_eq!(*rc, 0, "{log}");
    assert!(log.contains("DAG runs go to Ray 2.60.0 at"), "{log}");
    for (table, order) in [
        ("ohlcv_daily", "code, date"),
        ("features_returns", "code, date"),
    ] {
        let (a, b) = (dump(here.path(), table, order), dump(&ok, table, order));
        assert!(a.lines().count() > 100, "{table}: {a}");
        let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
        assert!(
            a == b,
            "{table} differs between the backfill here ({} lines) and on Ray ({}); first: {first:?}",
            a.lines().count(),
            b.lines().count()
        );
    }
    assert_eq!(
        count(
            &ok,
            "SELECT count(*) FROM _krxflow.runs WHERE trigger = 'backfill' AND state = 'succeeded'"
        ),
        5
    );
    assert_eq!(
        count(
            &ok,
            "SELECT count(*) FROM _krxflow.backfills WHERE state = 'succeeded'"
        ),
        2,
        "the backfill and its re-run, both recorded"
    );

    let (rc, log) = &said[1];
    assert_eq!(*rc, 0, "{log}");
    assert!(log.contains("skipped  5"), "{log}");

    let (rc, log) = &said[2];
    assert_eq!(*rc, 1, "{log}");
    assert!(
        log.contains("demo 2024-12-16: the run failed on the cluster"),
        "{log}"
    );
    assert!(
        log.contains("(exit code 1)") && log.contains("failed on purpose"),
        "{log}"
    );
    assert!(!log.contains("submitting again"), "{log}");

    let (rc, log) = &said[3];
    assert_eq!(*rc, 1, "{log}");
    assert!(
        log.contains("attempt 1/3") && log.contains("attempt 2/3"),
        "{log}"
    );
    assert!(log.contains("the job failed on all 3 attempts"), "{log}");
    assert!(log.contains("(exit code 127)"), "{log}");

    // What Ray saw: one job per partition here, one for the failed run, three for the binary
    // it could not find, one stopped; each named with its DAG and day.
    let (rc, log) = &said[4];
    assert_eq!(*rc, 0, "{log}");
    assert!(
        log.contains("interrupt") && log.contains("cancelled"),
        "{log}"
    );
    assert!(log.trim_end().ends_with("exit 1"), "{log}");

    let (rc, listed) = &said[5];
    assert_eq!(*rc, 0, "{listed}");
    let jobs: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    let mut seen: Vec<(String, String)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["metadata"]["krxflow_ds"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                j["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = ["09", "10", "11", "12", "13"]
        .iter()
        .map(|d| (format!("2024-12-{d}"), "SUCCEEDED".to_string()))
        .collect();
    want.extend(std::iter::repeat_n(
        ("2024-12-16".to_string(), "FAILED".to_string()),
        4,
    ));
    want.push(("2024-12-16".to_string(), "STOPPED".to_string()));
    assert_eq!(seen, want);
}

#[test]
fn the_scheduler_on_ray_runs_its_due_days_as_jobs() {
    let bin = env!("CARGO_BIN_EXE_krxflow");
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir(&dags).unwrap();
    std::fs::write(
        dags.join("tiny.yaml"),
        "dag: tiny\nschedule: { cron: \"0 0 16 * * Mon-Fri\", timezone: Asia/Seoul, calendar: krx }\n\
         tasks:\n  ingest:\n    op: ingest.synthetic\n    with: { tickers: 3, seed: 7, lookback_days: 10 }\n\
         \x20   outputs: { bars: ohlcv_daily, news: news, universe: universe }\n",
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let succeeded = format!(
        "{bin} --lake {} sql \"SELECT count(*) FROM _krxflow.runs WHERE dag = 'tiny' \
         AND trigger = 'schedule' AND state = 'succeeded'\" --format csv 2>/dev/null | sed -n 2p",
        lake.display()
    );
    let python = repo_root().join(".venv/bin/python");
    let said = with_ray(&[
        // On its first start the scheduler runs the latest due day; here, as a job on Ray.
        format!(
            "set -m; {bin} --lake {} serve --dags {} --listen 127.0.0.1:0 {RAY} & \
             for i in $(seq 240); do [ \"$({succeeded})\" = 1 ] && break; sleep 0.5; done; \
             kill -TERM %1; wait %1; echo \"exit $?\"",
            lake.display(),
            dags.display()
        ),
        format!(
            "{} -c \"import json, urllib.request; print(json.dumps([(j['metadata'].get('krxflow_dag'), j['status']) \
             for j in json.load(urllib.request.urlopen('http://127.0.0.1:8265/api/jobs/'))]))\"",
            python.display()
        ),
    ]);
    let (rc, log) = &said[0];
    assert_eq!(*rc, 0, "{log}");
    assert!(log.contains("DAG runs go to Ray 2.60.0 at"), "{log}");
    assert!(
        log.contains("serve: tiny ") && log.contains(": succeeded"),
        "{log}"
    );
    assert!(log.trim_end().ends_with("exit 0"), "{log}");
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM _krxflow.runs WHERE dag = 'tiny' AND trigger = 'schedule' \
             AND state = 'succeeded'"
        ),
        1
    );
    let (rc, listed) = &said[1];
    assert_eq!(*rc, 0, "{listed}");
    let jobs: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(jobs, serde_json::json!([["tiny", "SUCCEEDED"]]), "{listed}");
}
