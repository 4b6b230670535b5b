//! [`RayRunner`]: one backfill partition as one Ray job running `krxflow run` on a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use krxflow_dag::ValidatedDag;
use krxflow_exec::{PartitionOutcome, PartitionRun, PartitionRunner, Reprocess};
use tokio_util::sync::CancellationToken;

use crate::error::{ClusterError, ClusterResult};
use crate::ray::{JobInfo, JobSpec, JobStatus, RayJobs};
use crate::shell::quote;

/// Polls of a job's status in a row that may fail before the job is given up as lost.
const LOST_AFTER_POLL_ERRORS: u32 = 20;

/// How long a stopped job may take to end before the driver goes on without it.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Runs each partition as a Ray job: `cd WORKDIR && exec KRXFLOW --lake LAKE run DAG --date
/// D --reprocess R --trigger backfill`, with the driver's `AWS_*` and `KRXFLOW_*` variables.
/// The workers need the binary, the DAG file and the working folder at the same paths as the
/// driver (as Airflow's workers need its DAG folder), and the lake (`s3://`, or a folder every
/// node mounts).
///
/// A job whose run failed (`krxflow run` exits 1: its tasks were already retried by the DAG's
/// policy on the worker; 2: the DAG or the date is invalid) fails its partition. A job that
/// failed for any other reason (the command not found, a worker lost, the job stopped by
/// someone else) is submitted again, up to `attempts` times in all.
#[derive(Debug, Clone)]
pub struct RayRunner {
    jobs: RayJobs,
    krxflow: String,
    workdir: String,
    lake: String,
    dag_path: String,
    env: BTreeMap<String, String>,
    attempts: u32,
    poll: Duration,
}

/// How one submission ended.
enum Ended {
    Succeeded,
    Cancelled,
    /// The run failed: submitting it again would fail the same way.
    RunFailed(String),
    /// The job failed around the run: worth another submission.
    JobFailed(String),
}

impl RayRunner {
    /// Jobs on `jobs`' cluster running `krxflow` (the binary's path on the workers) from
    /// `workdir` against `lake` (a URL) for the DAG file at `dag_path`.
    pub fn new(jobs: RayJobs, krxflow: &str, workdir: &str, lake: &str, dag_path: &str) -> Self {
        Self {
            jobs,
            krxflow: krxflow.into(),
            workdir: workdir.into(),
            lake: lake.into(),
            dag_path: dag_path.into(),
            env: BTreeMap::new(),
            attempts: 3,
            poll: Duration::from_millis(500),
        }
    }

    /// Environment variables every job gets (credentials of the lake's store, krxflow's own).
    pub fn with_env(mut self, env: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// Submissions of one partition in all when its job fails around the run (default 3).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The shell command a job runs for `ds`, recorded with `trigger`.
    pub fn entrypoint(&self, run: PartitionRun<'_>) -> String {
        let reprocess = match run.reprocess {
            Reprocess::All => "all",
            Reprocess::Missing | Reprocess::Failed => "missing",
        };
        let rerun: String = run.rerun.iter().map(|t| format!(" {}", quote(t))).collect();
        let rerun = if rerun.is_empty() {
            rerun
        } else {
            format!(" --rerun{rerun}")
        };
        format!(
            "cd {} && exec {} --lake {} run {} --date {} --reprocess {reprocess} --trigger {}{rerun}",
            quote(&self.workdir),
            quote(&self.krxflow),
            quote(&self.lake),
            quote(&self.dag_path),
            run.ds,
            quote(run.trigger),
        )
    }

    /// Runs a call of the (blocking) client on tokio's blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RayJobs) -> ClusterResult<T> + Send + 'static,
    ) -> ClusterResult<T> {
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || f(&jobs))
            .await
            .unwrap_or_else(|e| Err(ClusterError::Client(e.to_string())))
    }

    async fn status(&self, id: &str) -> ClusterResult<JobInfo> {
        let id = id.to_string();
        self.call(move |jobs| jobs.status(&id)).await
    }

    /// Asks Ray to stop the job and waits (up to `STOP_WAIT`) until Ray says it ended, so a
    /// cancelled backfill returns with its jobs stopped, not still stopping.
    async fn stop(&self, id: &str) {
        let stop = id.to_string();
        if let Err(e) = self.call(move |jobs| jobs.stop(&stop)).await {
            tracing::warn!(job = %id, error = %e, "could not stop the ray job");
            return;
        }
        let t0 = std::time::Instant::now();
        while t0.elapsed() < STOP_WAIT {
            if let Ok(info) = self.status(id).await
                && info.status.is_final()
            {
                return;
            }
            tokio::time::sleep(self.poll).await;
        }
        tracing::warn!(job = %id, "the ray job was asked to stop and has not ended yet");
    }

    /// Submits `job` and follows it to its end (or stops it when `cancel` fires).
    async fn follow(&self, job: JobSpec, cancel: &CancellationToken) -> Ended {
        let id = job.submission_id.clone();
        if let Err(e) = self.call(move |jobs| jobs.submit(&job)).await {
            return Ended::JobFailed(format!("submitting job {id}: {e}"));
        }
        tracing::info!(job = %id, cluster = %self.jobs.address(), "ray job submitted");
        let mut errors = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.stop(&id).await;
                    return Ended::Cancelled;
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
            let info = match self.status(&id).await {
                Ok(info) => info,
                Err(e) => {
                    errors += 1;
                    if errors >= LOST_AFTER_POLL_ERRORS {
                        // Before the partition is submitted again, the job we lost sight of is
                        // asked to stop (best effort), so two jobs do not run the same day.
                        self.stop(&id).await;
                        return Ended::JobFailed(format!(
                            "job {id}: its status is unreadable: {e}"
                        ));
                    }
                    continue;
                }
            };
            errors = 0;
            match info.status {
                JobStatus::Pending | JobStatus::Running => {}
                JobStatus::Succeeded => return Ended::Succeeded,
                JobStatus::Failed | JobStatus::Stopped => {
                    let why = describe(&id, &info);
                    return match info.driver_exit_code {
                        Some(1 | 2) => Ended::RunFailed(why),
                        _ => Ended::JobFailed(why),
                    };
                }
            }
        }
    }
}

#[async_trait]
impl PartitionRunner for RayRunner {
    async fn run_partition(
        &self,
        dag: &ValidatedDag,
        run: PartitionRun<'_>,
        cancel: &CancellationToken,
    ) -> PartitionOutcome {
        self.run_named(&dag.spec.name, run, cancel).await
    }
}

impl RayRunner {
    /// The partition `run.ds` of the DAG `name` (the file is `dag_path`), submitted up to
    /// `attempts` times.
    async fn run_named(
        &self,
        name: &str,
        run: PartitionRun<'_>,
        cancel: &CancellationToken,
    ) -> PartitionOutcome {
        let ds = run.ds;
        for attempt in 1..=self.attempts {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let job = JobSpec {
                submission_id: format!("krxflow-{name}-{ds}-{}", &token[..8]),
                entrypoint: self.entrypoint(run),
                env: self.env.clone(),
                metadata: BTreeMap::from([
                    ("krxflow_dag".to_string(), name.to_string()),
                    ("krxflow_ds".to_string(), ds.to_string()),
                    ("krxflow_attempt".to_string(), attempt.to_string()),
                ]),
                num_cpus: 1.0,
            };
            match self.follow(job, cancel).await {
                Ended::Succeeded => return PartitionOutcome::Succeeded,
                Ended::Cancelled => return PartitionOutcome::Cancelled,
                Ended::RunFailed(why) => {
                    tracing::error!("{name} {ds}: the run failed on the cluster: {why}");
                    return PartitionOutcome::Failed;
                }
                Ended::JobFailed(why) if attempt < self.attempts => {
                    tracing::warn!(
                        "{name} {ds}: attempt {attempt}/{} failed around the run, submitting again: {why}",
                        self.attempts
                    );
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                Ended::JobFailed(why) => {
                    tracing::error!(
                        "{name} {ds}: the job failed on all {} attempts; the last: {why}",
                        self.attempts
                    );
                }
            }
        }
        PartitionOutcome::Failed
    }
}

/// `job ID STATUS (exit code N): <the last lines of Ray's message>`.
fn describe(id: &str, info: &JobInfo) -> String {
    let status = match info.status {
        JobStatus::Stopped => "stopped",
        _ => "failed",
    };
    let code = info
        .driver_exit_code
        .map(|c| format!(" (exit code {c})"))
        .unwrap_or_default();
    let message = info.message.as_deref().unwrap_or("").trim();
    let lines: Vec<&str> = message.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    format!("job {id} {status}{code}:\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn runner() -> RayRunner {
        RayRunner::new(
            RayJobs::new("http://127.0.0.1:1"),
            "/opt/krx flow/krxflow",
            "/srv/it's here",
            "s3://bucket/lake",
            "/srv/dags/daily_batch.yaml",
        )
    }

    #[test]
    fn the_entrypoint_runs_the_dag_for_the_day_from_the_working_folder() {
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        assert_eq!(
            runner().entrypoint(PartitionRun::new(ds, Reprocess::Missing, "backfill")),
            "cd '/srv/it'\\''s here' && exec '/opt/krx flow/krxflow' --lake 's3://bucket/lake' \
             run '/srv/dags/daily_batch.yaml' --date 2024-12-16 --reprocess missing --trigger 'backfill'"
        );
        assert!(
            runner()
                .entrypoint(PartitionRun::new(ds, Reprocess::All, "schedule"))
                .ends_with("--reprocess all --trigger 'schedule'")
        );
    }

    #[test]
    fn a_rerun_partition_asks_the_job_to_run_those_tasks_again() {
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        let tasks = std::collections::BTreeSet::from(["forecast_ets".to_string(), "it's".into()]);
        let mut run = PartitionRun::new(ds, Reprocess::Missing, "backfill");
        run.rerun = &tasks;
        assert!(
            runner()
                .entrypoint(run)
                .ends_with("--trigger 'backfill' --rerun 'forecast_ets' 'it'\\''s'"),
            "{}",
            runner().entrypoint(run)
        );
    }

    #[test]
    fn a_failure_is_told_with_the_tail_of_rays_message() {
        let message: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let info = JobInfo {
            status: JobStatus::Failed,
            message: Some(message),
            error_type: None,
            driver_exit_code: Some(1),
        };
        let d = describe("krxflow-x", &info);
        assert!(
            d.starts_with("job krxflow-x failed (exit code 1):\n"),
            "{d}"
        );
        assert!(d.ends_with("line 30"), "{d}");
        assert!(!d.contains("line 18\n"), "{d}");
    }

    #[tokio::test]
    async fn a_cluster_that_never_answers_fails_the_partition_after_every_attempt() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let r = RayRunner::new(
            RayJobs::new(&format!("http://127.0.0.1:{port}")),
            "krxflow",
            "/",
            "s3://b/l",
            "d.yaml",
        )
        .with_attempts(2);
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        let t0 = std::time::Instant::now();
        let outcome = r
            .run_named(
                "d",
                PartitionRun::new(ds, Reprocess::Missing, "backfill"),
                &CancellationToken::new(),
            )
            .await;
        assert_eq!(outcome, PartitionOutcome::Failed);
        // Two submissions with a pause of a second between them: tried again, not forever.
        assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    }
}
