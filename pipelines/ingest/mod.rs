//! Ingest operators: bring outside data into lake tables.

pub mod cache;
pub mod decode;
pub mod index;
pub mod news;
pub mod ohlcv;
pub mod synthetic;
pub mod universe;

/// The KIS client lives under `ohlcv` (its only user); this is its old path.
pub use ohlcv::kis;
