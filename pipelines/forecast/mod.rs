//! Pretrained time-series forecasters.

pub mod chronos;
