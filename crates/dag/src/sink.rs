//! The diagnostics collector: positions come from the span tree.

use std::path::Path;

use crate::diag::{DiagCode, Diagnostic, Pos};
use crate::spans::{Seg, SpanTree};

/// Collects diagnostics, positioned through the span tree.
pub(crate) struct Sink<'a> {
    pub file: &'a Path,
    pub spans: &'a SpanTree,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a Path, spans: &'a SpanTree) -> Self {
        Self {
            file,
            spans,
            diags: Vec::new(),
        }
    }

    pub fn at(&mut self, pos: Pos, code: DiagCode, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(self.file, pos, code, message));
    }

    /// At the key of the entry at `path` (or its nearest ancestor).
    pub fn at_key(&mut self, path: &[Seg], code: DiagCode, message: impl Into<String>) {
        let pos = self.spans.nearest_key_pos(path);
        self.at(pos, code, message);
    }

    /// At the value at `path` (or the key of its nearest ancestor).
    pub fn at_value(&mut self, path: &[Seg], code: DiagCode, message: impl Into<String>) {
        let pos = self.spans.nearest_value_pos(path);
        self.at(pos, code, message);
    }
}
