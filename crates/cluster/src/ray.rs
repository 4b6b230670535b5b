//! A client of Ray's Job Submission REST API (the dashboard's `/api/jobs/`, port 8265 by
//! default): submit a job, read its status and logs, stop it. Blocking (ureq, already built
//! for the Pushgateway client); [`crate::RayRunner`] calls it off the async runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ClusterError, ClusterResult};

/// A job's state as Ray reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Stopped,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }
}

/// What `GET /api/jobs/{id}` says of a job.
#[derive(Debug, Clone, Deserialize)]
pub struct JobInfo {
    pub status: JobStatus,
    /// Ray's own words: for a failed entrypoint, its exit code and the tail of its logs.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub driver_exit_code: Option<i32>,
}

/// A job to submit: a shell command run on a worker with these environment variables.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub submission_id: String,
    pub entrypoint: String,
    pub env: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    /// CPUs the job holds while it runs (Ray queues it until a node has them).
    pub num_cpus: f64,
}

/// The Job Submission API of one Ray cluster.
#[derive(Debug, Clone)]
pub struct RayJobs {
    base: String,
    agent: ureq::Agent,
}

impl RayJobs {
    /// The API at `address` (`http://head:8265`; a trailing `/` is ignored).
    pub fn new(address: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: address.trim_end_matches('/').to_string(),
            agent,
        }
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    /// Ray's version: a cheap call that proves the API answers.
    pub fn version(&self) -> ClusterResult<String> {
        #[derive(Deserialize)]
        struct Version {
            ray_version: String,
        }
        let v: Version = self.call("GET", "/api/version", None)?;
        Ok(v.ray_version)
    }

    pub fn submit(&self, job: &JobSpec) -> ClusterResult<()> {
        let body = serde_json::json!({
            "entrypoint": job.entrypoint,
            "submission_id": job.submission_id,
            "runtime_env": {"env_vars": job.env},
            "metadata": job.metadata,
            "entrypoint_num_cpus": job.num_cpus,
        });
        let _: serde_json::Value = self.call("POST", "/api/jobs/", Some(body))?;
        Ok(())
    }

    pub fn status(&self, submission_id: &str) -> ClusterResult<JobInfo> {
        self.call("GET", &format!("/api/jobs/{submission_id}"), None)
    }

    /// The job's output so far (its driver's stdout and stderr).
    pub fn logs(&self, submission_id: &str) -> ClusterResult<String> {
        #[derive(Deserialize)]
        struct Logs {
            logs: String,
        }
        let l: Logs = self.call("GET", &format!("/api/jobs/{submission_id}/logs"), None)?;
        Ok(l.logs)
    }

    /// Asks Ray to stop the job; whether it was still running.
    pub fn stop(&self, submission_id: &str) -> ClusterResult<bool> {
        #[derive(Deserialize)]
        struct Stopped {
            stopped: bool,
        }
        let s: Stopped = self.call(
            "POST",
            &format!("/api/jobs/{submission_id}/stop"),
            Some(serde_json::json!({})),
        )?;
        Ok(s.stopped)
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ClusterResult<T> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| ClusterError::Unreachable {
            url: url.clone(),
            source: Box::new(e),
        };
        let mut resp = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b.to_string()),
            _ => self.agent.get(&url).call(),
        }
        .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClusterError::Unreachable {
                url: url.clone(),
                source: Box::new(e),
            })?;
        if !(200..300).contains(&status) {
            return Err(ClusterError::Answer {
                url,
                what: format!("HTTP {status}: {}", first_line(&text)),
            });
        }
        serde_json::from_str(&text).map_err(|e| ClusterError::Answer {
            url,
            what: format!("a body that is not the API's ({e}): {}", first_line(&text)),
        })
    }
}

fn first_line(text: &str) -> &str {
    let line = text.trim().lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_jobs_status_keeps_rays_exit_code_and_message() {
        let info: JobInfo = serde_json::from_str(
            r#"{"type": "SUBMISSION", "job_id": null, "submission_id": "t2", "status": "FAILED",
                "entrypoint": "exit 3", "message": "Job entrypoint command failed with exit code 3",
                "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "driver_exit_code": 3}"#,
        )
        .unwrap();
        assert_eq!(info.status, JobStatus::Failed);
        assert!(info.status.is_final());
        assert_eq!(info.driver_exit_code, Some(3));
        assert_eq!(
            info.error_type.as_deref(),
            Some("JOB_ENTRYPOINT_COMMAND_ERROR")
        );
    }

    #[test]
    fn a_running_job_is_not_final_and_an_unknown_state_is_an_error() {
        let info: JobInfo = serde_json::from_str(r#"{"status": "RUNNING"}"#).unwrap();
        assert!(!info.status.is_final());
        assert!(serde_json::from_str::<JobInfo>(r#"{"status": "EXPLODED"}"#).is_err());
    }

    #[test]
    fn an_address_nobody_listens_on_is_unreachable_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let jobs = RayJobs::new(&format!("http://127.0.0.1:{port}/"));
        let e = jobs.version().unwrap_err();
        assert!(matches!(e, ClusterError::Unreachable { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{port}/api/version")),
            "{e}"
        );
    }

    #[test]
    fn long_answers_are_cut_to_their_first_line() {
        assert_eq!(first_line("  a\nb"), "a");
        assert_eq!(first_line(&"x".repeat(1000)).len(), 300);
    }
}
