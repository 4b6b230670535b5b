//! Typed readers for single YAML fields, each reporting its own diagnostic.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::diag::DiagCode;
use crate::duration::{parse_duration, secs_to_duration};
use crate::node::Node;
use crate::parser::Parser;
use crate::spans::{DisplayPath, Seg, YPath, child};
use crate::suggest::{backticked, did_you_mean};

/// The mapping entries of one YAML mapping, restricted to known keys (first occurrence wins).
pub(crate) struct Fields<'n> {
    pub entries: Vec<(String, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .filter(|v| !matches!(v, Node::Null))
    }
}

/// `prefix` for messages: "task `a`: " etc.
pub(crate) fn prefixed(prefix: &str, msg: impl std::fmt::Display) -> String {
    format!("{prefix}{msg}")
}

impl Parser<'_, '_> {
    /// The known entries of a mapping; reports unknown keys and non-mappings.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        at: &[Seg],
        allowed: &[&str],
        prefix: &str,
    ) -> Fields<'n> {
        self.fields_ext(node, at, allowed, prefix, false)
    }

    /// [`Parser::fields`]; with `extensions`, keys starting with `x-` are ignored (a place for
    /// YAML anchors shared by tasks, as in docker-compose files).
    pub(crate) fn fields_ext<'n>(
        &mut self,
        node: &'n Node,
        at: &[Seg],
        allowed: &[&str],
        prefix: &str,
        extensions: bool,
    ) -> Fields<'n> {
        let mut out = Fields {
            entries: Vec::new(),
        };
        let entries = match node {
            Node::Map(entries) => entries,
            Node::Null => return out,
            other => {
                self.sink.at_value(
                    at,
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!("expected a mapping, found {}", other.kind()),
                    ),
                );
                return out;
            }
        };
        for (k, v) in entries {
            let Some(key) = k.key_text() else {
                self.sink.at_key(
                    at,
                    DiagCode::InvalidField,
                    prefixed(prefix, format!("keys must be strings, found {}", k.kind())),
                );
                continue;
            };
            if extensions && key.starts_with("x-") {
                continue;
            }
            if !allowed.contains(&key.as_str()) {
                let hint = did_you_mean(&key, allowed.iter().copied());
                self.sink.at_key(
                    &child(at, &key),
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!(
                            "unknown field `{key}`, expected one of {}{hint}",
                            backticked(allowed.iter().copied())
                        ),
                    ),
                );
                continue;
            }
            if out.entries.iter().any(|(k, _)| *k == key) {
                continue; // reported from the span tree
            }
            out.entries.push((key, v));
        }
        out
    }

    pub(crate) fn json(
        &mut self,
        node: &Node,
        at: &[Seg],
        prefix: &str,
    ) -> Option<serde_json::Value> {
        let mut here: YPath = at.to_vec();
        match node.to_json(&mut here) {
            Ok(v) => Some(v),
            Err((p, msg)) => {
                self.sink.at_value(
                    &p,
                    DiagCode::InvalidField,
                    prefixed(prefix, format!("`{}`: {msg}", DisplayPath(&p))),
                );
                None
            }
        }
    }

    /// A value of type `T` through serde_json; `expected` describes it for messages.
    pub(crate) fn typed<T: DeserializeOwned>(
        &mut self,
        node: &Node,
        at: &[Seg],
        prefix: &str,
        expected: &str,
    ) -> Option<T> {
        let json = self.json(node, at, prefix)?;
        match serde_json::from_value::<T>(json) {
            Ok(v) => Some(v),
            Err(e) => {
                let field = last_key(at);
                self.sink.at_value(
                    at,
                    DiagCode::InvalidField,
                    prefixed(prefix, format!("`{field}`: expected {expected}: {e}")),
                );
                None
            }
        }
    }

    pub(crate) fn string(&mut self, node: &Node, at: &[Seg], prefix: &str) -> Option<String> {
        match node {
            Node::Str(s) => Some(s.clone()),
            other => {
                let field = last_key(at);
                self.sink.at_value(
                    at,
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!("`{field}` must be a string, found {}", other.kind()),
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn name(&mut self, node: &Node, at: &[Seg], what: &str) -> Option<String> {
        let s = self.string(node, at, "")?;
        if !valid_name(&s) {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                format!(
                    "{what} `{s}` must be non-empty and use only letters, digits, `_`, `-` and `.`"
                ),
            );
        }
        Some(s)
    }

    pub(crate) fn duration(&mut self, node: &Node, at: &[Seg], prefix: &str) -> Option<Duration> {
        let field = last_key(at);
        let result = match node {
            Node::Str(s) => parse_duration(s),
            Node::Int(i) => u64::try_from(*i)
                .map(Duration::from_secs)
                .map_err(|_| format!("invalid duration `{i}`: must not be negative")),
            Node::UInt(u) => Ok(Duration::from_secs(*u)),
            Node::Float(f) => secs_to_duration(*f).ok_or_else(|| format!("invalid duration `{f}`")),
            other => Err(format!(
                "expected a duration like `30m`, found {}",
                other.kind()
            )),
        };
        match result {
            Ok(d) => Some(d),
            Err(e) => {
                self.sink.at_value(
                    at,
                    DiagCode::InvalidField,
                    prefixed(prefix, format!("`{field}`: {e}")),
                );
                None
            }
        }
    }

    /// `port: table` mapping of `inputs:`/`outputs:`.
    pub(crate) fn string_map(
        &mut self,
        node: &Node,
        at: &[Seg],
        prefix: &str,
    ) -> BTreeMap<String, String> {
        let field = last_key(at);
        let mut out = BTreeMap::new();
        let Node::Map(entries) = node else {
            self.sink.at_value(
                at,
                DiagCode::InvalidField,
                prefixed(
                    prefix,
                    format!(
                        "`{field}` must be a mapping of port to table, found {}",
                        node.kind()
                    ),
                ),
            );
            return out;
        };
        for (k, v) in entries {
            let Some(port) = k.key_text() else {
                self.sink.at_key(
                    at,
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!("`{field}`: port names must be strings, found {}", k.kind()),
                    ),
                );
                continue;
            };
            let entry_at = child(at, &port);
            match v {
                Node::Str(table) if !table.is_empty() => {
                    out.entry(port).or_insert_with(|| table.clone());
                }
                other => self.sink.at_value(
                    &entry_at,
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!(
                            "`{field}.{port}` must be a table name, found {}",
                            other.kind()
                        ),
                    ),
                ),
            }
        }
        out
    }

    /// A list of strings; a single string is a one-element list.
    pub(crate) fn string_list(&mut self, node: &Node, at: &[Seg], prefix: &str) -> Vec<String> {
        let field = last_key(at);
        match node {
            Node::Str(s) => vec![s.clone()],
            Node::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let mut item_at = at.to_vec();
                    item_at.push(Seg::Index(i));
                    match item {
                        Node::Str(s) => out.push(s.clone()),
                        other => self.sink.at_value(
                            &item_at,
                            DiagCode::InvalidField,
                            prefixed(
                                prefix,
                                format!("`{field}` items must be names, found {}", other.kind()),
                            ),
                        ),
                    }
                }
                out
            }
            other => {
                self.sink.at_value(
                    at,
                    DiagCode::InvalidField,
                    prefixed(
                        prefix,
                        format!(
                            "`{field}` must be a list of task names, found {}",
                            other.kind()
                        ),
                    ),
                );
                Vec::new()
            }
        }
    }
}

fn last_key(at: &[Seg]) -> String {
    match at.last() {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(_)) | None => DisplayPath(at).to_string(),
    }
}

/// Names of DAGs and tasks: letters, digits, `_`, `-`, `.`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
