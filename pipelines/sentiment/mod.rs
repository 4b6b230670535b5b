//! Sentiment operators: daily aggregation of per-article scores.

pub mod daily;
