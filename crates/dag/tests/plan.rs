//! Parsing a valid DAG (defaults, substitution, schedule) and planning it.

mod common;

use std::time::Duration;

use common::{load, load_str};
use krxflow_dag::{Backoff, Catchup, Jitter, RetryPolicy};

fn names(dag: &krxflow_dag::ValidatedDag) -> Vec<&str> {
    dag.tasks.iter().map(|t| t.spec.name.as_str()).collect()
}

#[test]
fn example_dag_parses_every_section() {
    let dag = load("daily_batch.yaml").unwrap();
    let s = &dag.spec;
    assert_eq!(s.name, "daily_batch");
    assert!(s.file.ends_with("daily_batch.yaml"));
    assert_eq!(
        s.description.as_deref(),
        Some("Daily bars -> features and forecasts -> ensemble")
    );
    let sched = s.schedule.as_ref().unwrap();
    assert_eq!(sched.cron, "0 0 16 * * Mon-Fri");
    assert_eq!(sched.timezone, "Asia/Seoul");
    assert_eq!(sched.calendar.as_deref(), Some("krx"));
    assert_eq!(sched.catchup, Catchup::Latest);
    assert_eq!(sched.tz().unwrap(), chrono_tz::Asia::Seoul);
    assert!(sched.cron_schedule().is_ok());
    assert_eq!(s.partition, "trading_day");
    assert_eq!(s.calendar, "krx");
    assert_eq!(s.max_active_runs, 1);
    assert_eq!(
        s.params,
        serde_json::json!({"universe": ["005930", "000660"], "horizons": [1, 3, 5]})
    );
    let file_order: Vec<&str> = s.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        file_order,
        vec!["ingest_ohlcv", "ensemble", "chronos", "features"]
    );
}

#[test]
fn task_retries_merge_field_by_field_over_defaults() {
    let dag = load("daily_batch.yaml").unwrap();
    let chronos = &dag.task("chronos").unwrap().spec;
    assert_eq!(
        chronos.retries,
        RetryPolicy {
            max: 1,
            backoff: Backoff::Exponential,
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
            jitter: Jitter::Full,
        }
    );
    assert_eq!(chronos.timeout, Duration::from_secs(600));
    assert_eq!(chronos.after, vec!["ingest_ohlcv"]);
    assert!(!chronos.depends_on_past);
    let ingest = &dag.task("ingest_ohlcv").unwrap().spec;
    assert_eq!(ingest.retries.max, 3);
    assert_eq!(ingest.timeout, Duration::from_secs(1800));
}

#[test]
fn built_in_defaults_apply_without_defaults_block() {
    let dag = load_str("dag: x\ntasks:\n  t: { op: util.source, outputs: { dst: a } }\n").unwrap();
    let t = &dag.tasks[0].spec;
    assert_eq!(t.retries, RetryPolicy::default());
    assert_eq!(t.retries.max, 0);
    assert_eq!(t.retries.base, Duration::from_secs(1));
    assert_eq!(t.retries.max_delay, Duration::from_secs(300));
    assert_eq!(t.timeout, Duration::from_secs(1800));
    assert_eq!(t.with, serde_json::json!({}));
    assert!(dag.spec.schedule.is_none());
    assert_eq!(dag.spec.partition, "trading_day");
    assert_eq!(dag.spec.calendar, "krx");
    assert_eq!(dag.spec.params, serde_json::json!({}));
}

#[test]
fn with_substitution_keeps_types_and_reads_env() {
    let dag = load("daily_batch.yaml").unwrap();
    assert_eq!(
        dag.task("chronos").unwrap().spec.with,
        serde_json::json!({"model": "chronos-bolt-small", "horizons": [1, 3, 5]})
    );
    assert_eq!(
        dag.task("ingest_ohlcv").unwrap().spec.with,
        serde_json::json!({"source": "csv_dir", "path": "/srv/krx/krx_daily", "lookback_days": 400})
    );
}

#[test]
fn params_hash_is_the_core_hash_of_substituted_with() {
    let dag = load("daily_batch.yaml").unwrap();
    for t in &dag.tasks {
        assert_eq!(t.params_hash, krxflow_core::params_hash(&t.spec.with));
        assert_eq!(t.op.kind(), t.spec.op);
    }
}

#[test]
fn order_respects_table_and_after_edges_with_ties_in_file_order() {
    let dag = load("daily_batch.yaml").unwrap();
    // File order: ingest_ohlcv, ensemble, chronos, features. ensemble reads chronos' output.
    assert_eq!(
        names(&dag),
        vec!["ingest_ohlcv", "chronos", "ensemble", "features"]
    );
    let pos = |n: &str| names(&dag).iter().position(|x| *x == n).unwrap();
    for t in &dag.tasks {
        for u in &t.upstream {
            assert!(
                pos(u) < pos(&t.spec.name),
                "{u} must run before {}",
                t.spec.name
            );
        }
    }
    assert_eq!(dag.task("ensemble").unwrap().upstream, vec!["chronos"]);
    assert_eq!(dag.task("chronos").unwrap().upstream, vec!["ingest_ohlcv"]);
    assert!(dag.task("ingest_ohlcv").unwrap().upstream.is_empty());
}

#[test]
fn after_alone_orders_independent_tasks() {
    let yaml = "\
dag: x
tasks:
  late: { op: util.source, outputs: { dst: a }, after: [early] }
  early: { op: util.source, outputs: { dst: b } }
  middle: { op: util.source, outputs: { dst: c }, after: early }
";
    let dag = load_str(yaml).unwrap();
    assert_eq!(names(&dag), vec!["early", "late", "middle"]);
    assert_eq!(dag.task("middle").unwrap().upstream, vec!["early"]);
}

#[test]
fn downstream_of_is_transitive() {
    let dag = load("daily_batch.yaml").unwrap();
    assert_eq!(
        dag.downstream_of("ingest_ohlcv"),
        vec!["chronos", "ensemble", "features"]
    );
    assert_eq!(dag.downstream_of("chronos"), vec!["ensemble"]);
    assert!(dag.downstream_of("ensemble").is_empty());
    assert!(dag.downstream_of("nope").is_empty());
    assert_eq!(dag.upstream_of("ensemble"), vec!["ingest_ohlcv", "chronos"]);
    assert!(dag.task("nope").is_none());
    let set = |n: &[&str]| n.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        dag.with_downstream(&set(&["chronos", "features"])),
        set(&["chronos", "ensemble", "features"]),
        "what a rerun of both runs"
    );
}

#[test]
fn ready_tasks_start_with_the_one_most_tasks_wait_on() {
    let yaml = "\
dag: x
tasks:
  leaf: { op: util.source, outputs: { dst: a } }
  head: { op: util.source, outputs: { dst: b } }
  mid: { op: util.source, outputs: { dst: c }, after: head }
  tail: { op: util.source, outputs: { dst: d }, after: mid }
  side: { op: util.source, outputs: { dst: e }, after: leaf }
";
    let dag = load_str(yaml).unwrap();
    let order: Vec<&str> = dag
        .launch_order()
        .into_iter()
        .map(|i| dag.tasks[i].spec.name.as_str())
        .collect();
    // head has two tasks downstream, leaf and mid one each (plan order breaks the tie).
    assert_eq!(order, vec!["head", "leaf", "mid", "tail", "side"]);
}

#[test]
fn a_task_reading_its_own_output_is_not_a_cycle() {
    let yaml = "\
dag: x
tasks:
  acc: { op: util.copy, inputs: { src: state }, outputs: { dst: state } }
";
    let dag = load_str(yaml).unwrap();
    assert!(dag.tasks[0].upstream.is_empty());
}

#[test]
fn schedule_accepts_five_fields_strings_and_top_level_calendar() {
    let yaml = "\
dag: x
schedule: \"30 15 * * Mon-Fri\"
calendar: weekdays
max_active_runs: 3
tasks:
  t: { op: util.source }
";
    let dag = load_str(yaml).unwrap();
    let s = dag.spec.schedule.as_ref().unwrap();
    assert_eq!(s.cron, "0 30 15 * * Mon-Fri");
    assert_eq!(s.timezone, "Asia/Seoul");
    assert_eq!(s.catchup, Catchup::Latest);
    assert_eq!(dag.spec.calendar, "weekdays");
    assert_eq!(dag.spec.max_active_runs, 3);
}

#[test]
fn catchup_and_timezone_are_read() {
    let yaml = "\
dag: x
schedule: { cron: '@daily', timezone: UTC, catchup: all, calendar: weekdays }
tasks:
  t: { op: util.source }
";
    let dag = load_str(yaml).unwrap();
    let s = dag.spec.schedule.as_ref().unwrap();
    assert_eq!(
        (s.cron.as_str(), s.timezone.as_str(), s.catchup),
        ("@daily", "UTC", Catchup::All)
    );
    assert_eq!(dag.spec.calendar, "weekdays");
}

#[test]
fn a_schedule_waits_for_other_dags_an_hour_unless_told() {
    let wait_for = |schedule: &str| {
        load_str(&format!(
            "dag: x\nschedule: {schedule}\ntasks:\n  t: {{ op: util.source }}\n"
        ))
        .unwrap()
        .spec
        .schedule
        .unwrap()
        .wait_for
    };
    let w = wait_for("{ cron: '@daily', wait_for: { dags: [a, b], timeout: 2h } }").unwrap();
    assert_eq!(w.dags, ["a", "b"]);
    assert_eq!(w.timeout, std::time::Duration::from_secs(2 * 3600));
    let w = wait_for("{ cron: '@daily', wait_for: { dags: a } }").unwrap();
    assert_eq!(
        (w.dags, w.timeout),
        (vec!["a".to_string()], krxflow_dag::DEFAULT_WAIT_TIMEOUT)
    );
    assert_eq!(wait_for("'@daily'"), None);
}

#[test]
fn unquoted_leading_zero_tickers_stay_strings() {
    let yaml = "\
dag: x
params: { universe: [005930, 000660] }
tasks:
  t: { op: util.source }
";
    let dag = load_str(yaml).unwrap();
    assert_eq!(
        dag.spec.params["universe"],
        serde_json::json!(["005930", "000660"])
    );
}

#[test]
fn retry_delays_follow_the_policy() {
    let dag = load("daily_batch.yaml").unwrap();
    let p = dag.task("ingest_ohlcv").unwrap().spec.retries;
    assert_eq!(p.max_delay_for(1), Duration::from_secs(10));
    assert_eq!(p.max_delay_for(2), Duration::from_secs(20));
    assert_eq!(p.max_delay_for(10), Duration::from_secs(300));
    assert!(p.delay(3, 0.5) <= p.max_delay_for(3));
}

#[test]
fn dag_file_is_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mini.yaml");
    std::fs::write(&path, "dag: mini\ntasks:\n  t: { op: util.source }\n").unwrap();
    let registry = common::registry();
    let ctx = krxflow_dag::LoadContext {
        registry: &registry,
        tables: &krxflow_dag::NoTables,
        env: &krxflow_dag::ProcessEnv,
    };
    let dag = krxflow_dag::load_dag_file(&path, &ctx).unwrap();
    assert_eq!(dag.spec.name, "mini");
    assert_eq!(dag.spec.file, path);
}

#[test]
fn anchors_in_x_fields_and_merge_keys_share_task_settings() {
    let yaml = "\
dag: x
x-retrying: &retrying
  retries: { max: 4 }
  timeout: 2m
tasks:
  a:
    <<: *retrying
    op: util.source
    timeout: 1m
";
    let dag = load_str(yaml).unwrap();
    let a = &dag.task("a").unwrap().spec;
    assert_eq!(a.retries.max, 4);
    assert_eq!(
        a.timeout,
        Duration::from_secs(60),
        "own keys win over merged ones"
    );
}
