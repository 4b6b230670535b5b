//! ONNX Runtime through `ort` with **dynamic loading**: the build downloads nothing and links
//! nothing; `libonnxruntime.so` is found at run time, once per process:
//!
//! 1. `ORT_DYLIB_PATH` (a file), else
//! 2. the `onnxruntime` Python wheel in a `.venv` of the current directory or one of its parents,
//!    or beside the executable (what `scripts/setup.sh` installs: `onnxruntime==1.31.1`), else
//! 3. the wheel of the `python3` on `PATH` ([`crate::wheel`]).
//!
//! Without a library every ONNX model reports [`ModelError::RuntimeMissing`] with how to fix it;
//! operators turn that into `skipped`. Sessions are created once per (model file, device) and
//! shared: intra-op threads = cores, all graph optimisations on, the CUDA execution provider
//! first when asked for and available (else CPU, said in [`SharedSession::device`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::wheel::WheelLib;
use crate::{ModelError, ModelResult};

/// The ONNX Runtime minor version `ort` was built for (feature `api-31`).
pub const ORT_VERSION: &str = "1.31";

/// Where a session should run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA when the loaded library has it, else CPU.
    Cuda,
}

fn missing(why: impl std::fmt::Display) -> ModelError {
    ModelError::RuntimeMissing(format!(
        "onnxruntime library not found: {why}. Fix: run scripts/setup.sh (installs \
         onnxruntime=={ORT_VERSION}.1 into .venv), or `pip install onnxruntime=={ORT_VERSION}.1` \
         and set ORT_DYLIB_PATH=.../site-packages/onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}.1"
    ))
}

/// The `onnxruntime` wheel's library (see [`crate::wheel`] for the lookup order).
pub const WHEEL: WheelLib = WheelLib {
    env_var: "ORT_DYLIB_PATH",
    package: "onnxruntime",
    subdir: "capi",
    file_prefix: "libonnxruntime.so",
};

/// Resolves the library path (see the module docs for the order).
pub fn find_library() -> ModelResult<PathBuf> {
    WHEEL.find().map_err(missing)
}

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment (loads the library on first use).
pub fn runtime() -> ModelResult<&'static Environment> {
    let r = RUNTIME.get_or_init(|| {
        let path = find_library().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| {
            missing(format!("{} could not be loaded: {e}", path.display())).to_string()
        })?;
        builder
            .with_name("krxflow")
            .build()
            .map_err(|e| missing(format!("{}: {e}", path.display())).to_string())
    });
    r.as_ref()
        .map_err(|e| ModelError::RuntimeMissing(e.clone()))
}

/// A session shared by every caller in the process (runs are serialised on it; ONNX Runtime
/// parallelises inside a run over its intra-op threads).
pub struct SharedSession {
    session: Mutex<Session>,
    pub path: PathBuf,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// `cpu` or `cuda`: where it actually runs.
    pub device: &'static str,
}

impl SharedSession {
    /// Runs `f` with exclusive use of the session.
    pub fn with<T>(&self, f: impl FnOnce(&mut Session) -> ModelResult<T>) -> ModelResult<T> {
        let mut s = self
            .session
            .lock()
            .map_err(|_| ModelError::Inference("session lock poisoned".into()))?;
        f(&mut s)
    }
}

type SessionKey = (PathBuf, Device, usize);
static SESSIONS: OnceLock<Mutex<HashMap<SessionKey, Arc<SharedSession>>>> = OnceLock::new();

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The shared session for `model` on `device` (created on first use). `threads` = 0: cores.
pub fn session(model: &Path, device: Device, threads: usize) -> ModelResult<Arc<SharedSession>> {
    if !model.is_file() {
        return Err(ModelError::ModelMissing(format!(
            "{} does not exist",
            model.display()
        )));
    }
    let env = runtime()?;
    let threads = if threads == 0 { cores() } else { threads };
    let key = (
        model.canonicalize().unwrap_or_else(|_| model.to_path_buf()),
        device,
        threads,
    );
    let cache = SESSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| ModelError::Inference("session cache poisoned".into()))?;
    if let Some(s) = cache.get(&key) {
        return Ok(s.clone());
    }
    let err =
        |e: &dyn std::fmt::Display| ModelError::Inference(format!("{}: {e}", model.display()));
    let mut builder = Session::builder(env)
        .map_err(|e| err(&e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| err(&e))?
        .with_intra_threads(threads)
        .map_err(|e| err(&e))?;
    let mut used = "cpu";
    if device == Device::Cuda {
        let cuda = ort::ep::CUDA::default();
        if ort::ep::CUDA::is_available().unwrap_or(false) && cuda.register(&mut builder).is_ok() {
            used = "cuda";
        } else {
            tracing::warn!(
                "CUDA execution provider not available in the loaded onnxruntime; using CPU \
                 (install onnxruntime-gpu and point ORT_DYLIB_PATH at it)"
            );
        }
    }
    let session = builder.commit_from_file(model).map_err(|e| err(&e))?;
    let shared = Arc::new(SharedSession {
        inputs: session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
        outputs: session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
        session: Mutex::new(session),
        path: model.to_path_buf(),
        device: used,
    });
    cache.insert(key, shared.clone());
    Ok(shared)
}

/// Checks that a session has the named inputs and outputs (the export contract).
pub fn expect_io(s: &SharedSession, inputs: &[&str], outputs: &[&str]) -> ModelResult<()> {
    for i in inputs {
        if !s.inputs.iter().any(|n| n == i) {
            return Err(ModelError::Artifact(format!(
                "{}: no input `{i}` (has {:?}); export it with crates/models/export",
                s.path.display(),
                s.inputs
            )));
        }
    }
    for o in outputs {
        if !s.outputs.iter().any(|n| n == o) {
            return Err(ModelError::Artifact(format!(
                "{}: no output `{o}` (has {:?}); export it with crates/models/export",
                s.path.display(),
                s.outputs
            )));
        }
    }
    Ok(())
}
