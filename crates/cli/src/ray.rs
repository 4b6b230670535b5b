//! The Ray flags of `backfill` and `serve`, and the runner they make: each DAG run becomes a
//! job on the Ray cluster (`krxflow-cluster`).

use std::path::Path;
use std::sync::Arc;

use krxflow_cluster::{RayJobs, RayRunner};
use krxflow_daemon::RunnerFor;
use krxflow_exec::PartitionRunner;

use crate::util::Ctx;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct RayArgs {
    /// Run each DAG run as a job on this Ray cluster (its Job Submission API, e.g.
    /// http://head:8265) instead of here. The workers need the krxflow binary, the DAG files
    /// and this working folder at the same paths, and the lake (`s3://…`, or a folder every
    /// node mounts); jobs get this shell's `AWS_*` and `KRXFLOW_*` variables.
    #[arg(long, env = "KRXFLOW_RAY_ADDRESS")]
    ray_address: Option<String>,
    /// The krxflow binary on the Ray workers (default: this binary's path).
    #[arg(long, requires = "ray_address")]
    ray_krxflow: Option<String>,
    /// The workers use their own AWS credentials (instance roles, their environment): this
    /// shell's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are not sent
    /// with the jobs (where anyone who can list the cluster's jobs could read them).
    #[arg(long, requires = "ray_address")]
    ray_own_credentials: bool,
}

impl RayArgs {
    pub fn is_set(&self) -> bool {
        self.ray_address.is_some()
    }

    /// With `--ray-address`: after checking that the cluster answers, what makes a DAG file's
    /// runner of runs as jobs on it.
    pub fn runner_for(&self, ctx: &Ctx) -> anyhow::Result<Option<RunnerFor>> {
        let Some(address) = &self.ray_address else {
            return Ok(None);
        };
        let jobs = RayJobs::new(address);
        let version = jobs.version()?;
        let here = std::env::current_dir()?.display().to_string();
        let binary = match &self.ray_krxflow {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.display().to_string(),
        };
        let env = job_env(std::env::vars(), self.ray_own_credentials);
        let lake = ctx.lake.root().to_string();
        eprintln!("krxflow: DAG runs go to Ray {version} at {address} as jobs");
        Ok(Some(Arc::new(move |dag_file: &Path| {
            Arc::new(
                RayRunner::new(
                    jobs.clone(),
                    &binary,
                    &here,
                    &lake,
                    &dag_file.display().to_string(),
                )
                .with_env(env.clone()),
            ) as Arc<dyn PartitionRunner>
        })))
    }
}

/// The variables a cluster job gets from this shell: the lake store's (`AWS_*`, less the keys
/// when the workers have their own) and krxflow's (`KRXFLOW_*`, less the lake and the cluster,
/// which the job's command line names).
fn job_env(
    vars: impl Iterator<Item = (String, String)>,
    own_credentials: bool,
) -> Vec<(String, String)> {
    const KEYS: [&str; 3] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    vars.filter(|(k, _)| {
        (k.starts_with("AWS_") && !(own_credentials && KEYS.contains(&k.as_str())))
            || (k.starts_with("KRXFLOW_")
                && !matches!(k.as_str(), "KRXFLOW_LAKE" | "KRXFLOW_RAY_ADDRESS"))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::job_env;

    fn vars() -> impl Iterator<Item = (String, String)> {
        [
            ("AWS_REGION", "ap-northeast-2"),
            ("AWS_ACCESS_KEY_ID", "key"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("KRXFLOW_DATA", "/data"),
            ("KRXFLOW_LAKE", "s3://b/l"),
            ("KRXFLOW_RAY_ADDRESS", "http://head:8265"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
    }

    fn names(env: Vec<(String, String)>) -> Vec<String> {
        env.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn jobs_get_the_stores_and_krxflows_variables_but_not_the_lake_or_the_cluster() {
        assert_eq!(
            names(job_env(vars(), false)),
            [
                "AWS_REGION",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "KRXFLOW_DATA"
            ]
        );
    }

    #[test]
    fn workers_with_their_own_credentials_get_no_keys() {
        assert_eq!(names(job_env(vars(), true)), ["AWS_REGION", "KRXFLOW_DATA"]);
    }
}
