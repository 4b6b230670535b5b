//! Ingest operators: bring outside data into lake tables.

pub mod ohlcv;
pub mod synthetic;
