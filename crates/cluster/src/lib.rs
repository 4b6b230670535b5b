//! Scale-out: a backfill's partitions run as jobs on a cluster engine the user already
//! operates, over the same lake.
//!
//! [`RayRunner`] submits each partition to a Ray cluster through its Job Submission REST API
//! ([`ray::RayJobs`]): the job runs the same `krxflow` binary (`run DAG --date D --trigger
//! backfill`) on a worker, which reads and writes the lake itself (`s3://`, or a folder every
//! node mounts) and records the run, its task attempts and lineage there as a local run would.
//! The driver (`krxflow backfill --ray-address URL`) keeps the plan, the order, how many run at
//! once, job-level retries and the backfill's record.

pub mod error;
pub mod ray;
mod runner;
mod shell;

pub use error::{ClusterError, ClusterResult};
pub use ray::{JobInfo, JobStatus, RayJobs};
pub use runner::RayRunner;
