//! The scheduler daemon behind `krxflow serve`; the binary only wires it (lake, metrics, DAGs).
//!
//! * Loads every DAG file in a folder; invalid ones are reported (log, `/healthz`,
//!   `krxflow_scheduler_dags{state="invalid"}`) and not scheduled, the others run.
//! * Each DAG's cron is evaluated in its time zone; a tick on a day its calendar closes is
//!   skipped; the run's ds is the tick's local date. Ticks missed while down follow the DAG's
//!   `catchup` policy; a DAG seen for the first time runs its latest due partition (unless
//!   `catchup: none`) and then follows its schedule.
//! * One scheduler per lake: a lease in the lake (generations created if absent), renewed
//!   every ttl/3.
//! * Retention: every table is vacuumed daily (`--vacuum-every`), keeping 7 days of time
//!   travel (`--vacuum-retain`).
//! * `max_active_runs` per DAG; one pool of task slots (`--max-parallel`) for all runs.
//! * SIGTERM / Ctrl-C: no new runs; running ones get `--grace` to finish, then their tasks are
//!   cancelled (recorded as cancelled). Unfinished partitions are kept in the scheduler state
//!   (`_krxflow/control/scheduler_state.json`) and run first after a restart; succeeded tasks
//!   are skipped there by fingerprint, so a restart resumes where it stopped.
//! * A paused DAG (`krxflow pause`, [`pause`]) gets no scheduled runs: its ticks wait as if
//!   the scheduler were down for it, and its `catchup` policy decides on resume.
//! * `schedule.wait_for` (`wait`): a due partition starts once the latest run of each DAG it
//!   names succeeded for the same day, or after its timeout.
//! * DAG files are re-read when they change (polled every second) or on SIGHUP; a running DAG
//!   run keeps the definition it started with.
//!
//! Modules: `daemon` (the loop) uses `dags` (folder scan and load), `state` (per-DAG
//! scheduling state), `status` (`/healthz`, `/runs`), `pause`, `wait`, `source` and `error`;
//! none uses another back (`state` uses `wait`, which uses `status`); `vacuum` is the retention policy.

mod daemon;
mod dags;
mod error;
pub mod pause;
mod source;
mod state;
mod status;
mod vacuum;
mod wait;

pub use daemon::{Config, LEASE, RunnerFor, Stopped, serve};
pub use error::DaemonError;
pub use source::{DagSource, Validate};
