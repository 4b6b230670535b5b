//! `${...}` substitution in `with:` and `params:` string values.
//!
//! - `${params.a.b}`: a dotted path into the DAG's `params:` (numeric segments index lists).
//!   When a string is exactly one `${params.x}`, it is replaced by the typed JSON value (a list
//!   stays a list, a number a number); inside a longer string the value is interpolated as
//!   text (strings raw, other values as compact JSON).
//! - `${NAME}`: the environment variable `NAME`; `${NAME:-default}` uses `default` when the
//!   variable is unset or empty (shell semantics). Values are always text.
//! - `$${` is a literal `${`; a `$` not followed by `{` is literal.

use serde_json::Value;

use crate::context::EnvLookup;
use crate::diag::DiagCode;
use crate::spans::{Seg, YPath};

/// A substitution problem at the string at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubstError {
    pub path: YPath,
    pub code: DiagCode,
    pub message: String,
}

#[derive(Debug, PartialEq)]
enum Part<'a> {
    Text(String),
    Param {
        path: &'a str,
        default: Option<&'a str>,
    },
    Env {
        name: &'a str,
        default: Option<&'a str>,
    },
}

/// Substitutes every string inside `value`; `at` is the YAML path of `value` (for errors).
pub(crate) fn substitute(
    value: &Value,
    at: &mut YPath,
    params: &Value,
    env: &dyn EnvLookup,
    errors: &mut Vec<SubstError>,
) -> Value {
    match value {
        Value::String(s) => match substitute_str(s, params, env) {
            Ok(v) => v,
            Err((code, message)) => {
                errors.push(SubstError {
                    path: at.clone(),
                    code,
                    message,
                });
                value.clone()
            }
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    at.push(Seg::Index(i));
                    let v = substitute(item, at, params, env, errors);
                    at.pop();
                    v
                })
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, item)| {
                    at.push(Seg::Key(k.clone()));
                    let v = substitute(item, at, params, env, errors);
                    at.pop();
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Substitutes one string. Reports the first problem of the string.
fn substitute_str(
    s: &str,
    params: &Value,
    env: &dyn EnvLookup,
) -> Result<Value, (DiagCode, String)> {
    let parts = split(s).map_err(|m| (DiagCode::InvalidField, m))?;
    if let [Part::Param { path, default }] = parts.as_slice() {
        return match lookup(params, path) {
            Some(v) => Ok(v.clone()),
            None => match default {
                Some(d) => Ok(Value::String((*d).to_string())),
                None => Err(unknown_param(path, params)),
            },
        };
    }
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Param { path, default } => match (lookup(params, path), default) {
                (Some(Value::String(v)), _) => out.push_str(v),
                (Some(v), _) => out.push_str(&v.to_string()),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(unknown_param(path, params)),
            },
            Part::Env { name, default } => match (env.var(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err((
                        DiagCode::UnsetEnv,
                        format!(
                            "environment variable `{name}` is not set (in `{s}`; write \
                             `${{{name}:-default}}` to give a default)"
                        ),
                    ));
                }
            },
        }
    }
    Ok(Value::String(out))
}

fn unknown_param(path: &str, params: &Value) -> (DiagCode, String) {
    let known: Vec<String> = match params {
        Value::Object(m) => m.keys().map(|k| format!("`{k}`")).collect(),
        _ => Vec::new(),
    };
    let known = if known.is_empty() {
        "`params:` defines none".to_string()
    } else {
        format!("`params:` defines {}", known.join(", "))
    };
    (
        DiagCode::InvalidField,
        format!("unknown param reference `${{params.{path}}}` ({known})"),
    )
}

/// Looks up a dotted path (`a.b.0`) inside `params`. An empty path is the whole block.
fn lookup<'v>(params: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(params);
    }
    path.split('.').try_fold(params, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The first environment variable `s` reads (`${NAME}` or `${NAME:-default}`; not a
/// `${params.x}` reference, not an escaped `$${`); `None` when it reads none or is malformed.
pub(crate) fn first_env_var(s: &str) -> Option<&str> {
    split(s).ok()?.into_iter().find_map(|p| match p {
        Part::Env { name, .. } => Some(name),
        _ => None,
    })
}

fn split(s: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                format!("unterminated `${{` in `{s}` (write `$${{` for a literal `${{`)")
            })?;
            let inner = &tail[..end];
            rest = &tail[end + 1..];
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(reference(inner, s)?);
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn reference<'a>(inner: &'a str, whole: &str) -> Result<Part<'a>, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n.trim(), Some(d)),
        None => (inner.trim(), None),
    };
    if name == "params" {
        return Ok(Part::Param { path: "", default });
    }
    if let Some(path) = name.strip_prefix("params.") {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!("bad param reference `${{{inner}}}` in `{whole}`"));
        }
        return Ok(Part::Param { path, default });
    }
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "bad reference `${{{inner}}}` in `{whole}`: expected `${{params.NAME}}`, \
             `${{ENV_VAR}}` or `${{ENV_VAR:-default}}`"
        ));
    }
    Ok(Part::Env { name, default })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("DATA".to_string(), "/data".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    fn run(v: Value) -> (Value, Vec<SubstError>) {
        let params = json!({"horizons": [1, 3, 5], "n": 20, "name": "x", "nested": {"k": true}});
        let mut errors = Vec::new();
        let out = substitute(&v, &mut Vec::new(), &params, &env(), &mut errors);
        (out, errors)
    }

    #[test]
    fn whole_string_param_keeps_its_type() {
        let (v, e) =
            run(json!({"h": "${params.horizons}", "n": "${params.n}", "k": "${params.nested.k}"}));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(v, json!({"h": [1, 3, 5], "n": 20, "k": true}));
    }

    #[test]
    fn embedded_param_is_interpolated_as_text() {
        let (v, _) = run(json!([
            "n=${params.n}",
            "${params.name}-y",
            "h=${params.horizons.1}"
        ]));
        assert_eq!(v, json!(["n=20", "x-y", "h=3"]));
    }

    #[test]
    fn env_vars_and_defaults() {
        let (v, e) = run(json!({
            "p": "${DATA}/krx",
            "d": "${MISSING:-/tmp}/x",
            "empty": "${EMPTY:-fallback}",
            "nested": [{"q": "${DATA}"}]
        }));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            v,
            json!({"p": "/data/krx", "d": "/tmp/x", "empty": "fallback", "nested": [{"q": "/data"}]})
        );
    }

    #[test]
    fn unset_env_var_is_reported_at_its_string() {
        let (_, e) = run(json!({"a": [1, "${NOPE}/x"]}));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, DiagCode::UnsetEnv);
        assert_eq!(e[0].path, vec![Seg::Key("a".into()), Seg::Index(1)]);
        assert!(e[0].message.contains("`NOPE`"), "{}", e[0].message);
    }

    #[test]
    fn unknown_param_reference_is_invalid_field() {
        let (_, e) = run(json!({"a": "${params.horizon}"}));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, DiagCode::InvalidField);
        assert!(e[0].message.contains("params.horizon"), "{}", e[0].message);
        assert!(e[0].message.contains("`horizons`"), "{}", e[0].message);
    }

    #[test]
    fn dollar_dollar_escapes_and_lone_dollars_stay() {
        let (v, e) = run(json!(["$${HOME} costs $5", "a$b"]));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(v, json!(["${HOME} costs $5", "a$b"]));
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "${unterminated",
            "${}",
            "${bad name}",
            "${params.}",
            "${params..x}",
        ] {
            let (_, e) = run(json!(bad));
            assert_eq!(e.len(), 1, "{bad}");
            assert_eq!(e[0].code, DiagCode::InvalidField, "{bad}");
        }
    }

    #[test]
    fn the_first_env_var_is_the_first_reference_that_is_not_a_param() {
        assert_eq!(
            first_env_var("${KRXFLOW_LINEAR:-on}"),
            Some("KRXFLOW_LINEAR")
        );
        assert_eq!(first_env_var("${params.d}/${UNIVERSE}"), Some("UNIVERSE"));
        assert_eq!(first_env_var("$${HOME} ${params.data}/x"), None);
        assert_eq!(first_env_var("on"), None);
    }

    #[test]
    fn non_string_values_are_untouched() {
        let (v, _) = run(json!({"a": 1, "b": null, "c": [true]}));
        assert_eq!(v, json!({"a": 1, "b": null, "c": [true]}));
    }
}
