//! `choices:`: the values a param may take, checked once `params:` are substituted.
//!
//! A param that selects tasks through `when:` (`universe`, a member switched `on`/`off`)
//! would otherwise turn a typo into a silent change: `KRXFLOW_LINEAR=On` left the linear
//! ranker out, `KRXFLOW_UNIVERSE=krx3O` ingested nothing and failed later on a missing table.
//! With
//!
//! ```yaml
//! params:
//!   linear: "${KRXFLOW_LINEAR:-on}"
//! choices:
//!   linear: [on, off]
//! ```
//!
//! a value outside its list is an error at the param's line, naming the list and the
//! environment variable the value came from, like any other field of the file.

use serde_json::Value;

use crate::diag::DiagCode;
use crate::node::Node;
use crate::parser::Parser;
use crate::spans::{child, path};
use crate::subst::first_env_var;

impl Parser<'_, '_> {
    /// Checks the substituted `params` against `choices:` (`node`), a mapping of param name to
    /// its allowed values; `raw_params` is the `params:` block as written, for the variable a
    /// value came from.
    pub(crate) fn choices(
        &mut self,
        node: Option<&Node>,
        raw_params: Option<&Node>,
        params: &Value,
    ) {
        let Some(node) = node else { return };
        let at = path(&["choices"]);
        let Node::Map(entries) = node else {
            self.sink.at_value(
                &at,
                DiagCode::InvalidField,
                format!(
                    "`choices` must be a mapping of param name to its allowed values, found {}",
                    node.kind()
                ),
            );
            return;
        };
        for (key, values) in entries {
            let Some(name) = key.key_text() else {
                self.sink.at_key(
                    &at,
                    DiagCode::InvalidField,
                    format!(
                        "`choices`: param names must be strings, found {}",
                        key.kind()
                    ),
                );
                continue;
            };
            let entry_at = child(&at, &name);
            let allowed: Option<Vec<String>> = match values {
                Node::Seq(items) if !items.is_empty() => items.iter().map(Node::key_text).collect(),
                _ => None,
            };
            let Some(allowed) = allowed else {
                self.sink.at_value(
                    &entry_at,
                    DiagCode::InvalidField,
                    format!("`choices.{name}` must be a non-empty list of values"),
                );
                continue;
            };
            let Some(value) = params.get(&name) else {
                self.sink.at_key(
                    &entry_at,
                    DiagCode::InvalidField,
                    format!("`choices.{name}` names no param: `params` has no `{name}`"),
                );
                continue;
            };
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(_) | Value::Number(_) => value.to_string(),
                other => format!("{other}"),
            };
            if allowed.contains(&text) {
                continue;
            }
            let from = match raw_params {
                Some(Node::Map(raw)) => raw.iter().find_map(|(k, v)| match v {
                    Node::Str(s) if k.key_text().as_deref() == Some(name.as_str()) => {
                        first_env_var(s)
                    }
                    _ => None,
                }),
                _ => None,
            }
            .map(|var| format!(" (from {var})"))
            .unwrap_or_default();
            self.sink.at_value(
                &path(&["params", &name]),
                DiagCode::InvalidField,
                format!(
                    "`params.{name}` is `{text}`{from}: expected one of {} (`choices.{name}`)",
                    allowed.join(", ")
                ),
            );
        }
    }
}
