//! An order- and duplicate-preserving YAML value, deserialised by serde_norway.
//!
//! serde_norway resolves scalars the YAML 1.2 way (`005930` stays the string `"005930"`,
//! `yes` is a string, `1.5` a float); [`Node`] keeps mapping entries in source order and does
//! not reject repeated keys, so that a repeated task name becomes a positioned diagnostic
//! instead of a parse failure.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::spans::{Seg, YPath};

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Parses the first (only) document of `source`.
    pub fn parse(source: &str) -> Result<Self, serde_norway::Error> {
        if source.trim().is_empty() {
            return Ok(Node::Null);
        }
        serde_norway::from_str::<Node>(source).map(Node::apply_merge)
    }

    /// Applies YAML merge keys (`<<: *anchor` or `<<: [*a, *b]`): keys written in the mapping
    /// win over merged ones, earlier merged mappings over later ones. A `<<` whose value is not
    /// a mapping (or list of mappings) is kept as an ordinary key (and reported as unknown).
    fn apply_merge(self) -> Node {
        match self {
            Node::Seq(items) => Node::Seq(items.into_iter().map(Node::apply_merge).collect()),
            Node::Map(entries) => {
                let mut own = Vec::with_capacity(entries.len());
                let mut merged = Vec::new();
                for (k, v) in entries {
                    let is_merge = matches!(&k, Node::Str(s) if s == "<<");
                    match (is_merge, v) {
                        (true, Node::Map(m)) => merged.extend(m),
                        (true, Node::Seq(items))
                            if items.iter().all(|i| matches!(i, Node::Map(_))) =>
                        {
                            for item in items {
                                if let Node::Map(m) = item {
                                    merged.extend(m);
                                }
                            }
                        }
                        (_, v) => own.push((k, v.apply_merge())),
                    }
                }
                for (k, v) in merged {
                    if !own.iter().any(|(o, _)| *o == k) {
                        own.push((k, v.apply_merge()));
                    }
                }
                Node::Map(own)
            }
            other => other,
        }
    }

    /// The key text of a mapping key (strings, numbers and booleans).
    pub fn key_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::UInt(u) => Some(u.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::UInt(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// Converts to JSON. Repeated keys keep their first value (they are reported separately).
    /// The error names the path (relative to `at`) of a value JSON cannot hold.
    pub fn to_json(&self, at: &mut YPath) -> Result<serde_json::Value, (YPath, String)> {
        use serde_json::Value;
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::UInt(u) => Value::from(*u),
            Node::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None => {
                    return Err((at.clone(), format!("`{f}` is not a finite number")));
                }
            },
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    at.push(Seg::Index(i));
                    let v = item.to_json(at);
                    at.pop();
                    out.push(v?);
                }
                Value::Array(out)
            }
            Node::Map(entries) => {
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    let Some(key) = k.key_text() else {
                        return Err((
                            at.clone(),
                            format!("mapping keys must be strings, found {}", k.kind()),
                        ));
                    };
                    if out.contains_key(&key) {
                        continue;
                    }
                    at.push(Seg::Key(key.clone()));
                    let value = v.to_json(at);
                    at.pop();
                    out.insert(key, value?);
                }
                Value::Object(out)
            }
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value without tags")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_the_yaml_1_2_way() {
        let n = Node::parse("a: [005930, 1, 1.5, yes, true, ~, \"3\"]").unwrap();
        let json = n.to_json(&mut Vec::new()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": ["005930", 1, 1.5, "yes", true, null, "3"]})
        );
    }

    #[test]
    fn repeated_keys_are_kept_in_order() {
        let n = Node::parse("a: 1\nb: 2\na: 3\n").unwrap();
        let Node::Map(entries) = &n else {
            panic!("{n:?}")
        };
        let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.key_text()).collect();
        assert_eq!(keys, vec!["a", "b", "a"]);
        assert_eq!(
            n.to_json(&mut Vec::new()).unwrap(),
            serde_json::json!({"a": 1, "b": 2})
        );
    }

    #[test]
    fn merge_keys_are_applied_with_own_keys_winning() {
        let src = "base: &b { op: x, timeout: 5m }\nt:\n  <<: *b\n  timeout: 1m\n";
        let json = Node::parse(src).unwrap().to_json(&mut Vec::new()).unwrap();
        assert_eq!(json["t"], serde_json::json!({"timeout": "1m", "op": "x"}));
    }

    #[test]
    fn empty_source_is_null() {
        assert_eq!(Node::parse("  \n").unwrap(), Node::Null);
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = Node::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location().is_some(), "{err}");
    }
}
