//! YAML DAG specs for krxflow: parsing with source positions, validation, planning.
//!
//! [`load_dag_file`] / [`load_dag_str`] turn a DAG file into a [`ValidatedDag`] (tasks with
//! their configured operators, in topological order) or into every problem of the file at once,
//! each a [`Diagnostic`] with `file:line:col`:
//!
//! ```text
//! dags/bad.yaml:12:5: error[unknown-param]: task `features`: param `windw`: unknown field `windw`, expected one of `window`, `min_periods`
//! ```
//!
//! How it works: serde_norway reads the document into an order- and duplicate-preserving tree
//! (YAML 1.2 scalars: `005930` stays a string); yaml-rust2's event parser reads it again for the
//! line and column of every key and value. Fields are read one by one (so one bad field does
//! not hide the others), `${...}` references are substituted in `with:` and `params:`,
//! operators configure their `with:` blocks, ports and tables are checked against the
//! operators' Arrow schemas and the known tables, and petgraph finds cycles.
//!
//! Cron expressions: 6 or 7 fields with seconds (`0 0 16 * * Mon-Fri`), or the classic 5 fields
//! without seconds (`0 16 * * Mon-Fri`, stored with a leading `0`), or `@daily`-style
//! shorthands.

mod check_sql;
mod choices;
mod context;
mod diag;
mod draft;
mod duration;
mod fields;
mod load;
mod node;
mod parse;
mod parser;
mod plan;
mod retry;
mod sink;
mod spans;
mod spec;
mod subst;
mod suggest;
mod validate;
mod when;

pub use context::{EnvLookup, LoadContext, NoTables, ProcessEnv, TableLookup};
pub use diag::{DiagCode, Diagnostic, Pos, render};
pub use duration::{format_duration, parse_duration};
pub use load::{load_dag_file, load_dag_str};
pub use plan::{PlannedTask, ValidatedDag};
pub use retry::{Backoff, Jitter, RetryPolicy};
pub use spec::{
    Catchup, CheckSpec, DEFAULT_CALENDAR, DEFAULT_PARTITION, DEFAULT_TIMEOUT, DEFAULT_TIMEZONE,
    DEFAULT_WAIT_TIMEOUT, DagSpec, ScheduleSpec, Severity, TaskSpec, WaitFor, parse_cron,
};
pub use suggest::did_you_mean;
