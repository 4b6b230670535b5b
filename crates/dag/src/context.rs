//! What a DAG is loaded against: the operator registry, the known tables and the environment.

use std::collections::{BTreeMap, HashMap};

use arrow::datatypes::SchemaRef;
use krxflow_core::OperatorRegistry;

/// Schemas of tables that exist in the lake or are declared in the catalog.
pub trait TableLookup {
    /// Schema of a table that already exists in the lake or is declared in the catalog.
    fn table_schema(&self, name: &str) -> Option<SchemaRef>;
}

impl TableLookup for HashMap<String, SchemaRef> {
    fn table_schema(&self, name: &str) -> Option<SchemaRef> {
        self.get(name).cloned()
    }
}

impl TableLookup for BTreeMap<String, SchemaRef> {
    fn table_schema(&self, name: &str) -> Option<SchemaRef> {
        self.get(name).cloned()
    }
}

/// No known tables: every input must be produced inside the DAG.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTables;

impl TableLookup for NoTables {
    fn table_schema(&self, _name: &str) -> Option<SchemaRef> {
        None
    }
}

/// Environment variables for `${NAME}` substitution.
pub trait EnvLookup {
    /// The variable's value, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment (`std::env::var`; non-UTF-8 values count as unset).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// What a DAG is validated against.
#[derive(Clone, Copy)]
pub struct LoadContext<'a> {
    /// Operators by kind (`op:`).
    pub registry: &'a OperatorRegistry,
    /// Tables that exist or are declared (inputs without a producer in the DAG must be here).
    pub tables: &'a dyn TableLookup,
    /// Environment for `${NAME}`.
    pub env: &'a dyn EnvLookup,
}
