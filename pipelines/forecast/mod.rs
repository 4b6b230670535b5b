//! Pretrained time-series forecasters.

pub mod chronos;
pub mod ets;
pub mod ets_fit;
pub mod quantiles;
