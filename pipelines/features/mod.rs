//! Feature operators.

pub mod build;
mod compute;
mod formulas;
mod indicators;
pub mod returns;
mod window;
