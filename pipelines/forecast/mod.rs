//! Pretrained time-series forecasters.

pub mod chronos;
pub mod ets;
pub mod quantiles;
