//! Domain helpers every operator shares: dates, rejects, up/flat/down, horizons, missing models. The bottom
//! layer of the crate: nothing here imports an operator or a table definition.

pub mod card;
pub mod dates;
pub mod direction;
pub mod horizons;
pub mod onnx_model;
pub mod parallel;
pub mod rejects;
