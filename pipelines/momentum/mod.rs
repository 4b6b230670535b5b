//! Intraday momentum from minute bars.

pub mod minute;
