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

/// The end of a DAG file, for moving diagnostics back into it: the YAML parsers put an
/// unexpected end of a file, or a value left empty at its end, on the line after a last line
/// that has no line break (found by fuzzing), where an editor has no such line. Lines are
/// counted as YAML counts them (CR LF, CR or LF).
struct End {
    line: usize,
    col: usize,
}

impl End {
    /// The position just after the last character of `source`.
    fn of(source: &str) -> Self {
        let (mut line, mut col) = (1, 1);
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' | '\n' => {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    col = 1;
                }
                _ => col += 1,
            }
        }
        Self { line, col }
    }

    fn clamp(&self, pos: Pos) -> Pos {
        if pos.line <= self.line {
            pos
        } else {
            Pos::new(self.line, self.col)
        }
    }
}

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
            let pos = e.location().map_or(Pos::START, |l| {
                End::of(source).clamp(Pos::new(l.line(), l.column()))
            });
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
                End::of(source).clamp(e.pos),
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
        let end = End::of(source);
        for d in &mut diags {
            let pos = end.clamp(Pos::new(d.line, d.col));
            (d.line, d.col) = (pos.line, pos.col);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_of_file_error_points_at_the_end_of_the_last_line_not_past_it() {
        assert_eq!(End::of("a: 1\nb: [").clamp(Pos::new(3, 1)), Pos::new(2, 5));
        assert_eq!(End::of("a: 1\rb: [").clamp(Pos::new(3, 1)), Pos::new(2, 5));
        assert_eq!(
            End::of("a: 1\r\nb: [\n").clamp(Pos::new(3, 1)),
            Pos::new(3, 1)
        );
        assert_eq!(End::of("a: 1\nb: [").clamp(Pos::new(2, 2)), Pos::new(2, 2));
    }

    #[test]
    fn a_task_left_empty_at_the_end_of_a_file_is_reported_on_its_last_line() {
        let registry = krxflow_core::OperatorRegistry::default();
        let env = std::collections::BTreeMap::<String, String>::new();
        let ctx = LoadContext {
            registry: &registry,
            tables: &crate::NoTables,
            env: &env,
        };
        let source = "dag: d\ntasks:\n  a:\n    # nothing yet";
        let diags = load_dag_str(source, Path::new("d.yaml"), &ctx).unwrap_err();
        assert!(!diags.is_empty());
        for d in &diags {
            assert!(d.line <= 4, "{}:{} {}", d.line, d.col, d.message);
        }
    }
}
