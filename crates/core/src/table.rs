//! Table declarations shared by the lake catalog and operator ports.

use arrow::datatypes::SchemaRef;

/// How a task output is committed to its table. Every mode is one atomic Delta commit, and
/// re-running the same partition never duplicates rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows. Only for tables whose rows are unique per run (engine logs).
    Append,
    /// Replace every row whose partition column equals the run's `ds`.
    ReplacePartition,
    /// Upsert on the table's keys.
    Merge,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Append => "append",
            Self::ReplacePartition => "replace_partition",
            Self::Merge => "merge",
        })
    }
}

/// One table of the lake: declared once (schema, keys, dates), used everywhere.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    pub schema: SchemaRef,
    /// Upsert keys for `merge`.
    pub keys: Vec<String>,
    /// Column holding the business date of a row (`Date32`): reads for partition `ds` see only
    /// rows with this column `<= ds`.
    pub date_column: Option<String>,
    /// Column that `replace_partition` replaces by (`Date32`, equals the run's `ds`).
    pub partition_column: Option<String>,
    pub doc: String,
}

impl TableDef {
    pub fn new(name: impl Into<String>, schema: SchemaRef) -> Self {
        Self {
            name: name.into(),
            schema,
            keys: Vec::new(),
            date_column: None,
            partition_column: None,
            doc: String::new(),
        }
    }
    pub fn keys(mut self, keys: &[&str]) -> Self {
        self.keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }
    pub fn date_column(mut self, col: &str) -> Self {
        self.date_column = Some(col.to_string());
        self
    }
    pub fn partition_column(mut self, col: &str) -> Self {
        self.partition_column = Some(col.to_string());
        self
    }
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_string();
        self
    }
}
