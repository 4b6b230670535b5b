//! From the YAML tree to [`DagSpec`]/[`TaskSpec`]: structure, types, defaults, substitution.
//!
//! Every field is read on its own, so one mistyped or unknown field is reported and the rest
//! of the file is still checked.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::diag::{DiagCode, Pos};
use crate::draft::TaskDraft;
use crate::fields::{Fields, valid_name};
use crate::node::Node;
use crate::parser::Parser;
use crate::retry::{Backoff, Jitter, RetryPolicy};
use crate::spans::{DisplayPath, Seg, child, path};
use crate::spec::{
    Catchup, CheckSpec, DEFAULT_CALENDAR, DEFAULT_PARTITION, DEFAULT_TIMEOUT, DEFAULT_TIMEZONE,
    DEFAULT_WAIT_TIMEOUT, DagSpec, ScheduleSpec, Severity, TaskSpec, WaitFor, parse_cron,
};
use crate::subst::substitute;
use crate::suggest::did_you_mean;

const TOP_FIELDS: &[&str] = &[
    "dag",
    "description",
    "schedule",
    "partition",
    "calendar",
    "max_active_runs",
    "defaults",
    "params",
    "choices",
    "tasks",
];
const SCHEDULE_FIELDS: &[&str] = &["cron", "timezone", "calendar", "catchup", "wait_for"];
const WAIT_FOR_FIELDS: &[&str] = &["dags", "timeout"];
const DEFAULTS_FIELDS: &[&str] = &["retries", "timeout"];
const RETRY_FIELDS: &[&str] = &["max", "backoff", "base", "max_delay", "jitter"];
const TASK_FIELDS: &[&str] = &[
    "op",
    "with",
    "inputs",
    "outputs",
    "after",
    "retries",
    "timeout",
    "depends_on_past",
    "when",
    "checks",
];
const CHECK_FIELDS: &[&str] = &["sql", "severity"];

impl Parser<'_, '_> {
    /// Reads a whole DAG. Always returns a spec (with defaults where fields were broken); the
    /// caller knows from the sink whether it is usable.
    pub fn dag(&mut self, root: &Node, file: &Path) -> (DagSpec, Vec<TaskDraft>) {
        let top = match root {
            Node::Map(_) => self.fields_ext(root, &[], TOP_FIELDS, "", true),
            other => {
                self.sink.at(
                    Pos::START,
                    DiagCode::InvalidField,
                    format!(
                        "a DAG file must be a mapping with `dag:` and `tasks:`, found {}",
                        other.kind()
                    ),
                );
                Fields {
                    entries: Vec::new(),
                }
            }
        };
        let root_ok = matches!(root, Node::Map(_));

        let name = match top.get("dag") {
            Some(n) => self
                .name(n, &path(&["dag"]), "dag name")
                .unwrap_or_default(),
            None => {
                if root_ok {
                    self.sink.at(
                        Pos::START,
                        DiagCode::InvalidField,
                        "missing field `dag` (the DAG's name)",
                    );
                }
                String::new()
            }
        };
        let description = top
            .get("description")
            .and_then(|n| self.string(n, &path(&["description"]), ""));
        let partition = top
            .get("partition")
            .and_then(|n| self.string(n, &path(&["partition"]), ""))
            .unwrap_or_else(|| DEFAULT_PARTITION.to_string());
        let max_active_runs = match top.get("max_active_runs") {
            Some(n) => {
                let at = path(&["max_active_runs"]);
                match self.typed::<u32>(n, &at, "", "a positive integer") {
                    Some(0) => {
                        self.sink.at_value(
                            &at,
                            DiagCode::InvalidField,
                            "`max_active_runs` must be at least 1",
                        );
                        1
                    }
                    Some(v) => v,
                    None => 1,
                }
            }
            None => 1,
        };
        let schedule = top.get("schedule").and_then(|n| self.schedule(n));
        if let Some(w) = schedule.as_ref().and_then(|s| s.wait_for.as_ref())
            && !name.is_empty()
            && w.dags.contains(&name)
        {
            self.sink.at_value(
                &path(&["schedule", "wait_for", "dags"]),
                DiagCode::InvalidField,
                format!(
                    "`schedule.wait_for`: `{name}` waits for itself; its scheduled runs would \
                     only ever start on the timeout"
                ),
            );
        }
        let top_calendar = top
            .get("calendar")
            .and_then(|n| self.string(n, &path(&["calendar"]), ""));
        let calendar = match (
            schedule.as_ref().and_then(|s| s.calendar.clone()),
            top_calendar,
        ) {
            (Some(s), Some(t)) if s != t => {
                self.sink.at_value(
                    &path(&["calendar"]),
                    DiagCode::InvalidField,
                    format!("`calendar: {t}` contradicts `schedule.calendar: {s}`; give it once"),
                );
                s
            }
            (Some(s), _) => s,
            (None, Some(t)) => t,
            (None, None) => DEFAULT_CALENDAR.to_string(),
        };
        if !krxflow_schedule::CALENDARS.contains(&calendar.as_str()) {
            let at = if top.get("calendar").is_some() {
                path(&["calendar"])
            } else {
                path(&["schedule", "calendar"])
            };
            self.sink.at_value(
                &at,
                DiagCode::InvalidField,
                format!(
                    "unknown calendar `{calendar}`: expected one of {}",
                    krxflow_schedule::CALENDARS.join(", ")
                ),
            );
        }

        let (default_retry, default_timeout) = match top.get("defaults") {
            Some(n) => self.defaults(n),
            None => (RetryPolicy::default(), DEFAULT_TIMEOUT),
        };
        let params = self.params(top.get("params"));
        self.choices(top.get("choices"), top.get("params"), &params);

        let drafts = self.tasks(
            top.get("tasks"),
            root_ok,
            &default_retry,
            default_timeout,
            &params,
        );

        let spec = DagSpec {
            name,
            file: file.to_path_buf(),
            description,
            schedule,
            partition,
            calendar,
            max_active_runs,
            params,
            tasks: drafts.iter().map(|d| d.spec.clone()).collect(),
        };
        (spec, drafts)
    }

    /// The `tasks:` mapping; a repeated task name keeps its first definition.
    fn tasks(
        &mut self,
        node: Option<&Node>,
        root_ok: bool,
        default_retry: &RetryPolicy,
        default_timeout: Duration,
        params: &serde_json::Value,
    ) -> Vec<TaskDraft> {
        let tasks_at = path(&["tasks"]);
        match node {
            Some(Node::Map(entries)) => {
                let mut drafts: Vec<TaskDraft> = Vec::new();
                for (k, v) in entries {
                    let Some(task_name) = k.key_text() else {
                        self.sink.at_key(
                            &tasks_at,
                            DiagCode::InvalidField,
                            format!("task names must be strings, found {}", k.kind()),
                        );
                        continue;
                    };
                    if drafts.iter().any(|d| d.spec.name == task_name) {
                        continue; // reported as duplicate-task from the span tree
                    }
                    let task_at = child(&tasks_at, &task_name);
                    if !valid_name(&task_name) {
                        self.sink.at_key(
                            &task_at,
                            DiagCode::InvalidField,
                            format!(
                                "task name `{task_name}` must be non-empty and use only letters, \
                                 digits, `_`, `-` and `.`"
                            ),
                        );
                    }
                    drafts.push(self.task(
                        &task_name,
                        v,
                        &task_at,
                        default_retry,
                        default_timeout,
                        params,
                    ));
                }
                if entries.is_empty() {
                    self.sink
                        .at_key(&tasks_at, DiagCode::InvalidField, "`tasks` is empty");
                }
                // Tasks whose `when` is false are not part of this DAG.
                let left_out: Vec<String> = drafts
                    .iter()
                    .filter(|d| !d.enabled)
                    .map(|d| d.spec.name.clone())
                    .collect();
                drafts.retain(|d| d.enabled);
                for d in &mut drafts {
                    d.spec.after.retain(|a| !left_out.contains(a));
                }
                drafts
            }
            Some(other) => {
                self.sink.at_value(
                    &tasks_at,
                    DiagCode::InvalidField,
                    format!(
                        "`tasks` must be a mapping of task name to task, found {}",
                        other.kind()
                    ),
                );
                Vec::new()
            }
            None => {
                if root_ok {
                    let pos = self.sink.spans.nearest_key_pos(&tasks_at);
                    self.sink
                        .at(pos, DiagCode::InvalidField, "missing field `tasks`");
                }
                Vec::new()
            }
        }
    }

    fn task(
        &mut self,
        name: &str,
        node: &Node,
        at: &[Seg],
        default_retry: &RetryPolicy,
        default_timeout: Duration,
        params: &serde_json::Value,
    ) -> TaskDraft {
        let prefix = format!("task `{name}`: ");
        let mut draft = TaskDraft {
            spec: TaskSpec {
                name: name.to_string(),
                op: String::new(),
                with: serde_json::Value::Object(Default::default()),
                inputs: BTreeMap::new(),
                outputs: BTreeMap::new(),
                after: Vec::new(),
                retries: *default_retry,
                timeout: default_timeout,
                depends_on_past: false,
                checks: Vec::new(),
            },
            op_ok: false,
            with_ok: false,
            enabled: true,
        };
        if !matches!(node, Node::Map(_)) {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                format!(
                    "{prefix}a task must be a mapping with `op:`, found {}",
                    node.kind()
                ),
            );
            return draft;
        }
        let f = self.fields(node, at, TASK_FIELDS, &prefix);
        match f.get("op") {
            Some(n) => {
                if let Some(op) = self.string(n, &child(at, "op"), &prefix) {
                    draft.spec.op = op;
                    draft.op_ok = true;
                }
            }
            None => self.sink.at_key(
                at,
                DiagCode::InvalidField,
                format!("{prefix}missing field `op`"),
            ),
        }
        let with_at = child(at, "with");
        draft.with_ok = match f.get("with") {
            None => true,
            Some(n @ Node::Map(_)) => match self.json(n, &with_at, &prefix) {
                Some(raw) => {
                    let before = self.sink.diags.len();
                    draft.spec.with = self.substitute(&raw, &with_at, params, &prefix);
                    self.sink.diags.len() == before
                }
                None => false,
            },
            Some(other) => {
                self.sink.at_value(
                    &with_at,
                    DiagCode::InvalidField,
                    format!(
                        "{prefix}`with` must be a mapping of params, found {}",
                        other.kind()
                    ),
                );
                false
            }
        };
        if let Some(n) = f.get("inputs") {
            draft.spec.inputs = self.string_map(n, &child(at, "inputs"), &prefix);
        }
        if let Some(n) = f.get("outputs") {
            draft.spec.outputs = self.string_map(n, &child(at, "outputs"), &prefix);
        }
        if let Some(n) = f.get("after") {
            draft.spec.after = self.string_list(n, &child(at, "after"), &prefix);
        }
        if let Some(n) = f.get("retries") {
            draft.spec.retries = self.retries(n, &child(at, "retries"), &prefix, default_retry);
        }
        if let Some(n) = f.get("timeout")
            && let Some(d) = self.duration(n, &child(at, "timeout"), &prefix)
        {
            draft.spec.timeout = d;
        }
        if let Some(n) = f.get("depends_on_past")
            && let Some(b) =
                self.typed::<bool>(n, &child(at, "depends_on_past"), &prefix, "true or false")
        {
            draft.spec.depends_on_past = b;
        }
        if let Some(n) = f.get("checks") {
            draft.spec.checks = self.checks(n, &child(at, "checks"), &prefix);
        }
        if let Some(n) = f.get("when") {
            let when_at = child(at, "when");
            if let Some(raw) = self.json(n, &when_at, &prefix) {
                let value = self.substitute(&raw, &when_at, params, &prefix);
                match crate::when::holds(&value) {
                    Ok(b) => draft.enabled = b,
                    Err(why) => {
                        self.sink.at_value(
                            &when_at,
                            DiagCode::InvalidField,
                            format!("{prefix}`when` {why}"),
                        );
                    }
                }
            }
        }
        draft
    }

    fn schedule(&mut self, node: &Node) -> Option<ScheduleSpec> {
        let at = path(&["schedule"]);
        let prefix = "`schedule`: ";
        let mut spec = ScheduleSpec {
            cron: String::new(),
            timezone: DEFAULT_TIMEZONE.to_string(),
            calendar: None,
            catchup: Catchup::default(),
            wait_for: None,
        };
        let cron_at;
        let cron_text = match node {
            Node::Str(s) => {
                cron_at = at.clone();
                s.clone()
            }
            Node::Map(_) => {
                let f = self.fields(node, &at, SCHEDULE_FIELDS, prefix);
                if let Some(n) = f.get("timezone") {
                    let tz_at = child(&at, "timezone");
                    if let Some(tz) = self.string(n, &tz_at, prefix) {
                        if chrono_tz::Tz::from_str(&tz).is_err() {
                            let hint =
                                did_you_mean(&tz, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()));
                            self.sink.at_value(
                                &tz_at,
                                DiagCode::BadTimezone,
                                format!("unknown time zone `{tz}`{hint}: expected an IANA name such as `Asia/Seoul`"),
                            );
                        }
                        spec.timezone = tz;
                    }
                }
                if let Some(n) = f.get("calendar") {
                    spec.calendar = self.string(n, &child(&at, "calendar"), prefix);
                }
                if let Some(n) = f.get("catchup")
                    && let Some(c) = self.typed::<Catchup>(
                        n,
                        &child(&at, "catchup"),
                        prefix,
                        "latest, all or none",
                    )
                {
                    spec.catchup = c;
                }
                if let Some(n) = f.get("wait_for") {
                    spec.wait_for = self.wait_for(n, &child(&at, "wait_for"));
                }
                cron_at = child(&at, "cron");
                match f.get("cron") {
                    Some(n) => self.string(n, &cron_at, prefix)?,
                    None => {
                        self.sink.at_key(
                            &at,
                            DiagCode::InvalidField,
                            "`schedule`: missing field `cron`",
                        );
                        return None;
                    }
                }
            }
            other => {
                self.sink.at_value(
                    &at,
                    DiagCode::InvalidField,
                    format!(
                        "`schedule` must be a mapping with `cron:` or a cron string, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        match parse_cron(&cron_text) {
            Ok((normalized, _)) => spec.cron = normalized,
            Err(e) => {
                self.sink.at_value(
                    &cron_at,
                    DiagCode::BadCron,
                    format!(
                        "bad cron expression `{cron_text}`: {e} (expected `sec min hour \
                         day-of-month month day-of-week [year]`, 5 fields without seconds, or \
                         @daily-style shorthands)"
                    ),
                );
                spec.cron = cron_text;
            }
        }
        Some(spec)
    }

    /// A task's `checks:`: `name: { sql: SELECT ..., severity: error|warn }`, or `name: SELECT
    /// ...` (severity error).
    fn checks(&mut self, node: &Node, at: &[Seg], prefix: &str) -> Vec<CheckSpec> {
        let Node::Map(entries) = node else {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                format!(
                    "{prefix}`checks` must be a mapping of check names to queries, found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(name) = k.key_text() else {
                self.sink.at_key(
                    at,
                    DiagCode::InvalidField,
                    format!("{prefix}check names must be strings, found {}", k.kind()),
                );
                continue;
            };
            let check_at = child(at, &name);
            if !valid_name(&name) {
                self.sink.at_key(
                    &check_at,
                    DiagCode::InvalidField,
                    format!(
                        "{prefix}`{name}` is not a check name (letters, digits, `_`, `-`, `.`)"
                    ),
                );
                continue;
            }
            let (sql, severity) = match v {
                Node::Str(sql) => (Some(sql.clone()), Severity::Error),
                Node::Map(_) => {
                    let f = self.fields(v, &check_at, CHECK_FIELDS, prefix);
                    let severity = f
                        .get("severity")
                        .and_then(|n| {
                            self.typed::<Severity>(
                                n,
                                &child(&check_at, "severity"),
                                prefix,
                                "error or warn",
                            )
                        })
                        .unwrap_or_default();
                    let sql = match f.get("sql") {
                        Some(n) => self.string(n, &child(&check_at, "sql"), prefix),
                        None => {
                            self.sink.at_key(
                                &check_at,
                                DiagCode::InvalidField,
                                format!("{prefix}check `{name}`: missing field `sql`"),
                            );
                            None
                        }
                    };
                    (sql, severity)
                }
                other => {
                    self.sink.at_value(
                        &check_at,
                        DiagCode::InvalidField,
                        format!(
                            "{prefix}check `{name}` must be a query or `{{ sql: ..., severity: \
                             warn }}`, found {}",
                            other.kind()
                        ),
                    );
                    (None, Severity::Error)
                }
            };
            let Some(sql) = sql else { continue };
            if let Err(why) = crate::check_sql::is_one_query(&sql) {
                let sql_at = if matches!(v, Node::Map(_)) {
                    child(&check_at, "sql")
                } else {
                    check_at.clone()
                };
                self.sink.at_value(
                    &sql_at,
                    DiagCode::InvalidField,
                    format!("{prefix}check `{name}`: {why}"),
                );
                continue;
            }
            out.push(CheckSpec {
                name,
                sql,
                severity,
            });
        }
        out
    }

    /// `schedule.wait_for: { dags: [a, b], timeout: 1h }`.
    fn wait_for(&mut self, node: &Node, at: &[Seg]) -> Option<WaitFor> {
        let prefix = "`schedule.wait_for`: ";
        if !matches!(node, Node::Map(_)) {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                format!(
                    "{prefix}must be a mapping such as `{{ dags: [daily_batch], timeout: 1h }}`, \
                     found {}",
                    node.kind()
                ),
            );
            return None;
        }
        let f = self.fields(node, at, WAIT_FOR_FIELDS, prefix);
        let timeout = match f.get("timeout") {
            Some(n) => self.duration(n, &child(at, "timeout"), prefix)?,
            None => DEFAULT_WAIT_TIMEOUT,
        };
        let Some(n) = f.get("dags") else {
            self.sink.at_key(
                at,
                DiagCode::InvalidField,
                format!("{prefix}missing field `dags` (the DAGs to wait for)"),
            );
            return None;
        };
        let dags_at = child(at, "dags");
        let dags = self.string_list(n, &dags_at, prefix);
        if dags.is_empty() {
            self.sink.at_value(
                &dags_at,
                DiagCode::InvalidField,
                format!("{prefix}`dags` names no DAG"),
            );
            return None;
        }
        for (i, d) in dags.iter().enumerate() {
            if !valid_name(d) {
                let mut item_at = dags_at.clone();
                if matches!(n, Node::Seq(_)) {
                    item_at.push(Seg::Index(i));
                }
                self.sink.at_value(
                    &item_at,
                    DiagCode::InvalidField,
                    format!("{prefix}`{d}` is not a DAG name"),
                );
                return None;
            }
        }
        Some(WaitFor { dags, timeout })
    }

    fn defaults(&mut self, node: &Node) -> (RetryPolicy, Duration) {
        let at = path(&["defaults"]);
        let prefix = "`defaults`: ";
        let f = self.fields(node, &at, DEFAULTS_FIELDS, prefix);
        let retries = match f.get("retries") {
            Some(n) => self.retries(n, &child(&at, "retries"), prefix, &RetryPolicy::default()),
            None => RetryPolicy::default(),
        };
        let timeout = f
            .get("timeout")
            .and_then(|n| self.duration(n, &child(&at, "timeout"), prefix))
            .unwrap_or(DEFAULT_TIMEOUT);
        (retries, timeout)
    }

    fn retries(
        &mut self,
        node: &Node,
        at: &[Seg],
        prefix: &str,
        base: &RetryPolicy,
    ) -> RetryPolicy {
        let mut p = *base;
        let prefix = format!("{prefix}`retries`: ");
        let f = self.fields(node, at, RETRY_FIELDS, &prefix);
        if let Some(n) = f.get("max")
            && let Some(v) =
                self.typed::<u32>(n, &child(at, "max"), &prefix, "a non-negative integer")
        {
            p.max = v;
        }
        if let Some(n) = f.get("backoff")
            && let Some(v) = self.typed::<Backoff>(
                n,
                &child(at, "backoff"),
                &prefix,
                "exponential, fixed or linear",
            )
        {
            p.backoff = v;
        }
        if let Some(n) = f.get("base")
            && let Some(v) = self.duration(n, &child(at, "base"), &prefix)
        {
            p.base = v;
        }
        if let Some(n) = f.get("max_delay")
            && let Some(v) = self.duration(n, &child(at, "max_delay"), &prefix)
        {
            p.max_delay = v;
        }
        if let Some(n) = f.get("jitter")
            && let Some(v) = self.typed::<Jitter>(n, &child(at, "jitter"), &prefix, "full or none")
        {
            p.jitter = v;
        }
        p
    }

    /// `params:` as JSON, with `${...}` substituted (references resolve against the raw block).
    fn params(&mut self, node: Option<&Node>) -> serde_json::Value {
        let at = path(&["params"]);
        let empty = serde_json::Value::Object(Default::default());
        match node {
            None => empty,
            Some(n @ Node::Map(_)) => match self.json(n, &at, "`params`: ") {
                Some(raw) => self.params_resolved(&raw, &at),
                None => empty,
            },
            Some(other) => {
                self.sink.at_value(
                    &at,
                    DiagCode::InvalidField,
                    format!("`params` must be a mapping, found {}", other.kind()),
                );
                empty
            }
        }
    }

    /// Substitutes `params:` against itself until nothing changes, so a param may use another
    /// that reads the environment (`panel: "${params.data}/x"` with `data: "${DATA:-d}"`). Each
    /// pass substitutes the raw block against the previous pass's values (a value taken from a
    /// param is never parsed again, so `$${` stays literal); references that still change after
    /// `MAX_PARAM_DEPTH` passes go round in a cycle.
    fn params_resolved(&mut self, raw: &serde_json::Value, at: &[Seg]) -> serde_json::Value {
        const MAX_PARAM_DEPTH: usize = 8;
        let mut values = raw.clone();
        for _ in 0..MAX_PARAM_DEPTH {
            let mut ignored = Vec::new();
            let next = substitute(raw, &mut at.to_vec(), &values, self.env, &mut ignored);
            if next == values {
                break;
            }
            values = next;
        }
        let out = self.substitute(raw, at, &values, "");
        if out != values {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                format!(
                    "`params` refer to each other in a cycle (still changing after \
                     {MAX_PARAM_DEPTH} rounds of substitution)"
                ),
            );
        }
        out
    }

    fn substitute(
        &mut self,
        raw: &serde_json::Value,
        at: &[Seg],
        params: &serde_json::Value,
        prefix: &str,
    ) -> serde_json::Value {
        let mut errors = Vec::new();
        let out = substitute(raw, &mut at.to_vec(), params, self.env, &mut errors);
        // Name the string relative to the block's own key: `with.path`, `params.root`.
        let keep_from = at.len().saturating_sub(1);
        for e in errors {
            let shown = DisplayPath(e.path.get(keep_from..).unwrap_or(&e.path)).to_string();
            self.sink
                .at_value(&e.path, e.code, format!("{prefix}`{shown}`: {}", e.message));
        }
        out
    }
}
