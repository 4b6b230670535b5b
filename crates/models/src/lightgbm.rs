//! LightGBM's C API, **loaded at run time** from the `lightgbm` Python wheel, the way [`onnx`]
//! loads ONNX Runtime: the build compiles no C++ and needs no cmake or libclang.
//!
//! The library is `LIGHTGBM_LIB_PATH`, else `lib_lightgbm.so` of the `lightgbm==4.7.0` wheel in
//! a `.venv` at or above the working directory or beside the executable (`scripts/setup.sh`
//! installs it there, without its Python dependencies), else that of the `python3` on `PATH`
//! (see [`crate::wheel`]). It is resolved once per process; without it every call is a
//! [`ModelError::RuntimeMissing`] saying how to fix it, which operators report as `skipped`.
//!
//! [`Dataset`] and [`Booster`] own their handles and free them on drop; every fallible call
//! returns LightGBM's own last-error text. The training loop ([`Booster::train`]) is the
//! classic one: one boosting round at a time, early stopping on the first validation metric,
//! and a rollback of the rounds that did not improve it.
//!
//! [`onnx`]: crate::onnx

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use crate::wheel::WheelLib;
use crate::{ModelError, ModelResult};

/// The LightGBM version the wheel pin and the model text format belong to.
pub const LIGHTGBM_VERSION: &str = "4.7.0";

/// The `lightgbm` wheel's library.
pub const WHEEL: WheelLib = WheelLib {
    env_var: "LIGHTGBM_LIB_PATH",
    package: "lightgbm",
    subdir: "lib",
    file_prefix: "lib_lightgbm.so",
};

const DTYPE_FLOAT32: c_int = 0;
const DTYPE_FLOAT64: c_int = 1;
const PREDICT_NORMAL: c_int = 0;

type Handle = *mut c_void;

/// The C functions krxflow calls (c_api.h of LightGBM 4.7).
struct Api {
    last_error: unsafe extern "C" fn() -> *const c_char,
    dataset_create_from_mat: unsafe extern "C" fn(
        *const c_void,
        c_int,
        i32,
        i32,
        c_int,
        *const c_char,
        Handle,
        *mut Handle,
    ) -> c_int,
    dataset_set_field:
        unsafe extern "C" fn(Handle, *const c_char, *const c_void, c_int, c_int) -> c_int,
    dataset_free: unsafe extern "C" fn(Handle) -> c_int,
    booster_create: unsafe extern "C" fn(Handle, *const c_char, *mut Handle) -> c_int,
    booster_add_valid_data: unsafe extern "C" fn(Handle, Handle) -> c_int,
    booster_update_one_iter: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    booster_rollback_one_iter: unsafe extern "C" fn(Handle) -> c_int,
    booster_get_eval_counts: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    booster_get_eval: unsafe extern "C" fn(Handle, c_int, *mut c_int, *mut f64) -> c_int,
    booster_save_model_to_string:
        unsafe extern "C" fn(Handle, c_int, c_int, c_int, i64, *mut i64, *mut c_char) -> c_int,
    booster_load_model_from_string:
        unsafe extern "C" fn(*const c_char, *mut c_int, *mut Handle) -> c_int,
    booster_get_num_feature: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    booster_get_num_classes: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    booster_get_current_iteration: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    booster_predict_for_mat: unsafe extern "C" fn(
        Handle,
        *const c_void,
        c_int,
        i32,
        i32,
        c_int,
        c_int,
        c_int,
        c_int,
        *const c_char,
        *mut i64,
        *mut f64,
    ) -> c_int,
    booster_free: unsafe extern "C" fn(Handle) -> c_int,
    /// Keeps the library mapped for the process's lifetime (the pointers above point into it).
    _lib: libloading::Library,
}

fn missing(why: impl std::fmt::Display) -> ModelError {
    ModelError::RuntimeMissing(format!(
        "LightGBM library not found: {why}. Fix: run scripts/setup.sh (installs \
         lightgbm=={LIGHTGBM_VERSION} into .venv), or `pip install --no-deps \
         lightgbm=={LIGHTGBM_VERSION}` and set LIGHTGBM_LIB_PATH=.../site-packages/lightgbm/lib/lib_lightgbm.so"
    ))
}

/// Resolves the library path (see the module docs for the order).
pub fn find_library() -> ModelResult<PathBuf> {
    WHEEL.find().map_err(missing)
}

impl Api {
    fn load() -> ModelResult<Self> {
        let path = find_library()?;
        // SAFETY: loading runs the library's initialisers; lib_lightgbm.so is LightGBM's own
        // C API library with no initialiser side effects beyond its C++ statics.
        let lib = unsafe { libloading::Library::new(&path) }
            .map_err(|e| missing(format!("{} could not be loaded: {e}", path.display())))?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the field's type is the C signature of this symbol in c_api.h (4.7).
                let s = unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| missing(format!("{} has no {}: {e}", path.display(), $name)))?;
                *s
            }};
        }
        Ok(Self {
            last_error: sym!("LGBM_GetLastError"),
            dataset_create_from_mat: sym!("LGBM_DatasetCreateFromMat"),
            dataset_set_field: sym!("LGBM_DatasetSetField"),
            dataset_free: sym!("LGBM_DatasetFree"),
            booster_create: sym!("LGBM_BoosterCreate"),
            booster_add_valid_data: sym!("LGBM_BoosterAddValidData"),
            booster_update_one_iter: sym!("LGBM_BoosterUpdateOneIter"),
            booster_rollback_one_iter: sym!("LGBM_BoosterRollbackOneIter"),
            booster_get_eval_counts: sym!("LGBM_BoosterGetEvalCounts"),
            booster_get_eval: sym!("LGBM_BoosterGetEval"),
            booster_save_model_to_string: sym!("LGBM_BoosterSaveModelToString"),
            booster_load_model_from_string: sym!("LGBM_BoosterLoadModelFromString"),
            booster_get_num_feature: sym!("LGBM_BoosterGetNumFeature"),
            booster_get_num_classes: sym!("LGBM_BoosterGetNumClasses"),
            booster_get_current_iteration: sym!("LGBM_BoosterGetCurrentIteration"),
            booster_predict_for_mat: sym!("LGBM_BoosterPredictForMat"),
            booster_free: sym!("LGBM_BoosterFree"),
            _lib: lib,
        })
    }

    /// Turns a C API return code into a result with LightGBM's error text.
    fn check(&self, code: c_int) -> ModelResult<()> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: LGBM_GetLastError returns a NUL-terminated thread-local buffer, valid until
        // the next call on this thread; it is copied out at once.
        let msg = unsafe { CStr::from_ptr((self.last_error)()) }
            .to_string_lossy()
            .into_owned();
        Err(ModelError::Training(format!("LightGBM: {msg}")))
    }
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> ModelResult<&'static Api> {
    API.get_or_init(|| Api::load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ModelError::RuntimeMissing(e.clone()))
}

/// Loads the library now (operators call it first to report `skipped` before any work).
pub fn runtime() -> ModelResult<()> {
    api().map(|_| ())
}

fn cstring(what: &str, s: &str) -> ModelResult<CString> {
    CString::new(s).map_err(|_| ModelError::Training(format!("{what} contains a NUL byte")))
}

/// `key=value` pairs separated by spaces, LightGBM's parameter string.
pub fn params_string(params: &Value) -> ModelResult<String> {
    let obj = params
        .as_object()
        .ok_or_else(|| ModelError::Training("LightGBM parameters must be a map".into()))?;
    Ok(obj
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" "))
}

fn rows_of(len: usize, n_features: usize) -> ModelResult<(i32, i32)> {
    if n_features == 0 {
        return Err(ModelError::Training("no features".into()));
    }
    if !len.is_multiple_of(n_features) {
        return Err(ModelError::Training(format!(
            "{len} values are not rows of {n_features} features"
        )));
    }
    let rows = i32::try_from(len / n_features)
        .map_err(|_| ModelError::Training("more rows than LightGBM takes (2^31)".into()))?;
    let cols =
        i32::try_from(n_features).map_err(|_| ModelError::Training("too many features".into()))?;
    Ok((rows, cols))
}

/// One thread at a time inside LightGBM, process-wide. LightGBM runs its own OpenMP threads
/// and warns against several jobs in one process at once; concurrent fits on worker threads
/// (each `num_threads=1`) crashed with a null dereference inside `lib_lightgbm.so` after
/// hundreds of fits in one long-lived process. Re-entrant for the calling thread (a booster
/// dropped inside `train` on an error path takes it again).
struct Exclusive;

static OWNER: std::sync::Mutex<Option<std::thread::ThreadId>> = std::sync::Mutex::new(None);
static RELEASED: std::sync::Condvar = std::sync::Condvar::new();
thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Exclusive {
    fn enter() -> Self {
        if DEPTH.with(|d| d.get()) == 0 {
            let me = std::thread::current().id();
            let mut owner = OWNER.lock().unwrap_or_else(|e| e.into_inner());
            while owner.is_some_and(|o| o != me) {
                owner = RELEASED.wait(owner).unwrap_or_else(|e| e.into_inner());
            }
            *owner = Some(me);
        }
        DEPTH.with(|d| d.set(d.get() + 1));
        Exclusive
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let left = DEPTH.with(|d| {
            let n = d.get().saturating_sub(1);
            d.set(n);
            n
        });
        if left == 0 {
            *OWNER.lock().unwrap_or_else(|e| e.into_inner()) = None;
            RELEASED.notify_one();
        }
    }
}

/// A LightGBM training or validation set: a dense row-major f64 matrix and f32 labels.
pub struct Dataset {
    handle: Handle,
    api: &'static Api,
    rows: i32,
}

impl Dataset {
    /// A dataset from row-major `x` (`NaN` is missing) with `labels`, one per row. A validation
    /// set passes its training set as `reference` so both share the training bin boundaries.
    pub fn from_rows(
        x: &[f64],
        labels: &[f32],
        n_features: usize,
        reference: Option<&Dataset>,
    ) -> ModelResult<Self> {
        let _one = Exclusive::enter();
        let api = api()?;
        let (rows, cols) = rows_of(x.len(), n_features)?;
        if rows == 0 {
            return Err(ModelError::Training("no rows".into()));
        }
        if labels.len() != rows as usize {
            return Err(ModelError::Training(format!(
                "{} labels for {rows} rows",
                labels.len()
            )));
        }
        let empty = cstring("parameters", "")?;
        let label = cstring("field", "label")?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `x` holds rows * cols f64 values (checked above) and outlives the call, which
        // copies them into LightGBM's binned representation; `reference` is a live handle.
        api.check(unsafe {
            (api.dataset_create_from_mat)(
                x.as_ptr().cast(),
                DTYPE_FLOAT64,
                rows,
                cols,
                1,
                empty.as_ptr(),
                reference.map_or(std::ptr::null_mut(), |r| r.handle),
                &mut handle,
            )
        })?;
        let dataset = Self { handle, api, rows };
        // SAFETY: `labels` holds `rows` f32 values (checked above); LightGBM copies them.
        api.check(unsafe {
            (api.dataset_set_field)(
                dataset.handle,
                label.as_ptr(),
                labels.as_ptr().cast(),
                rows,
                DTYPE_FLOAT32,
            )
        })?;
        Ok(dataset)
    }

    /// Weighs each row's loss (one non-negative finite weight per row; LightGBM copies them).
    pub fn set_weights(&self, weights: &[f32]) -> ModelResult<()> {
        let _one = Exclusive::enter();
        let rows = self.rows;
        if weights.len() != rows as usize {
            return Err(ModelError::Training(format!(
                "{} weights for {rows} rows",
                weights.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(ModelError::Training(format!(
                "row weight {w} is not a finite weight >= 0"
            )));
        }
        let field = cstring("field", "weight")?;
        // SAFETY: `weights` holds `rows` f32 values (checked above); LightGBM copies them.
        self.api.check(unsafe {
            (self.api.dataset_set_field)(
                self.handle,
                field.as_ptr(),
                weights.as_ptr().cast(),
                rows,
                DTYPE_FLOAT32,
            )
        })
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        let _one = Exclusive::enter();
        // SAFETY: the handle was created by LGBM_DatasetCreateFromMat and is freed only here.
        // A failure to free cannot be acted on in drop.
        let _ = unsafe { (self.api.dataset_free)(self.handle) };
    }
}

/// A trained or loaded LightGBM model.
///
/// The handle has no thread affinity, but a booster must not be used by two threads at once
/// (batch prediction initialises state under a shared lock only: LightGBM issue 6142), so it is
/// `Send` and not `Sync`; [`crate::lgbm::Gbm`] adds the lock that makes a shared model safe.
pub struct Booster {
    handle: Handle,
    api: &'static Api,
    n_features: i32,
    n_classes: i32,
    n_iterations: i32,
}

// SAFETY: the handle points at a heap object of LightGBM's with no thread affinity (its
// last-error buffer is thread-local and read by the same call that set it); `&mut`/ownership
// rules keep one thread inside it at a time, since `Booster` is not `Sync`.
unsafe impl Send for Booster {}

impl Booster {
    /// Takes ownership of a live handle (freed on drop, also when this fails).
    fn from_handle(handle: Handle, api: &'static Api) -> ModelResult<Self> {
        let mut b = Self {
            handle,
            api,
            n_features: 0,
            n_classes: 0,
            n_iterations: 0,
        };
        b.refresh()?;
        Ok(b)
    }

    /// Reads the model's shape and round count back from LightGBM.
    fn refresh(&mut self) -> ModelResult<()> {
        let api = self.api;
        // SAFETY: `handle` is a live booster; each out-pointer is a valid `c_int`.
        unsafe {
            api.check((api.booster_get_num_feature)(
                self.handle,
                &mut self.n_features,
            ))?;
            api.check((api.booster_get_num_classes)(
                self.handle,
                &mut self.n_classes,
            ))?;
            api.check((api.booster_get_current_iteration)(
                self.handle,
                &mut self.n_iterations,
            ))
        }
    }

    /// Trains on `train`, evaluating `valid` after every round. `params` is LightGBM's
    /// parameter map plus `num_iterations` (default 100) and `early_stopping_rounds`: with a
    /// validation set, training stops once that many rounds in a row have not improved the
    /// first validation metric (lower is better, except auc, average_precision, map, ndcg and
    /// accuracy), and those rounds are rolled back.
    pub fn train(train: &Dataset, valid: Option<&Dataset>, params: &Value) -> ModelResult<Self> {
        let _one = Exclusive::enter();
        let api = train.api;
        let num_iterations = params["num_iterations"].as_i64().unwrap_or(100);
        let early_stopping_rounds = params["early_stopping_rounds"].as_i64();
        let higher_is_better = matches!(
            params["metric"].as_str().unwrap_or_default(),
            "auc" | "average_precision" | "map" | "ndcg" | "accuracy"
        );
        let text = cstring("parameters", &params_string(params)?)?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `train` is a live dataset and `text` a NUL-terminated string.
        api.check(unsafe { (api.booster_create)(train.handle, text.as_ptr(), &mut handle) })?;
        // Owned from here on, so an error below frees it.
        let mut booster = Self::from_handle(handle, api)?;
        if let Some(v) = valid {
            // SAFETY: both handles are live.
            api.check(unsafe { (api.booster_add_valid_data)(booster.handle, v.handle) })?;
        }
        let stop_after = early_stopping_rounds.filter(|_| valid.is_some());
        let mut best: Option<f64> = None;
        let mut without_improvement = 0i64;
        for iter in 1..=num_iterations {
            let mut finished: c_int = 0;
            // SAFETY: live booster; `finished` is a valid out-pointer.
            api.check(unsafe { (api.booster_update_one_iter)(booster.handle, &mut finished) })?;
            if finished != 0 {
                break;
            }
            let Some(rounds) = stop_after else { continue };
            let Some(&score) = booster.eval(1)?.first() else {
                continue;
            };
            let improved = best.is_none_or(|b| {
                if higher_is_better {
                    score > b
                } else {
                    score < b
                }
            });
            if improved {
                best = Some(score);
                without_improvement = 0;
            } else {
                without_improvement += 1;
                if without_improvement >= rounds {
                    for _ in 0..without_improvement.min(iter) {
                        // SAFETY: live booster with at least this many rounds.
                        api.check(unsafe { (api.booster_rollback_one_iter)(booster.handle) })?;
                    }
                    break;
                }
            }
        }
        booster.refresh()?;
        Ok(booster)
    }

    /// The metrics LightGBM computes on data set `data_idx` (0 = training, 1 = first valid).
    fn eval(&self, data_idx: c_int) -> ModelResult<Vec<f64>> {
        let mut n: c_int = 0;
        // SAFETY: live booster; `n` is a valid out-pointer.
        self.api
            .check(unsafe { (self.api.booster_get_eval_counts)(self.handle, &mut n) })?;
        let len = usize::try_from(n).unwrap_or(0);
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![0.0; len];
        let mut written: c_int = 0;
        // SAFETY: `out` has room for the `n` metrics LightGBM just reported.
        self.api.check(unsafe {
            (self.api.booster_get_eval)(self.handle, data_idx, &mut written, out.as_mut_ptr())
        })?;
        out.truncate(usize::try_from(written).unwrap_or(0).min(len));
        Ok(out)
    }

    /// Loads LightGBM model text (what [`Booster::save_string`] returns).
    pub fn from_string(text: &str) -> ModelResult<Self> {
        let _one = Exclusive::enter();
        let api = api()?;
        let c = CString::new(text)
            .map_err(|_| ModelError::Artifact("model text contains a NUL byte".into()))?;
        let mut iterations: c_int = 0;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `c` is NUL-terminated; both out-pointers are valid.
        api.check(unsafe {
            (api.booster_load_model_from_string)(c.as_ptr(), &mut iterations, &mut handle)
        })
        .map_err(|e| ModelError::Artifact(format!("LightGBM model text: {e}")))?;
        Self::from_handle(handle, api)
    }

    /// The model as LightGBM's text format (round-trips bit-exactly through `from_string`).
    pub fn save_string(&self) -> ModelResult<String> {
        let _one = Exclusive::enter();
        let mut needed: i64 = 0;
        // SAFETY: a zero-length buffer: LightGBM only reports the size it needs.
        self.api.check(unsafe {
            (self.api.booster_save_model_to_string)(
                self.handle,
                0,
                -1,
                0,
                0,
                &mut needed,
                std::ptr::null_mut(),
            )
        })?;
        let len = usize::try_from(needed)
            .map_err(|_| ModelError::Training("negative model text size".into()))?;
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has `needed` bytes, the size LightGBM asked for (text + NUL).
        self.api.check(unsafe {
            (self.api.booster_save_model_to_string)(
                self.handle,
                0,
                -1,
                0,
                needed,
                &mut needed,
                buf.as_mut_ptr().cast(),
            )
        })?;
        let text = CStr::from_bytes_until_nul(&buf)
            .map_err(|_| ModelError::Training("model text is not NUL-terminated".into()))?;
        text.to_str()
            .map(str::to_owned)
            .map_err(|_| ModelError::Training("model text is not UTF-8".into()))
    }

    pub fn num_features(&self) -> i32 {
        self.n_features
    }

    pub fn num_classes(&self) -> i32 {
        self.n_classes
    }

    /// Boosting rounds in the model (after early stopping's rollback).
    pub fn num_iterations(&self) -> i32 {
        self.n_iterations
    }

    /// Predictions (with the objective's transform) for row-major `x`: one value per row, or
    /// one per class and row. `params` is a LightGBM parameter string (e.g. `num_threads=1`).
    pub fn predict(&self, x: &[f64], params: &str) -> ModelResult<Vec<f64>> {
        let _one = Exclusive::enter();
        let (rows, cols) = rows_of(x.len(), usize::try_from(self.n_features).unwrap_or(0))?;
        let per_row = usize::try_from(self.n_classes.max(1)).unwrap_or(1);
        let mut out = vec![0.0; rows as usize * per_row];
        if rows == 0 {
            return Ok(out);
        }
        let p = cstring("parameters", params)?;
        let mut written: i64 = 0;
        // SAFETY: `x` has rows * cols values matching the model's feature count (checked) and
        // `out` has room for rows * classes results.
        self.api.check(unsafe {
            (self.api.booster_predict_for_mat)(
                self.handle,
                x.as_ptr().cast(),
                DTYPE_FLOAT64,
                rows,
                cols,
                1,
                PREDICT_NORMAL,
                0,
                self.n_iterations,
                p.as_ptr(),
                &mut written,
                out.as_mut_ptr(),
            )
        })?;
        Ok(out)
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        let _one = Exclusive::enter();
        // SAFETY: the handle is owned by this value and freed only here.
        let _ = unsafe { (self.api.booster_free)(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_at_a_time_and_reentrant_for_the_holder() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let inside = std::sync::Arc::new(AtomicUsize::new(0));
        let most = std::sync::Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (inside, most) = (inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _outer = Exclusive::enter();
                        let _inner = Exclusive::enter(); // re-entrant
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn parameters_become_lightgbm_key_value_text() {
        let p =
            serde_json::json!({"objective": "regression", "num_leaves": 15, "deterministic": true});
        let s = params_string(&p).expect("map");
        assert!(s.contains("objective=regression"), "{s}");
        assert!(
            s.contains("num_leaves=15") && s.contains("deterministic=true"),
            "{s}"
        );
        assert!(params_string(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn shapes_are_checked_before_any_call() {
        assert!(rows_of(6, 0).is_err());
        assert!(rows_of(7, 3).is_err());
        assert_eq!(rows_of(6, 3).expect("ok"), (2, 3));
    }

    #[test]
    fn a_loaded_library_trains_saves_and_reloads() {
        let n = 400;
        let x: Vec<f64> = (0..n * 2)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let y: Vec<f32> = x.chunks(2).map(|r| (r[0] - 0.5 * r[1]) as f32).collect();
        let train = Dataset::from_rows(&x[..600], &y[..300], 2, None).expect("train set");
        let valid = Dataset::from_rows(&x[600..], &y[300..], 2, Some(&train)).expect("valid set");
        let params = serde_json::json!({"objective": "regression", "metric": "l2",
            "num_iterations": 50, "early_stopping_rounds": 5, "verbosity": -1, "num_threads": 1});
        let b = Booster::train(&train, Some(&valid), &params).expect("train");
        assert_eq!(b.num_features(), 2);
        assert!(b.num_iterations() > 0 && b.num_iterations() <= 50);
        let text = b.save_string().expect("save");
        let again = Booster::from_string(&text).expect("load");
        let (p1, p2) = (
            b.predict(&x[600..], "num_threads=1").expect("p1"),
            again.predict(&x[600..], "num_threads=1").expect("p2"),
        );
        assert_eq!(p1.len(), 100);
        assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()));
        // A one-row batch gives the bits of the same row in a larger batch.
        let one = again.predict(&x[600..602], "num_threads=1").expect("one");
        assert_eq!(one[0].to_bits(), p1[0].to_bits());
        let err = Booster::from_string("not a model").err().expect("bad text");
        assert!(err.to_string().contains("LightGBM"), "{err}");
        assert!(b.predict(&x[..3], "").is_err());
    }
}
