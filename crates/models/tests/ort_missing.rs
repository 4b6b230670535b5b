//! Without an ONNX Runtime library, loading a model is a `RuntimeMissing` error that says how
//! to fix it (operators turn it into `skipped`), never a panic. Its own process: the runtime is
//! resolved once per process.

use std::path::Path;

use krxflow_models::ModelError;
use krxflow_models::chronos::ChronosBolt;
use krxflow_models::onnx::Device;

#[test]
fn a_missing_onnxruntime_library_is_reported_with_the_fix() {
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so") };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chronos_bolt_tiny");
    let err = ChronosBolt::load(&dir, Device::Cpu, 1)
        .err()
        .expect("no runtime");
    let ModelError::RuntimeMissing(msg) = &err else {
        panic!("expected RuntimeMissing, got {err}");
    };
    assert!(msg.starts_with("onnxruntime library not found"), "{msg}");
    assert!(
        msg.contains("scripts/setup.sh") && msg.contains("ORT_DYLIB_PATH"),
        "{msg}"
    );
}
