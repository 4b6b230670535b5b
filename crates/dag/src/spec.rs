//! The DAG specification as written in YAML, after defaults and substitution.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// Default `partition:`.
pub const DEFAULT_PARTITION: &str = "trading_day";
/// Default calendar (`schedule.calendar` or top-level `calendar:`).
pub const DEFAULT_CALENDAR: &str = "krx";
/// Default `schedule.timezone`.
pub const DEFAULT_TIMEZONE: &str = "Asia/Seoul";
/// Default task timeout (`timeout:` in `defaults:` or a task).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One DAG file.
#[derive(Debug, Clone, PartialEq)]
pub struct DagSpec {
    /// `dag:`, the DAG's name.
    pub name: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// `description:`.
    pub description: Option<String>,
    /// `schedule:`; `None` for DAGs that only run on demand.
    pub schedule: Option<ScheduleSpec>,
    /// `partition:` (default `trading_day`).
    pub partition: String,
    /// `schedule.calendar`, else top-level `calendar:`, else `krx`.
    pub calendar: String,
    /// `max_active_runs:` (default 1, at least 1).
    pub max_active_runs: u32,
    /// `params:` after environment substitution (an object; `{}` when absent).
    pub params: serde_json::Value,
    /// Tasks in file order.
    pub tasks: Vec<TaskSpec>,
}

/// `schedule:` of a DAG. Also accepted as a bare string: `schedule: "0 0 16 * * Mon-Fri"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The cron expression in the `cron` crate's form: `sec min hour day-of-month month
    /// day-of-week [year]`. A 5-field expression in the file (no seconds) is stored with a
    /// leading `0 ` seconds field; `@daily`-style shorthands are kept. Day-of-week names
    /// (`Mon-Fri`) are the safe choice: numeric days follow the cron crate (1 = Sunday).
    pub cron: String,
    /// IANA time zone the expression is evaluated in (default `Asia/Seoul`).
    pub timezone: String,
    /// `schedule.calendar`, if given there.
    pub calendar: Option<String>,
    /// What to do with ticks missed while the scheduler was down (default `latest`).
    pub catchup: Catchup,
    /// `schedule.wait_for`: other DAGs whose run for the same day must have succeeded before a
    /// scheduled run of this one starts.
    pub wait_for: Option<WaitFor>,
}

/// Default `schedule.wait_for.timeout`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// `schedule.wait_for: { dags: [...], timeout: 1h }`: the scheduler starts a due partition
/// once the latest run of each of `dags` for the same day has succeeded (Airflow's
/// ExternalTaskSensor, without a task slot held while waiting). After `timeout` it starts
/// anyway, saying so: its tasks read what the lake holds, as a run started by hand would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitFor {
    pub dags: Vec<String>,
    pub timeout: Duration,
}

impl ScheduleSpec {
    /// The parsed cron schedule (validated at load time, so this only fails for hand-built
    /// specs).
    pub fn cron_schedule(&self) -> Result<cron::Schedule, String> {
        parse_cron(&self.cron).map(|(_, s)| s)
    }

    /// The parsed time zone (validated at load time).
    pub fn tz(&self) -> Result<chrono_tz::Tz, String> {
        chrono_tz::Tz::from_str(&self.timezone)
            .map_err(|_| format!("unknown time zone `{}`", self.timezone))
    }
}

/// Normalises a cron expression to the cron crate's 6/7-field form (a 5-field expression gets
/// a `0` seconds field) and parses it. Returns the normalised text and the schedule.
pub fn parse_cron(expr: &str) -> Result<(String, cron::Schedule), String> {
    let trimmed = expr.trim();
    let fields = trimmed.split_whitespace().count();
    let normalized = if fields == 5 && !trimmed.starts_with('@') {
        format!("0 {trimmed}")
    } else {
        trimmed.to_string()
    };
    cron::Schedule::from_str(&normalized)
        .map(|s| (normalized, s))
        .map_err(|e| cron_error_text(&e.to_string()))
}

/// The cron crate's error repeats the expression and draws a caret on separate lines: keep
/// the explanation only.
fn cron_error_text(raw: &str) -> String {
    raw.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
        .unwrap_or(raw)
        .to_string()
}

/// Catch-up policy for missed schedule ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// Run only the most recent missed tick.
    #[default]
    Latest,
    /// Run every missed tick, oldest first.
    All,
    /// Skip missed ticks.
    None,
}

impl fmt::Display for Catchup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Latest => "latest",
            Self::All => "all",
            Self::None => "none",
        })
    }
}

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's key under `tasks:`.
    pub name: String,
    /// `op:`, the operator kind.
    pub op: String,
    /// `with:` after substitution (an object; `{}` when absent).
    pub with: serde_json::Value,
    /// `inputs:` port -> table.
    pub inputs: BTreeMap<String, String>,
    /// `outputs:` port -> table.
    pub outputs: BTreeMap<String, String>,
    /// `after:` explicit upstream tasks (besides those implied by tables).
    pub after: Vec<String>,
    /// `retries:` merged field by field over `defaults.retries` over the built-in default.
    pub retries: RetryPolicy,
    /// `timeout:` per attempt (default from `defaults.timeout`, else 30m).
    pub timeout: Duration,
    /// Runs of this task for day D wait for its run for the previous partition (backfills run
    /// chronologically).
    pub depends_on_past: bool,
    /// `checks:` in file order: queries over the lake run once the task's outputs are
    /// committed.
    pub checks: Vec<CheckSpec>,
}

/// One of a task's `checks:` (dbt's tests, Dagster's asset checks): a read-only SQL query over
/// the lake, run after the task committed its outputs, whose rows are the failures; `{ds}` in
/// it is the run's partition as a SQL date (`DATE '2024-12-16'`). No row: it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    pub sql: String,
    pub severity: Severity,
}

impl CheckSpec {
    /// The query for partition `ds`.
    pub fn sql_for(&self, ds: chrono::NaiveDate) -> String {
        self.sql.replace("{ds}", &format!("DATE '{ds}'"))
    }
}

/// What a failed check does to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The task fails (its outputs stay committed; nothing downstream runs on them).
    #[default]
    Error,
    /// Recorded and counted; the task succeeds.
    Warn,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_gets_a_seconds_field() {
        let (text, _) = parse_cron("0 16 * * Mon-Fri").unwrap();
        assert_eq!(text, "0 0 16 * * Mon-Fri");
        let (text, _) = parse_cron("0 0 16 * * Mon-Fri").unwrap();
        assert_eq!(text, "0 0 16 * * Mon-Fri");
        assert!(parse_cron("@daily").is_ok());
    }

    #[test]
    fn bad_cron_is_an_error() {
        assert!(parse_cron("0 0 25 * * *").is_err());
        assert!(parse_cron("every day").is_err());
        let err = parse_cron("0 0 25 * * *").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("25"), "{err}");
    }
}
