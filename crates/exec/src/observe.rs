//! Run observers that feed Prometheus metrics, and a fan-out to several observers.

use std::sync::Arc;

use krxflow_metrics::Metrics;

use crate::records::AttemptRecord;
use crate::runner::{RunObserver, RunReport, TaskReport};

/// Updates the `krxflow_*` task, row, reject and run series from executor events.
pub struct MetricsObserver {
    metrics: Arc<Metrics>,
}

impl MetricsObserver {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

/// 00:00 UTC of a partition day, as unix seconds (the `*_ds_timestamp_seconds` convention).
pub fn ds_unix(ds: chrono::NaiveDate) -> i64 {
    ds.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or_default()
}

impl RunObserver for MetricsObserver {
    fn task_started(&self, dag: &str, task: &str) {
        self.metrics.task_state(dag, task, "running");
    }

    fn attempt_finished(&self, a: &AttemptRecord) {
        if a.attempt > 0 {
            self.metrics
                .attempt_started(&a.dag, &a.task, a.attempt.unsigned_abs());
        }
    }

    fn task_finished(&self, dag: &str, r: &TaskReport) {
        self.metrics.task_finished(
            dag,
            &r.task,
            &r.state.to_string(),
            r.duration_ms as f64 / 1000.0,
        );
        // Reject counters are `rejected.<reason>`; they land in the task's rejects output.
        let table = r
            .outputs
            .iter()
            .find(|o| o.ends_with("rejects"))
            .map(String::as_str)
            .unwrap_or(r.task.as_str());
        // Model operators report `inference_ms.<model>`: one inference-latency observation.
        for (key, n) in &r.counters {
            if let Some(reason) = key.strip_prefix("rejected.") {
                self.metrics
                    .rejects(table, reason, u64::try_from(*n).unwrap_or(0));
            } else if let Some(model) = key.strip_prefix("inference_ms.") {
                self.metrics.inference(model, *n as f64 / 1000.0);
            }
        }
    }

    fn output_written(&self, _dag: &str, table: &str, rows: usize) {
        self.metrics.rows_written(table, rows as u64);
    }

    fn run_finished(&self, r: &RunReport) {
        let secs = (r.ended - r.started).num_milliseconds() as f64 / 1000.0;
        self.metrics
            .run_finished(&r.dag, &r.state.to_string(), secs, ds_unix(r.ds));
    }
}

/// Sends every event to each observer in turn.
pub struct Fanout(pub Vec<Arc<dyn RunObserver>>);

impl RunObserver for Fanout {
    fn task_started(&self, dag: &str, task: &str) {
        self.0.iter().for_each(|o| o.task_started(dag, task));
    }
    fn attempt_finished(&self, a: &AttemptRecord) {
        self.0.iter().for_each(|o| o.attempt_finished(a));
    }
    fn task_finished(&self, dag: &str, r: &TaskReport) {
        self.0.iter().for_each(|o| o.task_finished(dag, r));
    }
    fn output_written(&self, dag: &str, table: &str, rows: usize) {
        self.0
            .iter()
            .for_each(|o| o.output_written(dag, table, rows));
    }
    fn run_finished(&self, r: &RunReport) {
        self.0.iter().for_each(|o| o.run_finished(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskState;

    #[test]
    fn inference_counters_become_inference_latency_observations() {
        let metrics = Arc::new(Metrics::new());
        let obs = MetricsObserver::new(metrics.clone());
        let report = TaskReport {
            task: "chronos".into(),
            state: TaskState::Succeeded,
            attempts: 1,
            error: None,
            rows_in: 10,
            rows_out: 3,
            duration_ms: 400,
            outputs: vec!["chronos_forecasts".into()],
            counters: [("inference_ms.chronos_bolt_small".to_string(), 250)]
                .into_iter()
                .collect(),
        };
        obs.task_finished("d", &report);
        let text = metrics.render();
        assert!(
            text.contains("krxflow_model_inference_seconds_count{model=\"chronos_bolt_small\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("krxflow_model_inference_seconds_sum{model=\"chronos_bolt_small\"} 0.25"),
            "{text}"
        );
    }
}
