//! Feature operators.

pub mod build;
pub mod returns;
mod window;
