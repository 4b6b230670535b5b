//! Checks against the operator registry and the known tables: operators, `with:` params,
//! ports, producers, schemas, writers, `after:` names.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use krxflow_core::{ConfigError, ConfiguredOp, Operator};

use crate::context::LoadContext;
use crate::diag::DiagCode;
use crate::draft::TaskDraft;
use crate::sink::Sink;
use crate::spans::{Seg, YPath, child, path};
use crate::suggest::{backticked, did_you_mean};

/// A task's operator and configured operator, when they could be resolved.
#[derive(Clone, Default)]
pub(crate) struct Resolved {
    pub op: Option<Arc<dyn Operator>>,
    pub configured: Option<Arc<dyn ConfiguredOp>>,
}

fn task_path(name: &str) -> YPath {
    path(&["tasks", name])
}

/// Runs every check and returns, per draft, what could be resolved.
pub(crate) fn validate(
    drafts: &[TaskDraft],
    ctx: &LoadContext<'_>,
    sink: &mut Sink<'_>,
) -> Vec<Resolved> {
    let resolved: Vec<Resolved> = drafts.iter().map(|d| resolve(d, ctx, sink)).collect();
    for (d, r) in drafts.iter().zip(&resolved) {
        if let Some(op) = &r.op {
            check_ports(d, op.as_ref(), sink);
        }
        check_table_names(d, sink);
    }
    let writers = writers(drafts, sink);
    for (d, r) in drafts.iter().zip(&resolved) {
        check_inputs(d, r, drafts, &resolved, &writers, ctx, sink);
        check_outputs(d, r, ctx, sink);
        check_after(d, drafts, sink);
    }
    resolved
}

/// Looks the operator up and configures it with `with:`.
fn resolve(d: &TaskDraft, ctx: &LoadContext<'_>, sink: &mut Sink<'_>) -> Resolved {
    let mut r = Resolved::default();
    if !d.op_ok {
        return r;
    }
    let at = task_path(&d.spec.name);
    let Some(op) = ctx.registry.get(&d.spec.op) else {
        let hint = did_you_mean(&d.spec.op, ctx.registry.kinds());
        sink.at_value(
            &child(&at, "op"),
            DiagCode::UnknownOp,
            format!("task `{}`: unknown op `{}`{hint}", d.spec.name, d.spec.op),
        );
        return r;
    };
    r.op = Some(op.clone());
    if d.with_ok {
        match op.configure(&d.spec.with) {
            Ok(c) => r.configured = Some(Arc::from(c)),
            Err(e) => report_config_error(d, &e, sink),
        }
    }
    r
}

fn report_config_error(d: &TaskDraft, e: &ConfigError, sink: &mut Sink<'_>) {
    let code = if e.message.contains("unknown field") {
        DiagCode::UnknownParam
    } else if e.message.contains("missing field") {
        DiagCode::MissingParam
    } else {
        DiagCode::InvalidParam
    };
    let with_at = child(&task_path(&d.spec.name), "with");
    let mut at = with_at.clone();
    at.extend(field_path(&e.field));
    // An unknown field inside a nested struct is reported with the parent's path.
    if let Some(name) = backticked_after(&e.message, "unknown field `")
        && at.last() != Some(&Seg::Key(name.clone()))
    {
        at.push(Seg::Key(name));
    }
    let message = if e.field.is_empty() {
        format!("task `{}`: `with`: {}", d.spec.name, e.message)
    } else {
        format!("task `{}`: {e}", d.spec.name)
    };
    sink.at_key(&at, code, message);
}

/// `a.b[0].c` (serde_path_to_error's format) as path segments.
fn field_path(field: &str) -> YPath {
    let mut out = Vec::new();
    if field.is_empty() || field == "." {
        return out;
    }
    for part in field.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if name == "?" {
            break;
        }
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse::<usize>() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

fn backticked_after(msg: &str, marker: &str) -> Option<String> {
    let start = msg.find(marker)? + marker.len();
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Port names must exist; required input ports must be bound.
fn check_ports(d: &TaskDraft, op: &dyn Operator, sink: &mut Sink<'_>) {
    let at = task_path(&d.spec.name);
    let inputs = op.inputs();
    let outputs = op.outputs();
    let in_labels: Vec<String> = inputs
        .iter()
        .map(|p| {
            if p.family {
                format!("{}.<member>", p.name)
            } else {
                p.name.to_string()
            }
        })
        .collect();
    let in_names: Vec<&str> = in_labels.iter().map(String::as_str).collect();
    let out_names: Vec<&str> = outputs.iter().map(|p| p.name).collect();
    for port in d.spec.inputs.keys() {
        if !inputs.iter().any(|p| p.matches(port)) {
            sink.at_key(
                &child(&child(&at, "inputs"), port),
                DiagCode::UnknownPort,
                format!(
                    "task `{}`: op `{}` has no input port `{port}`{}; its input ports: {}",
                    d.spec.name,
                    d.spec.op,
                    did_you_mean(port, in_names.iter().copied()),
                    names_or_none(&in_names),
                ),
            );
        }
    }
    for port in d.spec.outputs.keys() {
        if !out_names.contains(&port.as_str()) {
            sink.at_key(
                &child(&child(&at, "outputs"), port),
                DiagCode::UnknownPort,
                format!(
                    "task `{}`: op `{}` has no output port `{port}`{}; its output ports: {}",
                    d.spec.name,
                    d.spec.op,
                    did_you_mean(port, out_names.iter().copied()),
                    names_or_none(&out_names),
                ),
            );
        }
    }
    // A family (e.g. the ensemble's `member.<name>`) is optional member by member, but a task
    // with none of them bound could never run: said here, not as a failure on every day.
    for port in inputs.iter().filter(|p| p.family) {
        if !d.spec.inputs.keys().any(|k| port.matches(k)) {
            sink.at_key(
                &child(&at, "inputs"),
                DiagCode::UnboundPort,
                format!(
                    "task `{}`: op `{}` needs at least one `{}.<member>` input ({})",
                    d.spec.name, d.spec.op, port.name, port.doc
                ),
            );
        }
    }
    for port in inputs.iter().filter(|p| !p.optional) {
        if !d.spec.inputs.contains_key(port.name) {
            sink.at_key(
                &child(&at, "inputs"),
                DiagCode::UnboundPort,
                format!(
                    "task `{}`: required input port `{}` of op `{}` is not bound in `inputs:` ({})",
                    d.spec.name, port.name, d.spec.op, port.doc
                ),
            );
        }
    }
}

fn names_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        backticked(names.iter().copied())
    }
}

/// A table's writer in this DAG: task index and output port.
type Writers<'d> = BTreeMap<&'d str, (usize, &'d str)>;

/// Table -> first writer; a second writer is an error.
fn writers<'d>(drafts: &'d [TaskDraft], sink: &mut Sink<'_>) -> Writers<'d> {
    let mut out: Writers<'d> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        for (port, table) in &d.spec.outputs {
            match out.get(table.as_str()) {
                None => {
                    out.insert(table, (i, port));
                }
                Some(&(w, wport)) => {
                    let first = &drafts[w].spec.name;
                    let msg = if w == i {
                        format!(
                            "task `{first}` writes table `{table}` from two output ports, `{wport}` and `{port}`"
                        )
                    } else {
                        format!(
                            "table `{table}` is written by both `{first}` (output `{wport}`) and `{}` (output `{port}`)",
                            d.spec.name
                        )
                    };
                    let at = child(&child(&task_path(&d.spec.name), "outputs"), port);
                    sink.at_value(&at, DiagCode::DuplicateWriter, msg);
                }
            }
        }
    }
    out
}

/// Every input must have a producer (a task here, or an existing/declared table) whose schema
/// has the columns the port needs.
fn check_inputs(
    d: &TaskDraft,
    r: &Resolved,
    drafts: &[TaskDraft],
    resolved: &[Resolved],
    writers: &Writers<'_>,
    ctx: &LoadContext<'_>,
    sink: &mut Sink<'_>,
) {
    let in_ports = r.op.as_ref().map(|op| op.inputs()).unwrap_or_default();
    for (port, table) in &d.spec.inputs {
        let at = child(&child(&task_path(&d.spec.name), "inputs"), port);
        let consumer = in_ports.iter().find(|p| p.matches(port));
        let producer: Option<(SchemaRef, String)> = match writers.get(table.as_str()) {
            Some(&(w, wport)) => {
                let schema = resolved[w]
                    .op
                    .as_ref()
                    .and_then(|op| op.outputs().into_iter().find(|p| p.name == wport))
                    .map(|p| p.schema);
                match schema {
                    Some(s) => Some((
                        s,
                        format!("`{table}` (written by `{}`)", drafts[w].spec.name),
                    )),
                    // The writer is broken and already reported.
                    None => continue,
                }
            }
            None => ctx
                .tables
                .table_schema(table)
                .map(|s| (s, format!("`{table}` (existing table)"))),
        };
        let Some((schema, desc)) = producer else {
            if consumer.is_some_and(|p| p.optional) {
                continue;
            }
            let written: Vec<&str> = writers.keys().copied().collect();
            sink.at_value(
                &at,
                DiagCode::NoProducer,
                format!(
                    "task `{}` input `{port}` reads table `{table}`, which no task of this DAG \
                     writes and which is neither in the lake nor declared in the catalog{}",
                    d.spec.name,
                    did_you_mean(table, written.iter().copied()),
                ),
            );
            continue;
        };
        let Some(consumer) = consumer else { continue };
        for field in consumer.schema.fields() {
            let have = schema
                .field_with_name(field.name())
                .ok()
                .map(|f| f.data_type());
            if have == Some(field.data_type()) {
                continue;
            }
            let have = have.map_or_else(|| "no such column".to_string(), type_name);
            sink.at_value(
                &at,
                DiagCode::SchemaMismatch,
                format!(
                    "task `{}` input `{port}` needs column `{}` {} but {desc} has {have}",
                    d.spec.name,
                    field.name(),
                    type_name(field.data_type()),
                ),
            );
        }
    }
}

/// An output into an existing table must carry every column of that table, same types.
fn check_outputs(d: &TaskDraft, r: &Resolved, ctx: &LoadContext<'_>, sink: &mut Sink<'_>) {
    let Some(op) = &r.op else { return };
    let out_ports = op.outputs();
    for (port, table) in &d.spec.outputs {
        let Some(port_def) = out_ports.iter().find(|p| p.name == port) else {
            continue;
        };
        let Some(existing) = ctx.tables.table_schema(table) else {
            continue;
        };
        let at = child(&child(&task_path(&d.spec.name), "outputs"), port);
        for field in existing.fields() {
            let have = port_def
                .schema
                .field_with_name(field.name())
                .ok()
                .map(|f| f.data_type());
            if have == Some(field.data_type()) {
                continue;
            }
            let have = have.map_or_else(|| "no such column".to_string(), type_name);
            sink.at_value(
                &at,
                DiagCode::SchemaMismatch,
                format!(
                    "task `{}` output `{port}` writes table `{table}`, which has column `{}` {}, \
                     but the port has {have}",
                    d.spec.name,
                    field.name(),
                    type_name(field.data_type()),
                ),
            );
        }
    }
}

/// Why `name` cannot be a table of the lake, if it cannot: a table is a relative path of plain
/// segments (letters, digits, `_`, `-`, `.`) under the lake root, so no name reaches outside it.
pub(crate) fn bad_table_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.contains("://") {
        return Some("is a URL (tables live under the lake: give the lake with --lake)");
    }
    if name.starts_with('/') || name.starts_with('\\') || name.contains(':') {
        return Some("is an absolute path (a table is a name under the lake)");
    }
    let mut segments = name.split('/');
    if segments.any(|s| s.is_empty() || s == "." || s == "..") {
        return Some("has an empty, `.` or `..` path segment (a table cannot leave the lake)");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return Some("may hold only letters, digits, `_`, `-`, `.` and `/`");
    }
    None
}

/// Every table named in `inputs:` and `outputs:` is a plain name under the lake.
fn check_table_names(d: &TaskDraft, sink: &mut Sink<'_>) {
    for (section, ports) in [("inputs", &d.spec.inputs), ("outputs", &d.spec.outputs)] {
        for (port, table) in ports {
            let Some(why) = bad_table_name(table) else {
                continue;
            };
            sink.at_value(
                &child(&child(&task_path(&d.spec.name), section), port),
                DiagCode::BadTableName,
                format!(
                    "task `{}` {section} `{port}`: table `{table}` {why}",
                    d.spec.name
                ),
            );
        }
    }
}

/// `after:` must name tasks of this DAG.
fn check_after(d: &TaskDraft, drafts: &[TaskDraft], sink: &mut Sink<'_>) {
    let names: Vec<&str> = drafts.iter().map(|t| t.spec.name.as_str()).collect();
    for (i, a) in d.spec.after.iter().enumerate() {
        if names.contains(&a.as_str()) {
            continue;
        }
        let mut at = child(&task_path(&d.spec.name), "after");
        at.push(Seg::Index(i));
        if sink.spans.value_pos(&at).is_none() {
            at.pop(); // `after: name` written as a single string
        }
        sink.at_value(
            &at,
            DiagCode::UnknownTask,
            format!(
                "task `{}`: `after` names unknown task `{a}`{}",
                d.spec.name,
                did_you_mean(a, names.iter().copied())
            ),
        );
    }
}

fn type_name(t: &DataType) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_that_could_leave_the_lake_are_refused() {
        for ok in ["ohlcv_daily", "_krxflow/task_runs", "a.b-c"] {
            assert_eq!(bad_table_name(ok), None, "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/tmp/x",
            "C:\\x",
            "s3://bucket/t",
            "a//b",
            "./a",
            "a b",
            "t@v3",
        ] {
            assert!(bad_table_name(bad).is_some(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn field_paths_parse_serde_path_to_error_format() {
        assert_eq!(field_path(""), Vec::<Seg>::new());
        assert_eq!(field_path("window"), vec![Seg::Key("window".into())]);
        assert_eq!(
            field_path("a.b[2].c"),
            vec![
                Seg::Key("a".into()),
                Seg::Key("b".into()),
                Seg::Index(2),
                Seg::Key("c".into())
            ]
        );
        assert_eq!(
            field_path("a[0][1]"),
            vec![Seg::Key("a".into()), Seg::Index(0), Seg::Index(1)]
        );
    }
}
