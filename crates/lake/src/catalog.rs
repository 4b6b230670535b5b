//! The table catalog: every table's schema, keys and date columns, declared once.

use std::collections::BTreeMap;

use krxflow_core::{OutputPort, TableDef};

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: BTreeMap<String, TableDef>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_tables(defs: impl IntoIterator<Item = TableDef>) -> Self {
        let mut c = Self::new();
        for d in defs {
            c.declare(d);
        }
        c
    }
    pub fn declare(&mut self, def: TableDef) {
        self.tables.insert(def.name.clone(), def);
    }
    pub fn get(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }
    /// The definition used when a port writes `table`: the catalog's when declared, otherwise
    /// one derived from the port (a user-named table).
    pub fn def_for_output(&self, table: &str, port: &OutputPort) -> TableDef {
        if let Some(d) = self.get(table) {
            return d.clone();
        }
        let mut def = TableDef::new(table, port.schema.clone());
        def.keys = port.keys.clone();
        def.date_column = port.date_column.clone();
        def.partition_column = port.partition_column.clone();
        def.doc = port.doc.clone();
        def
    }
}
