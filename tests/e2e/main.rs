//! krxflow's end-to-end tests: one test binary (DataFusion and Delta are linked once), a module
//! per area. They drive the built `krxflow` binary; real-data ones skip when `../shared/data` is
//! absent. A new area is a file here plus one `mod` line below.

mod common;

mod backfill;
mod cli;
mod cluster;
mod eval;
mod faults;
mod interop;
mod krx30;
mod lgbm;
mod linear;
mod lstm;
mod observability;
mod onnx_ops;
mod prediction_loop;
mod reliability;
mod s3;
mod security;
mod sentiment;
mod serve;
mod vacuum;
