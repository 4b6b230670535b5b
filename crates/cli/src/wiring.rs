//! Wires the engine with the pipeline operators and tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use krxflow_core::{Calendar, OperatorRegistry};
use krxflow_dag::{LoadContext, ProcessEnv, TableLookup, ValidatedDag};
use krxflow_lake::{Catalog, Lake};
use krxflow_schedule::ScheduleError;

pub fn registry() -> OperatorRegistry {
    let mut r = OperatorRegistry::new();
    krxflow_pipelines::register(&mut r);
    r
}

pub fn catalog() -> Catalog {
    let mut c = Catalog::new();
    for def in krxflow_exec::engine_tables() {
        c.declare(def);
    }
    for def in krxflow_pipelines::tables() {
        c.declare(def);
    }
    c
}

/// Environment variable with extra market closures (`YYYY-MM-DD`, comma separated) added to
/// every calendar: the `extra_holidays` configuration.
pub const EXTRA_HOLIDAYS_ENV: &str = "KRXFLOW_EXTRA_HOLIDAYS";

/// The trading calendar named in a DAG (`krx`, `weekdays`), with `KRXFLOW_EXTRA_HOLIDAYS`.
pub fn calendar(name: &str) -> Result<Arc<dyn Calendar>, ScheduleError> {
    let extra = match std::env::var(EXTRA_HOLIDAYS_ENV) {
        Ok(text) => krxflow_schedule::parse_date_list(&text, EXTRA_HOLIDAYS_ENV)?,
        Err(_) => Default::default(),
    };
    krxflow_schedule::calendar_by_name(name, &extra)
}

/// Tables known at validation time: declared in the catalog or present in the lake.
pub struct KnownTables(pub HashMap<String, SchemaRef>);

impl TableLookup for KnownTables {
    fn table_schema(&self, name: &str) -> Option<SchemaRef> {
        self.0.get(name).cloned()
    }
}

pub async fn known_tables(lake: &Lake) -> KnownTables {
    let mut map: HashMap<String, SchemaRef> = lake
        .catalog()
        .iter()
        .map(|d| (d.name.clone(), d.schema.clone()))
        .collect();
    if let Ok(names) = lake.list_tables().await {
        for n in names {
            if map.contains_key(&n) {
                continue;
            }
            if let Ok(Some(s)) = lake.table_schema(&n).await {
                map.insert(n, s);
            }
        }
    }
    KnownTables(map)
}

/// Where `krxflow run NAME` looks for a DAG given by name: `dags/NAME.yaml`.
const DAG_FOLDER: &str = "dags";

/// A DAG argument: a path, or a name looked up as `dags/NAME.yaml`.
pub fn resolve_dag_path(arg: &str) -> PathBuf {
    let p = Path::new(arg);
    if p.exists() || arg.ends_with(".yaml") || arg.ends_with(".yml") {
        return p.to_path_buf();
    }
    let candidate = Path::new(DAG_FOLDER).join(format!("{arg}.yaml"));
    if candidate.exists() {
        candidate
    } else {
        p.to_path_buf()
    }
}

/// Why a DAG argument names nothing: a bare name (no `/`, no `.yaml`/`.yml`) that is neither a
/// file nor `dags/NAME.yaml`, said with the DAGs `dags/` holds and the closest of them. `None`
/// when it resolves, or when it is a path (the loader then names the file it cannot read).
pub fn unknown_dag(arg: &str) -> Option<String> {
    let is_path = arg.contains(std::path::MAIN_SEPARATOR)
        || arg.contains('/')
        || arg.ends_with(".yaml")
        || arg.ends_with(".yml");
    if is_path || resolve_dag_path(arg).exists() {
        return None;
    }
    let mut names: Vec<String> = std::fs::read_dir(DAG_FOLDER)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    names.sort();
    let hint = krxflow_dag::did_you_mean(arg, names.iter().map(String::as_str));
    let there = if names.is_empty() {
        format!("`{DAG_FOLDER}/` holds no DAG here")
    } else {
        format!("`{DAG_FOLDER}/` holds {}", names.join(", "))
    };
    Some(format!(
        "no DAG `{arg}`: neither a file nor {DAG_FOLDER}/{arg}.yaml{hint}; {there}"
    ))
}

pub fn load(
    path: &Path,
    registry: &OperatorRegistry,
    tables: &KnownTables,
) -> Result<ValidatedDag, Vec<krxflow_dag::Diagnostic>> {
    let env = ProcessEnv;
    let ctx = LoadContext {
        registry,
        tables,
        env: &env,
    };
    krxflow_dag::load_dag_file(path, &ctx)
}
