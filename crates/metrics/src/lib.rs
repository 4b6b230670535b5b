//! krxflow's Prometheus metrics.
//!
//! One [`Metrics`] value owns a registry with every `krxflow_*` series, each registered once
//! with its help text. The executor, the scheduler and the model operators update it through
//! the narrow methods below; [`http`] serves it as `/metrics` (with `/healthz` and `/runs`),
//! and [`push`] sends it to a Prometheus Pushgateway for one-shot commands.

pub mod error;
pub mod http;
pub mod push;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
};

pub use error::{MetricsError, MetricsResult};

/// Task states a task-state gauge can be in (one is 1, the others 0).
pub const TASK_STATES: &[&str] = &[
    "running",
    "succeeded",
    "failed",
    "upstream_failed",
    "skipped",
    "up_to_date",
    "cancelled",
];

/// Every krxflow series. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Metrics {
    registry: Registry,
    task_duration: HistogramVec,
    task_attempts: IntCounterVec,
    task_retries: IntCounterVec,
    task_state: IntGaugeVec,
    rows_written: IntCounterVec,
    rejects: IntCounterVec,
    checks: IntCounterVec,
    dag_run_duration: HistogramVec,
    dag_runs: IntCounterVec,
    last_success_ds: GaugeVec,
    expected_ds: GaugeVec,
    backfill_partitions: IntGaugeVec,
    tick_lag: Gauge,
    last_tick: Gauge,
    dags: IntGaugeVec,
    next_tick: GaugeVec,
    active_runs: IntGaugeVec,
    paused: IntGaugeVec,
    model_inference: HistogramVec,
    hit_rate: GaugeVec,
    ensemble_weight: GaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition")
}

/// Buckets for task and run durations: 10 ms .. ~1 h.
fn duration_buckets() -> Vec<f64> {
    vec![
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
    ]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered and `krxflow_build_info` set.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = int_gauge(
            "krxflow_build_info",
            "Always 1; the krxflow version as a label.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let m = Self {
            task_duration: histogram(
                "krxflow_task_duration_seconds",
                "Wall time of a finished task (all its attempts), by final state.",
                &["dag", "task", "state"],
                duration_buckets(),
            ),
            task_attempts: counter(
                "krxflow_task_attempts_total",
                "Task attempts started (first tries and retries).",
                &["dag", "task"],
            ),
            task_retries: counter(
                "krxflow_task_retries_total",
                "Task attempts that were retries of a failed attempt.",
                &["dag", "task"],
            ),
            task_state: int_gauge(
                "krxflow_task_state",
                "1 for the state the task's latest run ended in, 0 for the others.",
                &["dag", "task", "state"],
            ),
            rows_written: counter(
                "krxflow_rows_written_total",
                "Rows committed to a lake table.",
                &["table"],
            ),
            rejects: counter(
                "krxflow_rejects_total",
                "Input rows quarantined into a rejects table, by reason code.",
                &["table", "reason"],
            ),
            checks: counter(
                "krxflow_checks_total",
                "Task checks run after a task's write, by result (passed, failed, error) and \
                 severity (error fails the task, warn does not).",
                &["dag", "task", "check", "check_severity", "state"],
            ),
            dag_run_duration: histogram(
                "krxflow_dag_run_duration_seconds",
                "Wall time of a DAG run (one partition), by final state.",
                &["dag", "state"],
                duration_buckets(),
            ),
            dag_runs: counter(
                "krxflow_dag_runs_total",
                "DAG runs finished, by final state.",
                &["dag", "state"],
            ),
            last_success_ds: gauge(
                "krxflow_dag_last_success_ds_timestamp_seconds",
                "The latest partition (ds, as 00:00 UTC of that day) a DAG run succeeded for.",
                &["dag"],
            ),
            expected_ds: gauge(
                "krxflow_dag_expected_ds_timestamp_seconds",
                "The partition (ds, as 00:00 UTC of that day) of the DAG's latest schedule tick \
                 that came due; above last_success_ds means that partition has not succeeded.",
                &["dag"],
            ),
            backfill_partitions: int_gauge(
                "krxflow_backfill_partitions",
                "Partitions of the running or latest backfill by state \
                 (done, failed, skipped, remaining).",
                &["dag", "state"],
            ),
            tick_lag: Gauge::with_opts(Opts::new(
                "krxflow_scheduler_tick_lag_seconds",
                "How late the scheduler handled its latest due tick.",
            ))
            .expect("static metric definition"),
            last_tick: Gauge::with_opts(Opts::new(
                "krxflow_scheduler_last_loop_timestamp_seconds",
                "When the scheduler loop last woke up (unix time); stale means it is stuck.",
            ))
            .expect("static metric definition"),
            dags: int_gauge(
                "krxflow_scheduler_dags",
                "DAG files the scheduler found, by state (loaded, invalid).",
                &["state"],
            ),
            next_tick: gauge(
                "krxflow_scheduler_next_tick_timestamp_seconds",
                "When each DAG's schedule next fires (unix time).",
                &["dag"],
            ),
            active_runs: int_gauge(
                "krxflow_scheduler_active_runs",
                "DAG runs in progress.",
                &["dag"],
            ),
            paused: int_gauge(
                "krxflow_scheduler_paused",
                "1 while a DAG's schedule is paused (`krxflow pause`), else 0.",
                &["dag"],
            ),
            model_inference: histogram(
                "krxflow_model_inference_seconds",
                "Wall time of one batched model inference call.",
                &["model"],
                vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            hit_rate: gauge(
                "krxflow_prediction_hit_rate",
                "Direction hit rate of matured predictions (±0.3% flat band) over the \
                 weighting window.",
                &["code", "horizon", "model"],
            ),
            ensemble_weight: gauge(
                "krxflow_ensemble_weight",
                "Current ensemble weight of a model for a (ticker, horizon).",
                &["code", "horizon", "model"],
            ),
            registry,
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(build_info),
            Box::new(m.task_duration.clone()),
            Box::new(m.task_attempts.clone()),
            Box::new(m.task_retries.clone()),
            Box::new(m.task_state.clone()),
            Box::new(m.rows_written.clone()),
            Box::new(m.rejects.clone()),
            Box::new(m.checks.clone()),
            Box::new(m.dag_run_duration.clone()),
            Box::new(m.dag_runs.clone()),
            Box::new(m.last_success_ds.clone()),
            Box::new(m.expected_ds.clone()),
            Box::new(m.backfill_partitions.clone()),
            Box::new(m.tick_lag.clone()),
            Box::new(m.last_tick.clone()),
            Box::new(m.dags.clone()),
            Box::new(m.next_tick.clone()),
            Box::new(m.active_runs.clone()),
            Box::new(m.paused.clone()),
            Box::new(m.model_inference.clone()),
            Box::new(m.hit_rate.clone()),
            Box::new(m.ensemble_weight.clone()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .expect("each krxflow metric is registered once");
        }
        m
    }

    /// Names of every registered series family (what `/metrics` can show).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        // Families without any labelled child yet are not gathered: add them from the
        // descriptors so the list is complete from start-up.
        for name in DECLARED {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_string());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }

    // ---- executor ----

    /// An attempt started; `attempt` counts from 1.
    pub fn attempt_started(&self, dag: &str, task: &str, attempt: u32) {
        self.task_attempts.with_label_values(&[dag, task]).inc();
        if attempt > 1 {
            self.task_retries.with_label_values(&[dag, task]).inc();
        }
    }

    /// A task reached a state: running while it runs, then its final state with duration.
    pub fn task_state(&self, dag: &str, task: &str, state: &str) {
        for s in TASK_STATES {
            self.task_state
                .with_label_values(&[dag, task, s])
                .set(i64::from(*s == state));
        }
    }

    pub fn task_finished(&self, dag: &str, task: &str, state: &str, seconds: f64) {
        self.task_state(dag, task, state);
        self.task_duration
            .with_label_values(&[dag, task, state])
            .observe(seconds);
    }

    pub fn rows_written(&self, table: &str, rows: u64) {
        self.rows_written.with_label_values(&[table]).inc_by(rows);
    }

    pub fn rejects(&self, table: &str, reason: &str, rows: u64) {
        self.rejects
            .with_label_values(&[table, reason])
            .inc_by(rows);
    }

    /// A task's check ran: `state` is passed, failed or error.
    pub fn check(&self, dag: &str, task: &str, check: &str, severity: &str, state: &str) {
        self.checks
            .with_label_values(&[dag, task, check, severity, state])
            .inc();
    }

    /// A DAG run finished; `ds_unix` is 00:00 UTC of its partition day.
    pub fn run_finished(&self, dag: &str, state: &str, seconds: f64, ds_unix: i64) {
        self.dag_runs.with_label_values(&[dag, state]).inc();
        self.dag_run_duration
            .with_label_values(&[dag, state])
            .observe(seconds);
        if state == "succeeded" {
            self.success_ds_at_least(dag, ds_unix);
        }
    }

    /// Raises the last-success ds of a DAG (a backfill of old days never lowers it).
    pub fn success_ds_at_least(&self, dag: &str, ds_unix: i64) {
        let g = self.last_success_ds.with_label_values(&[dag]);
        if (ds_unix as f64) > g.get() {
            g.set(ds_unix as f64);
        }
    }

    // ---- backfill ----

    pub fn backfill_progress(&self, dag: &str, done: u64, failed: u64, skipped: u64, left: u64) {
        for (state, n) in [
            ("done", done),
            ("failed", failed),
            ("skipped", skipped),
            ("remaining", left),
        ] {
            self.backfill_partitions
                .with_label_values(&[dag, state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    // ---- scheduler ----

    pub fn scheduler_loop(&self, now_unix: f64) {
        self.last_tick.set(now_unix);
    }

    pub fn tick_lag(&self, seconds: f64) {
        self.tick_lag.set(seconds.max(0.0));
    }

    pub fn dags_loaded(&self, loaded: usize, invalid: usize) {
        self.dags.with_label_values(&["loaded"]).set(loaded as i64);
        self.dags
            .with_label_values(&["invalid"])
            .set(invalid as i64);
    }

    pub fn next_tick(&self, dag: &str, at_unix: f64) {
        self.next_tick.with_label_values(&[dag]).set(at_unix);
    }

    /// Forgets a DAG's schedule series (its file was removed or became invalid).
    pub fn forget_dag(&self, dag: &str) {
        let _ = self.next_tick.remove_label_values(&[dag]);
        let _ = self.expected_ds.remove_label_values(&[dag]);
        let _ = self.active_runs.remove_label_values(&[dag]);
        let _ = self.paused.remove_label_values(&[dag]);
    }

    pub fn expected_ds(&self, dag: &str, ds_unix: i64) {
        self.expected_ds
            .with_label_values(&[dag])
            .set(ds_unix as f64);
    }

    pub fn active_runs(&self, dag: &str, n: usize) {
        self.active_runs.with_label_values(&[dag]).set(n as i64);
    }

    /// Whether a DAG's schedule is paused. A paused DAG is expected on no day: its
    /// latest-due-ds series goes (the lateness alert compares it with the last success) and
    /// comes back with the first tick due after it is resumed.
    pub fn paused(&self, dag: &str, paused: bool) {
        self.paused.with_label_values(&[dag]).set(i64::from(paused));
        if paused {
            let _ = self.expected_ds.remove_label_values(&[dag]);
        }
    }

    // ---- models ----

    pub fn inference(&self, model: &str, seconds: f64) {
        self.model_inference
            .with_label_values(&[model])
            .observe(seconds);
    }

    pub fn model_quality(
        &self,
        code: &str,
        horizon: u32,
        model: &str,
        hit_rate: Option<f64>,
        weight: f64,
    ) {
        let h = horizon.to_string();
        if let Some(hr) = hit_rate {
            self.hit_rate.with_label_values(&[code, &h, model]).set(hr);
        }
        self.ensemble_weight
            .with_label_values(&[code, &h, model])
            .set(weight);
    }
}

/// Every family name [`Metrics::new`] registers (kept in step by a test).
pub const DECLARED: &[&str] = &[
    "krxflow_build_info",
    "krxflow_task_duration_seconds",
    "krxflow_task_attempts_total",
    "krxflow_task_retries_total",
    "krxflow_task_state",
    "krxflow_rows_written_total",
    "krxflow_rejects_total",
    "krxflow_checks_total",
    "krxflow_dag_run_duration_seconds",
    "krxflow_dag_runs_total",
    "krxflow_dag_last_success_ds_timestamp_seconds",
    "krxflow_dag_expected_ds_timestamp_seconds",
    "krxflow_backfill_partitions",
    "krxflow_scheduler_tick_lag_seconds",
    "krxflow_scheduler_last_loop_timestamp_seconds",
    "krxflow_scheduler_dags",
    "krxflow_scheduler_next_tick_timestamp_seconds",
    "krxflow_scheduler_active_runs",
    "krxflow_scheduler_paused",
    "krxflow_model_inference_seconds",
    "krxflow_prediction_hit_rate",
    "krxflow_ensemble_weight",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_dag_is_expected_on_no_day_until_resumed() {
        let m = Metrics::new();
        m.expected_ds("d", 86_400);
        m.paused("d", true);
        let text = m.render();
        assert!(
            text.contains("krxflow_scheduler_paused{dag=\"d\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("krxflow_dag_expected_ds_timestamp_seconds{dag=\"d\"}"),
            "{text}"
        );
        m.paused("d", false);
        m.expected_ds("d", 172_800);
        let text = m.render();
        assert!(
            text.contains("krxflow_scheduler_paused{dag=\"d\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("krxflow_dag_expected_ds_timestamp_seconds{dag=\"d\"} 172800"),
            "{text}"
        );
    }

    #[test]
    fn every_declared_family_is_registered_with_help_text() {
        let m = Metrics::new();
        let mut described: Vec<(String, String)> = Vec::new();
        for c in [
            &m.task_duration as &dyn Collector,
            &m.task_attempts,
            &m.task_retries,
            &m.task_state,
            &m.rows_written,
            &m.rejects,
            &m.checks,
            &m.dag_run_duration,
            &m.dag_runs,
            &m.last_success_ds,
            &m.expected_ds,
            &m.backfill_partitions,
            &m.tick_lag,
            &m.last_tick,
            &m.dags,
            &m.next_tick,
            &m.active_runs,
            &m.paused,
            &m.model_inference,
            &m.hit_rate,
            &m.ensemble_weight,
        ] {
            for d in c.desc() {
                described.push((d.fq_name.clone(), d.help.clone()));
            }
        }
        described.push(("krxflow_build_info".into(), "x".into()));
        let mut names: Vec<&str> = described.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let mut declared = DECLARED.to_vec();
        declared.sort();
        assert_eq!(names, declared);
        assert!(
            described
                .iter()
                .all(|(n, h)| n.starts_with("krxflow_") && !h.is_empty())
        );
    }

    #[test]
    fn registering_a_family_twice_is_refused() {
        let m = Metrics::new();
        let again = counter("krxflow_task_attempts_total", "dup", &["dag", "task"]);
        assert!(m.registry.register(Box::new(again)).is_err());
    }

    #[test]
    fn render_shows_build_info_before_anything_ran() {
        let text = Metrics::new().render();
        assert!(text.contains("# HELP krxflow_build_info"), "{text}");
        assert!(text.contains("krxflow_build_info{version=\""), "{text}");
    }

    #[test]
    fn task_state_gauge_has_exactly_one_state_set() {
        let m = Metrics::new();
        m.task_state("d", "t", "running");
        m.task_finished("d", "t", "failed", 1.5);
        let text = m.render();
        assert!(text.contains("krxflow_task_state{dag=\"d\",state=\"failed\",task=\"t\"} 1"));
        assert!(text.contains("krxflow_task_state{dag=\"d\",state=\"running\",task=\"t\"} 0"));
        assert!(text.contains(
            "krxflow_task_duration_seconds_count{dag=\"d\",state=\"failed\",task=\"t\"} 1"
        ));
    }

    #[test]
    fn retries_count_only_attempts_after_the_first() {
        let m = Metrics::new();
        m.attempt_started("d", "t", 1);
        m.attempt_started("d", "t", 2);
        m.attempt_started("d", "t", 3);
        let text = m.render();
        assert!(text.contains("krxflow_task_attempts_total{dag=\"d\",task=\"t\"} 3"));
        assert!(text.contains("krxflow_task_retries_total{dag=\"d\",task=\"t\"} 2"));
    }

    #[test]
    fn a_backfill_of_old_days_does_not_lower_last_success() {
        let m = Metrics::new();
        m.run_finished("d", "succeeded", 2.0, 1_700_000_000);
        m.run_finished("d", "succeeded", 2.0, 1_600_000_000);
        m.run_finished("d", "failed", 2.0, 1_800_000_000);
        let text = m.render();
        assert!(
            text.contains("krxflow_dag_last_success_ds_timestamp_seconds{dag=\"d\"} 1700000000"),
            "{text}"
        );
        assert!(text.contains("krxflow_dag_runs_total{dag=\"d\",state=\"failed\"} 1"));
    }
}
