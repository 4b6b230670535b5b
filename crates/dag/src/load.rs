//! Entry points: load a DAG file, validate it against the registry and the known tables, plan.

use std::path::Path;

use krxflow_core::params_hash;

use crate::context::LoadContext;
use crate::diag::{DiagCode, Diagnostic, Pos};
use crate::node::Node;
use crate::parser::Parser;
use crate::plan::{PlannedTask, ValidatedDag, check_cycles, edges, topo_order, upstreams};
use crate::sink::Sink;
use crate::spans::{DisplayPath, SpanTree};
use crate::validate::validate;

/// Reads and validates a DAG file. An unreadable file is one diagnostic at 1:1.
pub fn load_dag_file(path: &Path, ctx: &LoadContext<'_>) -> Result<ValidatedDag, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(source) => load_dag_str(&source, path, ctx),
        Err(e) => Err(vec![Diagnostic::new(
            path,
            Pos::START,
            DiagCode::Io,
            format!("cannot read DAG file: {e}"),
        )]),
    }
}

/// Parses and validates a DAG from `source`; `file` is used in diagnostics and kept in the spec.
///
/// Every problem is reported at once, sorted by position. On success the tasks are planned in
/// topological order (ties in file order).
pub fn load_dag_str(
    source: &str,
    file: &Path,
    ctx: &LoadContext<'_>,
) -> Result<ValidatedDag, Vec<Diagnostic>> {
    // serde_norway (libyaml) has the better syntax messages: ask it first.
    let root = match Node::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let pos = e
                .location()
                .map_or(Pos::START, |l| Pos::new(l.line(), l.column()));
            return Err(vec![Diagnostic::new(
                file,
                pos,
                DiagCode::Syntax,
                e.to_string(),
            )]);
        }
    };
    let spans = match SpanTree::parse(source) {
        Ok(spans) => spans,
        Err(e) => {
            return Err(vec![Diagnostic::new(
                file,
                e.pos,
                DiagCode::Syntax,
                e.message,
            )]);
        }
    };
    let mut sink = Sink::new(file, &spans);
    report_duplicate_keys(&spans, &mut sink);
    let (spec, drafts) = Parser {
        sink: &mut sink,
        env: ctx.env,
    }
    .dag(&root, file);
    let resolved = validate(&drafts, ctx, &mut sink);
    let edges = edges(&drafts);
    check_cycles(&drafts, &edges, &mut sink);

    let mut diags = sink.diags;
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line, d.col));
        diags.dedup();
        return Err(diags);
    }
    let Some(order) = topo_order(drafts.len(), &edges) else {
        return Err(vec![Diagnostic::new(
            file,
            Pos::START,
            DiagCode::Cycle,
            "the task graph has a cycle",
        )]);
    };
    let ups = upstreams(&drafts, &edges, &order);
    let mut tasks = Vec::with_capacity(order.len());
    for i in order {
        let (Some(op), Some(configured)) = (resolved[i].op.clone(), resolved[i].configured.clone())
        else {
            return Err(vec![Diagnostic::new(
                file,
                spans.nearest_key_pos(&crate::spans::path(&["tasks", &drafts[i].spec.name])),
                DiagCode::InvalidField,
                format!("task `{}` could not be configured", drafts[i].spec.name),
            )]);
        };
        let spec = drafts[i].spec.clone();
        tasks.push(PlannedTask {
            params_hash: params_hash(&spec.with),
            upstream: ups[i].clone(),
            spec,
            op,
            configured,
        });
    }
    Ok(ValidatedDag { spec, tasks })
}

fn report_duplicate_keys(spans: &SpanTree, sink: &mut Sink<'_>) {
    for d in spans.duplicate_keys() {
        let is_task = d.parent.len() == 1 && d.parent == crate::spans::path(&["tasks"]);
        if is_task {
            sink.at(
                d.again,
                DiagCode::DuplicateTask,
                format!(
                    "duplicate task `{}` (first defined at line {}); task names must be unique",
                    d.key, d.first.line
                ),
            );
        } else {
            let within = if d.parent.is_empty() {
                "the DAG".to_string()
            } else {
                format!("`{}`", DisplayPath(&d.parent))
            };
            sink.at(
                d.again,
                DiagCode::InvalidField,
                format!(
                    "duplicate key `{}` in {within} (first at line {})",
                    d.key, d.first.line
                ),
            );
        }
    }
}
