//! Interoperability: the `deltalake` Python package and Polars (`pl.read_delta`) read every
//! table of a krxflow lake unchanged, and agree with `krxflow sql` on versions, row counts
//! and per-column checksums. Both readers are installed from PyPI into the project's venv by
//! `scripts/setup.sh --tests`.

use std::ffi::OsStr;
use std::process::Command;

use crate::common::{krxflow, krxflow_with, repo_root, text};

fn python() -> std::path::PathBuf {
    repo_root().join(".venv/bin/python")
}

#[test]
fn deltalake_and_polars_read_every_table_and_agree_with_krxflow_sql() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for date in ["2024-12-13", "2024-12-16"] {
        let o = krxflow(&lake, &["run", "dags/daily_batch.yaml", "--date", date]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = krxflow(
        &lake,
        &["run", "dags/match_outcomes.yaml", "--date", "2024-12-16"],
    );
    assert!(o.status.success(), "{}", text(&o));
    readers_agree_with_krxflow_sql(lake.as_os_str(), &[]);
}

/// `deltalake` and Polars read every table of the lake at `lake` (a folder or a URL, with
/// `env` for its store) and agree with `krxflow sql` on versions, row counts and per-column
/// checksums.
pub(crate) fn readers_agree_with_krxflow_sql(lake: &OsStr, env: &[(String, String)]) {
    let krxflow = |args: &[&str]| krxflow_with(lake, env, args);
    let listed = krxflow(&["--json", "tables"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let tables: Vec<(String, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");

    let py = Command::new(python())
        .arg(repo_root().join("tests/interop/read_lake.py"))
        .arg(lake)
        .args(tables.iter().map(|t| &t.0))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the venv's python (scripts/setup.sh --tests) runs");
    assert!(py.status.success(), "{}", text(&py));
    let read: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();

    let mut checked = 0;
    for (name, version) in &tables {
        let r = &read[name];
        assert_eq!(r["version"].as_i64(), Some(*version), "{name}: version");
        let sql_name = name.replace('/', ".");
        let cols = r["columns"].as_object().unwrap();
        let mut exprs = vec!["CAST(count(*) AS DOUBLE) AS c000".to_string()];
        for (i, (c, s)) in cols.iter().enumerate() {
            let e = match s["kind"].as_str().unwrap() {
                "num" => format!("sum(CAST(\"{c}\" AS DOUBLE))"),
                "str" => format!("CAST(sum(character_length(\"{c}\")) AS DOUBLE)"),
                "ts" => format!("sum(CAST(CAST(\"{c}\" AS BIGINT) AS DOUBLE))"),
                _ => format!("CAST(sum(CAST(\"{c}\" AS INT)) AS DOUBLE)"),
            };
            exprs.push(format!("{e} AS c{:03}", i + 1));
        }
        let sql = format!("SELECT {} FROM {sql_name}", exprs.join(", "));
        let o = krxflow(&["sql", &sql, "--format", "json"]);
        assert!(o.status.success(), "{sql}: {}", text(&o));
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let row = rows[0].as_object().unwrap();
        let values: Vec<&serde_json::Value> = (0..exprs.len())
            .map(|i| {
                row.get(&format!("c{i:03}"))
                    .unwrap_or(&serde_json::Value::Null)
            })
            .collect();
        let n = values[0].as_f64().unwrap();
        assert_eq!(
            r["deltalake_rows"].as_f64(),
            Some(n),
            "{name}: deltalake rows"
        );
        assert_eq!(r["polars_rows"].as_f64(), Some(n), "{name}: polars rows");
        for ((c, s), ours) in cols.iter().zip(&values[1..]) {
            let theirs = &s["sum"];
            match (theirs.as_f64(), ours.as_f64()) {
                (Some(a), Some(b)) => {
                    let tol = 1e-9 * a.abs().max(b.abs()).max(1.0);
                    assert!(
                        (a - b).abs() <= tol,
                        "{name}.{c}: polars {a} vs krxflow {b}"
                    );
                }
                (None, None) => {}
                _ => assert!(
                    theirs.is_string() || theirs.is_null(),
                    "{name}.{c}: polars {theirs} vs krxflow {ours}"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} columns compared");
    eprintln!(
        "interop: {} tables, {checked} column checksums agree",
        tables.len()
    );
}
