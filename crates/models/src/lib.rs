//! krxflow's model runtimes. Operators in `pipelines/` use these; this crate knows nothing
//! about DAGs or tables.
//!
//! * [`lexical`]: the embedded sentiment model (multinomial logistic regression over hashed
//!   Korean n-grams, fitted by [`softmax`]), trained and scored without any download.
//! * [`onnx`]: ONNX Runtime, loaded dynamically, with shared sessions; [`chronos`]
//!   (Chronos-Bolt quantile forecasts) and [`finbert`] (KR-FinBert-SC sentiment) on top.
//! * [`lgbm`]: LightGBM regression and direction models with time-ordered early stopping, on
//!   [`lightgbm`], LightGBM's C API loaded at run time.
//! * [`ets`]: AutoETS on log closes (augurs-ets): quantile forecasts with no downloaded weights.
//! * [`lstm`]: a one-layer LSTM with a linear head, its gradient through time and Adam, in
//!   plain Rust (the LSTM member's network; `pipelines/lstm` trains and applies it).
//! * [`wheel`]: where the native libraries (ONNX Runtime, LightGBM) are found at run time.

pub mod chronos;
pub mod error;
pub mod ets;
pub mod finbert;
pub mod lexical;
pub mod lgbm;
pub mod lightgbm;
pub mod lstm;
pub mod onnx;
pub mod softmax;
pub mod wheel;

pub use error::{ModelError, ModelResult};
