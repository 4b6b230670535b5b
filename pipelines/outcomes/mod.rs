//! The track record: matured predictions matched against real closes (`outcomes.match`) and
//! member weights learned from them (`weights.update`).

pub mod matcher;
pub mod score;
pub mod weights;
