//! The DAG loader and validator on arbitrary text: it must answer a validated DAG or
//! diagnostics, never panic, and every diagnostic must point inside the file it names.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use arrow::datatypes::SchemaRef;
use krxflow_core::OperatorRegistry;
use krxflow_dag::{LoadContext, load_dag_str};
use libfuzzer_sys::fuzz_target;

static REGISTRY: LazyLock<OperatorRegistry> = LazyLock::new(|| {
    let mut r = OperatorRegistry::default();
    krxflow_pipelines::register(&mut r);
    r
});

static TABLES: LazyLock<BTreeMap<String, SchemaRef>> = LazyLock::new(|| {
    krxflow_pipelines::tables()
        .into_iter()
        .map(|t| (t.name, t.schema))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> = [("KRX_DATA".to_string(), "/data".to_string())].into();
    let ctx = LoadContext {
        registry: &REGISTRY,
        tables: &*TABLES,
        env: &env,
    };
    if let Err(diags) = load_dag_str(source, Path::new("fuzz.yaml"), &ctx) {
        assert!(!diags.is_empty(), "an error without a diagnostic");
        // YAML's line breaks: CR LF, CR or LF (a lone CR is a break, as libyaml counts it);
        // a diagnostic may sit at the end of the input, one line past the last break.
        let lines = source.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1;
        for d in &diags {
            assert!(
                d.line >= 1 && d.line <= lines && d.col >= 1,
                "diagnostic outside the file ({lines} lines): {}:{} {}",
                d.line,
                d.col,
                d.message
            );
        }
    }
});
