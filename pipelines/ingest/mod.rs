//! Ingest operators: bring outside data into lake tables.

pub mod cache;
pub mod index;
pub mod kis;
pub mod news;
pub mod ohlcv;
pub mod synthetic;
pub mod universe;
