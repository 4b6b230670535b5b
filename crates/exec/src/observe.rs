//! Run observers that feed Prometheus metrics, and a fan-out to several observers.

use std::sync::Arc;

use krxflow_core::Observation;
use krxflow_metrics::Metrics;

use crate::TaskState;
use crate::records::AttemptRecord;
use crate::runner::{RunObserver, RunReport, TaskReport};

/// Updates the `krxflow_*` task, row, reject, model and run series from executor events: the
/// reject and model series from each task's typed [`Observation`]s.
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
        for c in &r.checks {
            self.metrics
                .check(dag, &r.task, &c.check, &c.severity, &c.state);
        }
        for o in &r.observations {
            match o {
                // Rejects land on the table the task binds the port to (the task's name when
                // the DAG leaves that port unbound).
                Observation::Rejected { port, reason, n } => {
                    let table = r
                        .output_tables
                        .get(port)
                        .map(String::as_str)
                        .unwrap_or(r.task.as_str());
                    self.metrics.rejects(table, reason, *n);
                }
                Observation::Inference { model, seconds } => {
                    self.metrics.inference(model, *seconds);
                }
                // Gauges of what a committed run learned: a failed attempt's values were not
                // written, so they are not shown either.
                Observation::ModelQuality {
                    code,
                    horizon,
                    model,
                    hit_rate,
                    weight,
                } if r.state == TaskState::Succeeded => {
                    self.metrics
                        .model_quality(code, *horizon, model, *hit_rate, *weight);
                }
                Observation::ModelQuality { .. } => {}
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

    fn report(task: &str, outputs: &[(&str, &str)], observations: Vec<Observation>) -> TaskReport {
        TaskReport {
            task: task.into(),
            state: TaskState::Succeeded,
            attempts: 1,
            error: None,
            rows_in: 10,
            rows_out: 3,
            duration_ms: 400,
            outputs: outputs.iter().map(|(_, t)| format!("{t}@v1")).collect(),
            counters: Default::default(),
            observations,
            output_tables: outputs
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            checks: Vec::new(),
        }
    }

    #[test]
    fn inference_observations_become_inference_latency_samples() {
        let metrics = Arc::new(Metrics::new());
        let obs = MetricsObserver::new(metrics.clone());
        let r = report(
            "chronos",
            &[("forecasts", "chronos_forecasts")],
            vec![Observation::Inference {
                model: "chronos_bolt_small".into(),
                seconds: 0.25,
            }],
        );
        obs.task_finished("d", &r);
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

    #[test]
    fn a_rejected_observation_lands_on_the_table_bound_to_its_port() {
        let metrics = Arc::new(Metrics::new());
        let obs = MetricsObserver::new(metrics.clone());
        let rejected = |port: &str, reason: &str, n| Observation::Rejected {
            port: port.into(),
            reason: reason.into(),
            n,
        };
        obs.task_finished(
            "d",
            &report(
                "ingest",
                &[("bars", "ohlcv_daily"), ("rejects", "krx_quarantine")],
                vec![
                    rejected("rejects", "zero_volume", 3),
                    rejected("rejects", "zero_volume", 2),
                    rejected("rejects", "null_value", 1),
                ],
            ),
        );
        // A port the DAG leaves unbound: the task's name.
        obs.task_finished(
            "d",
            &report(
                "minute",
                &[],
                vec![rejected("momentum", "bad_minute_bar", 4)],
            ),
        );
        let text = metrics.render();
        for line in [
            "krxflow_rejects_total{reason=\"zero_volume\",table=\"krx_quarantine\"} 5",
            "krxflow_rejects_total{reason=\"null_value\",table=\"krx_quarantine\"} 1",
            "krxflow_rejects_total{reason=\"bad_minute_bar\",table=\"minute\"} 4",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("table=\"ingest\""), "{text}");
    }

    #[test]
    fn model_quality_observations_set_the_hit_rate_and_weight_gauges_of_a_succeeded_task() {
        let metrics = Arc::new(Metrics::new());
        let obs = MetricsObserver::new(metrics.clone());
        let quality = |model: &str, hit_rate, weight| Observation::ModelQuality {
            code: "005930".into(),
            horizon: 5,
            model: model.into(),
            hit_rate,
            weight,
        };
        obs.task_finished(
            "d",
            &report(
                "weights",
                &[("weights", "ensemble_weights")],
                vec![quality("lgbm", Some(0.6), 0.7), quality("ets", None, 0.3)],
            ),
        );
        let mut failed = report("weights", &[], vec![quality("chronos", Some(0.1), 0.9)]);
        failed.state = TaskState::Failed;
        obs.task_finished("d", &failed);
        let text = metrics.render();
        for line in [
            "krxflow_prediction_hit_rate{code=\"005930\",horizon=\"5\",model=\"lgbm\"} 0.6",
            "krxflow_ensemble_weight{code=\"005930\",horizon=\"5\",model=\"lgbm\"} 0.7",
            "krxflow_ensemble_weight{code=\"005930\",horizon=\"5\",model=\"ets\"} 0.3",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // No hit rate: no sample, the weight alone.
        assert!(
            !text.contains(
                "krxflow_prediction_hit_rate{code=\"005930\",horizon=\"5\",model=\"ets\"}"
            ),
            "{text}"
        );
        assert!(!text.contains("chronos"), "{text}");
    }
}
