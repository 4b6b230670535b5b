//! The operator registry: kind -> operator. The CLI registers the pipeline operators into it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::operator::Operator;

#[derive(Clone, Default)]
pub struct OperatorRegistry {
    ops: BTreeMap<&'static str, Arc<dyn Operator>>,
}

impl OperatorRegistry {
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers an operator; a second operator with the same kind replaces the first.
    pub fn register(&mut self, op: Arc<dyn Operator>) -> &mut Self {
        self.ops.insert(op.kind(), op);
        self
    }
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Operator>> {
        self.ops.get(kind)
    }
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.ops.keys().copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Operator>> {
        self.ops.values()
    }
}

impl std::fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ops.keys()).finish()
    }
}
