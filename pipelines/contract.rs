//! The contract between operators and the catalog, checked over every registered operator:
//! ports agree with the table definitions, documented params agree with what `configure`
//! accepts, and `storage/README.md` lists the catalog as it is.

use std::collections::BTreeSet;

use krxflow_core::{Operator, OperatorRegistry, TableDef};

fn operators() -> Vec<std::sync::Arc<dyn Operator>> {
    let mut r = OperatorRegistry::default();
    crate::register(&mut r);
    r.iter().cloned().collect()
}

/// Every output port writes a catalog table: same schema, keys and date columns.
#[test]
fn every_output_port_matches_a_catalog_table() {
    let defs = crate::tables();
    for op in operators() {
        for port in op.outputs() {
            let found = defs.iter().find(|d| {
                d.schema == port.schema
                    && d.keys == port.keys
                    && d.date_column == port.date_column
                    && d.partition_column == port.partition_column
            });
            assert!(
                found.is_some(),
                "{}: output `{}` matches no catalog table (schema, keys or date column differ)",
                op.kind(),
                port.name
            );
        }
    }
}

/// Every input port's columns exist, with the same types, in some catalog table.
#[test]
fn every_input_port_reads_columns_a_catalog_table_has() {
    let defs = crate::tables();
    for op in operators() {
        for port in op.inputs() {
            let fits = |d: &TableDef| {
                port.schema.fields().iter().all(|f| {
                    d.schema
                        .field_with_name(f.name())
                        .is_ok_and(|t| t.data_type() == f.data_type())
                })
            };
            assert!(
                defs.iter().any(fits),
                "{}: input `{}` needs columns no catalog table has",
                op.kind(),
                port.name
            );
        }
    }
}

/// The fields `configure` accepts, read from serde's `unknown field` message (every params
/// struct denies unknown fields, so a probe field lists the accepted ones).
fn accepted_fields(op: &dyn Operator) -> BTreeSet<String> {
    let probe = serde_json::json!({ "__contract_probe__": 0 });
    let Err(e) = op.configure(&probe) else {
        panic!("{}: accepted an unknown param", op.kind());
    };
    let msg = e.to_string();
    assert!(
        msg.contains("unknown field `__contract_probe__`"),
        "{}: the probe was not rejected as unknown: {msg}",
        op.kind()
    );
    let tail = msg
        .split_once("expected")
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_operator_documents_exactly_the_params_it_accepts() {
    let mut drift = Vec::new();
    for op in operators() {
        let documented: BTreeSet<String> = op.params().iter().map(|p| p.name.to_string()).collect();
        let accepted = accepted_fields(op.as_ref());
        if documented != accepted {
            drift.push(format!(
                "{}: undocumented {:?}, documented but not accepted {:?}",
                op.kind(),
                accepted.difference(&documented).collect::<Vec<_>>(),
                documented.difference(&accepted).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "ParamSpec lists drifted:\n{}",
        drift.join("\n")
    );
}

/// The table list of `storage/README.md`, generated from the catalog.
pub fn storage_table_list(defs: &[TableDef]) -> String {
    let mut defs: Vec<&TableDef> = defs.iter().collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::from("| table | keys | dated by | what it holds |\n|---|---|---|---|\n");
    for d in defs {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.keys
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            d.date_column
                .as_deref()
                .map(|c| format!("`{c}`"))
                .unwrap_or_else(|| "—".into()),
            d.doc.replace('|', "\\|")
        ));
    }
    out
}

const BEGIN: &str = "<!-- tables:begin (generated from the catalog: KRXFLOW_BLESS=1 cargo test -p krxflow-pipelines --lib contract) -->\n";
const END: &str = "<!-- tables:end -->";

#[test]
fn storage_readme_lists_every_catalog_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../storage/README.md");
    let text = std::fs::read_to_string(path).expect("storage/README.md");
    let want = storage_table_list(&crate::tables());
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("storage/README.md has no generated table list (markers {BEGIN:?} … {END:?})");
    };
    let have = &text[b + BEGIN.len()..e];
    if have != want {
        if std::env::var_os("KRXFLOW_BLESS").is_some() {
            let fresh = format!("{}{BEGIN}{want}{}", &text[..b], &text[e..]);
            std::fs::write(path, fresh).expect("write storage/README.md");
        } else {
            panic!(
                "storage/README.md's table list is stale: run `KRXFLOW_BLESS=1 cargo test -p krxflow-pipelines --lib contract`"
            );
        }
    }
}
