//! Without a native runtime (ONNX Runtime, LightGBM), loading or training a model is a
//! `RuntimeMissing` error that says how to fix it (operators turn it into `skipped`), never a
//! panic. Its own process: each runtime is resolved once per process, and the one test sets
//! both variables before anything resolves them.

use std::path::Path;

use krxflow_models::ModelError;
use krxflow_models::chronos::ChronosBolt;
use krxflow_models::lgbm::Gbm;
use krxflow_models::lightgbm;
use krxflow_models::onnx::Device;

fn runtime_missing(err: ModelError) -> String {
    match err {
        ModelError::RuntimeMissing(msg) => msg,
        other => panic!("expected RuntimeMissing, got {other}"),
    }
}

#[test]
fn missing_native_libraries_are_reported_with_the_fix() {
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
        std::env::set_var("LIGHTGBM_LIB_PATH", "/nonexistent/lib_lightgbm.so");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chronos_bolt_tiny");
    let msg = runtime_missing(
        ChronosBolt::load(&dir, Device::Cpu, 1)
            .err()
            .expect("no ort"),
    );
    assert!(msg.starts_with("onnxruntime library not found"), "{msg}");
    assert!(
        msg.contains("scripts/setup.sh") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );

    let msg = runtime_missing(lightgbm::runtime().expect_err("no lightgbm"));
    assert!(msg.starts_with("LightGBM library not found"), "{msg}");
    assert!(
        msg.contains("LIGHTGBM_LIB_PATH=/nonexistent/lib_lightgbm.so is not a file")
            && msg.contains("scripts/setup.sh"),
        "{msg}"
    );
    // Every entry point says the same, none panics.
    let msg = runtime_missing(Gbm::from_text("tree\n").err().expect("no lightgbm"));
    assert!(msg.starts_with("LightGBM library not found"), "{msg}");
}
