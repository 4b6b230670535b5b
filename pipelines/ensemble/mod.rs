//! The ensemble: members' forecasts combined into `predictions` with the weights learned from
//! the track record (`ensemble_weights`).

pub mod blend;
pub mod combine;
pub mod conformal;
mod matured;
mod order_stats;
pub mod rank_skill;
pub mod weights;
