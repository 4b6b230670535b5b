//! Source positions of every YAML node, from yaml-rust2's event parser.
//!
//! serde gives values but no positions; this module walks the same source with yaml-rust2 and
//! keeps, for each mapping entry, the position of its key and of its value, so that a
//! diagnostic about `tasks.chronos.with.horizons` can point at that exact line and column. It
//! also finds repeated mapping keys (serde would silently keep one of them).

use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diag::Pos;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path from the document root, e.g. `tasks.chronos.with.horizons`.
pub(crate) type YPath = Vec<Seg>;

/// Builds a path from keys: `path(&["tasks", "a"])`.
pub(crate) fn path(keys: &[&str]) -> YPath {
    keys.iter().map(|k| Seg::Key((*k).to_string())).collect()
}

/// `base` extended by one key.
pub(crate) fn child(base: &[Seg], key: &str) -> YPath {
    let mut p = base.to_vec();
    p.push(Seg::Key(key.to_string()));
    p
}

/// Displays a path as `tasks.a.with.horizons[0]`.
pub(crate) struct DisplayPath<'a>(pub &'a [Seg]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A node of the document with its position.
#[derive(Debug, Clone)]
pub(crate) enum SpanNode {
    /// A scalar or an alias.
    Leaf { pos: Pos },
    /// A sequence.
    Seq { pos: Pos, items: Vec<SpanNode> },
    /// A mapping, entries in source order (repeated keys included).
    Map { pos: Pos, entries: Vec<SpanEntry> },
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone)]
pub(crate) struct SpanEntry {
    /// The key's text (empty for a non-scalar key).
    pub key: String,
    pub key_pos: Pos,
    pub value: SpanNode,
}

impl SpanNode {
    /// Position of the node itself (first character of a scalar, `{`/`[` of a flow collection,
    /// first key of a block mapping).
    pub fn pos(&self) -> Pos {
        match self {
            Self::Leaf { pos } | Self::Seq { pos, .. } | Self::Map { pos, .. } => *pos,
        }
    }

    fn child(&self, seg: &Seg) -> Option<(Option<Pos>, &SpanNode)> {
        match (self, seg) {
            (Self::Map { entries, .. }, Seg::Key(k)) => entries
                .iter()
                .find(|e| &e.key == k)
                .map(|e| (Some(e.key_pos), &e.value)),
            (Self::Seq { items, .. }, Seg::Index(i)) => items.get(*i).map(|n| (None, n)),
            _ => None,
        }
    }
}

/// A repeated key in one mapping.
#[derive(Debug, Clone)]
pub(crate) struct DuplicateKey {
    /// Path of the mapping holding the key.
    pub parent: YPath,
    pub key: String,
    pub first: Pos,
    pub again: Pos,
}

/// The positions of a whole document.
#[derive(Debug, Clone)]
pub(crate) struct SpanTree {
    root: Option<SpanNode>,
}

/// A YAML syntax error found by yaml-rust2.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl SpanTree {
    /// Parses `source` (the first document only).
    pub fn parse(source: &str) -> Result<Self, SyntaxError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(source);
        parser.load(&mut builder, false).map_err(|e| SyntaxError {
            pos: marker_pos(e.marker()),
            message: e.info().to_string(),
        })?;
        Ok(Self { root: builder.root })
    }

    /// The node at `path`, and the position of its key when the last step is a mapping key.
    fn find(&self, path: &[Seg]) -> Option<(Option<Pos>, &SpanNode)> {
        let mut node = self.root.as_ref()?;
        let mut key = None;
        for seg in path {
            let (k, n) = node.child(seg)?;
            key = k;
            node = n;
        }
        Some((key, node))
    }

    /// Position of the value at `path`.
    pub fn value_pos(&self, path: &[Seg]) -> Option<Pos> {
        self.find(path).map(|(_, n)| n.pos())
    }

    /// Position of the key of the entry at `path` (the value's position for sequence items).
    pub fn key_pos(&self, path: &[Seg]) -> Option<Pos> {
        self.find(path).map(|(k, n)| k.unwrap_or_else(|| n.pos()))
    }

    /// The key position of the deepest existing prefix of `path` (the whole document start
    /// when nothing matches). Used when a diagnostic's exact node has no position (values
    /// produced by substitution, merged keys, ...).
    pub fn nearest_key_pos(&self, path: &[Seg]) -> Pos {
        (1..=path.len())
            .rev()
            .find_map(|n| self.key_pos(&path[..n]))
            .unwrap_or(Pos::START)
    }

    /// Like [`SpanTree::nearest_key_pos`] but the value's position when `path` exists.
    pub fn nearest_value_pos(&self, path: &[Seg]) -> Pos {
        self.value_pos(path)
            .unwrap_or_else(|| self.nearest_key_pos(path))
    }

    /// Every repeated key of every mapping, in source order.
    pub fn duplicate_keys(&self) -> Vec<DuplicateKey> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            collect_duplicates(root, &mut Vec::new(), &mut out);
        }
        out
    }
}

fn collect_duplicates(node: &SpanNode, at: &mut YPath, out: &mut Vec<DuplicateKey>) {
    match node {
        SpanNode::Leaf { .. } => {}
        SpanNode::Seq { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                at.push(Seg::Index(i));
                collect_duplicates(item, at, out);
                at.pop();
            }
        }
        SpanNode::Map { entries, .. } => {
            for (i, e) in entries.iter().enumerate() {
                if let Some(first) = entries[..i].iter().find(|f| f.key == e.key) {
                    out.push(DuplicateKey {
                        parent: at.clone(),
                        key: e.key.clone(),
                        first: first.key_pos,
                        again: e.key_pos,
                    });
                    continue;
                }
                at.push(Seg::Key(e.key.clone()));
                collect_duplicates(&e.value, at, out);
                at.pop();
            }
        }
    }
}

fn marker_pos(m: &Marker) -> Pos {
    // yaml-rust2: line is 1-based, col 0-based.
    Pos::new(m.line(), m.col() + 1)
}

enum Frame {
    Seq {
        pos: Pos,
        items: Vec<SpanNode>,
    },
    Map {
        pos: Pos,
        entries: Vec<SpanEntry>,
        key: Option<(String, Pos)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<SpanNode>,
}

impl Builder {
    fn finish(&mut self, node: SpanNode, key_text: Option<String>) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some((key_text.unwrap_or_default(), node.pos())),
                Some((k, key_pos)) => entries.push(SpanEntry {
                    key: k,
                    key_pos,
                    value: node,
                }),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = marker_pos(&mark);
        match ev {
            Event::Scalar(text, ..) => self.finish(SpanNode::Leaf { pos }, Some(text)),
            Event::Alias(_) => self.finish(SpanNode::Leaf { pos }, None),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq {
                pos,
                items: Vec::new(),
            }),
            Event::MappingStart(..) => self.stack.push(Frame::Map {
                pos,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq { pos, items }) => SpanNode::Seq { pos, items },
                    Some(Frame::Map { pos, entries, .. }) => {
                        // A block mapping's start mark comes after its first key: use the key.
                        let pos = entries.first().map_or(pos, |e| e.key_pos.min(pos));
                        SpanNode::Map { pos, entries }
                    }
                    None => return,
                };
                self.finish(node, None);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
dag: x
tasks:
  a:
    op: some.op
    with: { window: 5, list: [1, \"two\"] }
  b:
    op: other
";

    #[test]
    fn key_and_value_positions_are_one_based() {
        let t = SpanTree::parse(SRC).unwrap();
        assert_eq!(t.key_pos(&path(&["dag"])), Some(Pos::new(1, 1)));
        assert_eq!(t.value_pos(&path(&["dag"])), Some(Pos::new(1, 6)));
        assert_eq!(t.key_pos(&path(&["tasks", "a"])), Some(Pos::new(3, 3)));
        assert_eq!(
            t.value_pos(&path(&["tasks", "a", "op"])),
            Some(Pos::new(4, 9))
        );
        assert_eq!(
            t.key_pos(&path(&["tasks", "a", "with", "window"])),
            Some(Pos::new(5, 13))
        );
        let mut item = path(&["tasks", "a", "with", "list"]);
        item.push(Seg::Index(1));
        assert_eq!(t.value_pos(&item), Some(Pos::new(5, 34)));
        assert_eq!(t.value_pos(&path(&["tasks", "a"])), Some(Pos::new(4, 5)));
        assert_eq!(
            t.value_pos(&path(&["tasks", "a", "with"])),
            Some(Pos::new(5, 11))
        );
    }

    #[test]
    fn nearest_position_falls_back_to_the_deepest_known_ancestor() {
        let t = SpanTree::parse(SRC).unwrap();
        let p = path(&["tasks", "b", "with", "nope"]);
        assert_eq!(t.nearest_key_pos(&p), Pos::new(6, 3));
        assert_eq!(t.nearest_key_pos(&path(&["zzz"])), Pos::START);
    }

    #[test]
    fn repeated_keys_are_found_with_both_positions() {
        let src = "tasks:\n  a:\n    op: x\n  a:\n    op: y\n    op: z\n";
        let t = SpanTree::parse(src).unwrap();
        let d = t.duplicate_keys();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].key, "a");
        assert_eq!(d[0].parent, path(&["tasks"]));
        assert_eq!((d[0].first, d[0].again), (Pos::new(2, 3), Pos::new(4, 3)));
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = SpanTree::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn display_path_uses_dots_and_brackets() {
        let mut p = path(&["tasks", "a", "with"]);
        p.push(Seg::Index(2));
        assert_eq!(DisplayPath(&p).to_string(), "tasks.a.with[2]");
    }
}
