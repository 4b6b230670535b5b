//! Sentiment operators: the embedded lexical model (train, score) and daily aggregation of
//! per-article scores.

pub mod daily;
pub mod finbert;
pub mod lexical;
mod lexical_train;
