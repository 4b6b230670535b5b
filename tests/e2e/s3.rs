//! The lake on a real S3-compatible server: moto's standalone server (`moto[server]`, installed
//! into the project's venv by `scripts/setup.sh --tests`), started by each test on a loopback
//! port, and spoken to over HTTP with signed requests and conditional puts as S3 is.
//! These run with the S3 build (`cargo test -p krxflow-cli --features s3 --test e2e s3::`,
//! a step of scripts/test.sh); the default build checks that an `s3://` lake is refused with
//! the rebuild hint.

#[cfg(feature = "s3")]
use std::process::{Child, Command, Stdio};

#[cfg(feature = "s3")]
use crate::common::{krxflow, krxflow_with, repo_root, text, wait_for};

/// A moto server on a free loopback port, stopped when dropped.
#[cfg(feature = "s3")]
struct S3Server {
    child: Child,
    endpoint: String,
}

#[cfg(feature = "s3")]
impl S3Server {
    fn start() -> Self {
        let port = crate::observability::free_port();
        let bin = repo_root().join(".venv/bin/moto_server");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not start ({e}): run scripts/setup.sh --tests",
                    bin.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = Self { child, endpoint };
        wait_for("the S3 server", 60, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    /// Creates `bucket` (users create their bucket; krxflow writes under a prefix of it).
    fn bucket(&self, bucket: &str) {
        let r = ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_empty()
            .expect("bucket created");
        assert_eq!(r.status(), 200);
    }

    /// The environment krxflow (and Python's deltalake) read the endpoint and keys from.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "krxflow-test"),
            ("AWS_SECRET_ACCESS_KEY", "krxflow-test-secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

#[cfg(feature = "s3")]
impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "s3")]
#[test]
fn the_loop_on_an_s3_lake_writes_what_it_writes_to_a_folder_and_other_readers_read_it() {
    use crate::prediction_loop::{LOOP_TABLES, UPSTREAM_TABLES, dump_with};

    let s3 = S3Server::start();
    s3.bucket("krxflow-lake");
    let env = s3.env();
    let url = "s3://krxflow-lake/team/lake";
    let folder = tempfile::tempdir().unwrap();
    let on_s3 = |args: &[&str]| krxflow_with(url, &env, args);
    let on_folder = |args: &[&str]| krxflow(folder.path(), args);
    let steps: [&[&str]; 6] = [
        // The models are artifacts in the lake too: a sentiment model, a Sunday's retrains.
        &["run", "sentiment_lexical", "--date", "2024-12-12"],
        &["run", "daily_batch", "--date", "2024-12-13"],
        &["run", "retrain_weekly", "--date", "2024-12-15"],
        &["run", "retrain_linear", "--date", "2024-12-15"],
        &[
            "backfill",
            "daily_batch",
            "match_outcomes",
            "--from",
            "2024-12-16",
            "--to",
            "2024-12-17",
        ],
        // A re-run of a day rewrites its partitions: nothing is duplicated.
        &["run", "daily_batch", "--date", "2024-12-17"],
    ];
    for args in steps {
        for run in [&on_s3 as &dyn Fn(&[&str]) -> _, &on_folder] {
            let o = run(args);
            assert!(o.status.success(), "{args:?}: {}", text(&o));
        }
    }
    let same_rows = |when: &str| {
        for tables in [LOOP_TABLES, UPSTREAM_TABLES] {
            let (a, b) = (dump_with(&on_s3, tables), dump_with(&on_folder, tables));
            for ((table, x), (_, y)) in a.iter().zip(&b) {
                assert!(x.lines().count() > 1, "{table} is empty on S3 {when}");
                assert_eq!(x, y, "{table} differs between S3 and a folder {when}");
            }
        }
    };
    same_rows("after the loop");
    // Housekeeping lists and deletes objects: a compaction, then a vacuum that keeps no time
    // travel, delete the files re-runs replaced and leave every table's rows as they were.
    let o = on_s3(&["compact"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = on_s3(&["--json", "vacuum", "--retain", "0s"]);
    assert!(o.status.success(), "{}", text(&o));
    let vacuumed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let deleted: usize = vacuumed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["files"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(deleted > 0, "the vacuum deleted nothing: {vacuumed}");
    same_rows("after compact and vacuum");
    // The lake's own objects are where S3 users look for them, under the prefix.
    let listed = on_s3(&["--json", "tables"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let names = String::from_utf8_lossy(&listed.stdout).to_string();
    for t in ["predictions", "ohlcv_daily", "_krxflow/task_runs"] {
        assert!(
            names.contains(&format!("\"{t}\"")),
            "{t} not listed: {names}"
        );
    }
    crate::interop::readers_agree_with_krxflow_sql(std::ffi::OsStr::new(url), &env);
}

#[cfg(feature = "s3")]
#[test]
fn a_run_against_a_bucket_that_does_not_exist_fails_naming_it() {
    let s3 = S3Server::start();
    let t0 = std::time::Instant::now();
    let o = krxflow_with(
        "s3://no-such-bucket/lake",
        &s3.env(),
        &["run", "daily_batch", "--date", "2024-12-13"],
    );
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("the bucket `no-such-bucket` does not exist: create it"),
        "{said}"
    );
    // One line that says what to fix, not the store's XML answer.
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    // A missing bucket is an answer, not an outage: it is not retried for minutes.
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
}

/// Pausing a schedule writes, lists and deletes its control object on S3 as on a folder.
#[cfg(feature = "s3")]
#[test]
fn a_schedule_is_paused_listed_and_resumed_on_an_s3_lake() {
    let s3 = S3Server::start();
    s3.bucket("paused");
    let lake = "s3://paused/lake";
    let o = krxflow_with(
        lake,
        &s3.env(),
        &["pause", "daily_batch", "demo", "--why", "audit"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let listed = krxflow_with(lake, &s3.env(), &["--json", "pause"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v["daily_batch"]["why"], "audit", "{v}");
    assert_eq!(v["demo"]["why"], "audit", "{v}");
    let o = krxflow_with(lake, &s3.env(), &["resume", "demo"]);
    assert!(text(&o).contains("resumed demo's schedule"), "{}", text(&o));
    let listed = krxflow_with(lake, &s3.env(), &["--json", "pause"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["daily_batch"]
    );
}

#[cfg(not(feature = "s3"))]
#[test]
fn an_s3_lake_without_the_s3_build_is_refused_with_the_rebuild_hint() {
    let o = crate::common::krxflow_with(
        "s3://bucket/lake",
        &[],
        &["run", "daily_batch", "--date", "2024-12-13"],
    );
    let said = crate::common::text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("built without S3 support"), "{said}");
    assert!(said.contains("--features s3"), "{said}");
}

#[cfg(feature = "s3")]
#[test]
fn concurrent_runs_on_one_s3_lake_lose_no_commit() {
    // Four processes write the same tables (bars, features and the engine's run records) at
    // once. S3 has no rename: each Delta commit is a put-if-absent of the next log entry, so
    // of two writers racing for a version one is refused and commits again on top. A store
    // that let the second put overwrite the first would lose that run's rows here.
    let s3 = S3Server::start();
    s3.bucket("krxflow-race");
    let env = s3.env();
    let url = "s3://krxflow-race/lake";
    let dir = tempfile::tempdir().unwrap();
    let dag = crate::common::small_dag(dir.path(), "race");
    let dag = dag.to_str().unwrap();
    let first = krxflow_with(url, &env, &["run", dag, "--date", "2024-01-15"]);
    assert!(first.status.success(), "{}", text(&first));
    // Months apart, so no run's 10-day window holds another's day.
    let dates = ["2024-03-15", "2024-05-14", "2024-07-15", "2024-09-13"];
    let children: Vec<_> = dates
        .iter()
        .map(|d| {
            Command::new(env!("CARGO_BIN_EXE_krxflow"))
                .current_dir(repo_root())
                .env("KRXFLOW_LAKE", url)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .args(["run", dag, "--date", d])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("krxflow starts")
        })
        .collect();
    for (d, c) in dates.iter().zip(children) {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{d}: {}", text(&o));
    }
    for d in std::iter::once(&"2024-01-15").chain(&dates) {
        for sql in [
            format!("SELECT count(*) FROM ohlcv_daily WHERE date = DATE '{d}'"),
            format!("SELECT count(*) FROM features_returns WHERE date = DATE '{d}'"),
        ] {
            let o = krxflow_with(url, &env, &["sql", &sql, "--format", "csv"]);
            assert!(o.status.success(), "{}", text(&o));
            let n = String::from_utf8_lossy(&o.stdout);
            assert_eq!(n.lines().nth(1), Some("3"), "{sql}: {n}");
        }
    }
    let o = krxflow_with(
        url,
        &env,
        &[
            "sql",
            "SELECT count(*) FROM _krxflow.task_runs WHERE state = 'succeeded'",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let n = String::from_utf8_lossy(&o.stdout);
    assert_eq!(n.lines().nth(1), Some("10"), "5 runs of 2 tasks: {n}");
}

#[cfg(feature = "s3")]
#[test]
fn a_backfill_on_ray_writes_an_s3_lake_from_the_workers() {
    // Scale-out as users run it: the driver and the Ray workers share no folder, only the
    // bucket. The S3 server runs beside the Ray head inside the test's namespace; the jobs get
    // the endpoint and keys from the driver's AWS_ variables.
    use crate::cluster::{RAY, with_ray};

    let bin = env!("CARGO_BIN_EXE_krxflow");
    let moto = repo_root().join(".venv/bin/moto_server");
    let python = repo_root().join(".venv/bin/python");
    let env = "AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
               AWS_ACCESS_KEY_ID=krxflow-test AWS_SECRET_ACCESS_KEY=krxflow-test-secret";
    let lake = "--lake s3://krxflow-ray/lake";
    let said = with_ray(&[
        format!(
            "({} -H 127.0.0.1 -p 9000 >/dev/null 2>&1 &) ; \
             for i in $(seq 100); do {} -c \"import urllib.request as u; \
             u.urlopen(u.Request('http://127.0.0.1:9000/krxflow-ray', method='PUT'))\" \
             2>/dev/null && exit 0; sleep 0.2; done; exit 1",
            moto.display(),
            python.display()
        ),
        format!("{env} {bin} {lake} run demo --date 2024-12-06"),
        format!("{env} {bin} {lake} backfill demo --from 2024-12-09 --to 2024-12-13 {RAY}"),
        format!(
            "{env} {bin} {lake} sql \"SELECT count(DISTINCT date) AS days FROM features_returns \
             WHERE date >= DATE '2024-12-09'\" --format csv"
        ),
        format!(
            "{env} {bin} {lake} sql \"SELECT count(*) AS runs FROM _krxflow.runs \
             WHERE trigger = 'backfill' AND state = 'succeeded'\" --format csv"
        ),
    ]);
    for (i, (rc, log)) in said.iter().enumerate() {
        assert_eq!(*rc, 0, "command {}: {log}", i + 1);
    }
    assert!(said[2].1.contains("DAG runs go to Ray"), "{}", said[2].1);
    assert_eq!(said[3].1.lines().nth(1), Some("5"), "{}", said[3].1);
    assert_eq!(said[4].1.lines().nth(1), Some("5"), "{}", said[4].1);
}
