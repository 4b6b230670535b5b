//! `krxflow eval`'s engine: the track record (`prediction_outcomes` with the stated P(up)),
//! judged per horizon against naive baselines made from the same days' closes, with
//! block-bootstrap intervals of the hit-rate differences, Rank IC and ICIR, errors and
//! pinball losses, interval coverage (overall and by volatility tercile), P(up) calibration,
//! a gross long–short quintile return, and 1-day long–short books traded net of costs
//! ([`books`]); written as `metrics.json`, CSVs and a
//! self-contained `report.html` ([`report`]).
//!
//! It reads plain rows ([`input`]); the CLI fetches them from the lake.

pub mod baselines;
pub mod books;
pub mod bootstrap;
pub mod calibration;
pub mod cross_section;
pub mod drawdown;
pub mod error;
pub mod evaluate;
pub mod input;
pub mod report;
pub mod series;
pub mod summary;

pub use error::{EvalError, EvalResult};
pub use evaluate::{Config, Evaluation, Input, evaluate};
