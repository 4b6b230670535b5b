//! The stock domain of krxflow: operators that ingest KRX market data and build features.
//!
//! `crates/*` (the engine) never depends on this crate; the CLI registers these operators into
//! the engine's registry ([`register`]) and these tables into the lake catalog ([`tables`]).

pub mod cols;
pub mod common;
pub mod ensemble;
pub mod features;
pub mod forecast;
pub mod ingest;
pub mod lgbm;
pub mod linear;
pub mod lstm;
pub mod momentum;
pub mod outcomes;
pub mod sentiment;
pub mod tables;

#[cfg(test)]
mod contract;

use std::sync::Arc;

use krxflow_core::{OperatorRegistry, TableDef};

/// Registers every pipeline operator.
pub fn register(registry: &mut OperatorRegistry) {
    registry
        .register(Arc::new(ingest::synthetic::IngestSynthetic))
        .register(Arc::new(ingest::ohlcv::IngestOhlcv))
        .register(Arc::new(ingest::index::IngestIndex))
        .register(Arc::new(ingest::news::IngestNews))
        .register(Arc::new(ingest::universe::IngestUniverse))
        .register(Arc::new(sentiment::daily::SentimentDaily))
        .register(Arc::new(sentiment::lexical::TrainLexical))
        .register(Arc::new(sentiment::lexical::LexicalScorer))
        .register(Arc::new(momentum::minute::MinuteMomentum))
        .register(Arc::new(features::returns::FeaturesReturns))
        .register(Arc::new(features::build::BuildFeatures))
        .register(Arc::new(forecast::chronos::ChronosForecast))
        .register(Arc::new(forecast::ets::EtsForecast))
        .register(Arc::new(forecast::ets_fit::EtsFit))
        .register(Arc::new(ensemble::combine::EnsembleCombine))
        .register(Arc::new(outcomes::matcher::OutcomesMatch))
        .register(Arc::new(outcomes::weights::WeightsUpdate))
        .register(Arc::new(sentiment::finbert::FinbertScorer))
        .register(Arc::new(lgbm::train::LgbmTrain))
        .register(Arc::new(lgbm::predict::LgbmPredict))
        .register(Arc::new(linear::train::LinearTrain))
        .register(Arc::new(linear::predict::LinearPredict))
        .register(Arc::new(lstm::train::LstmTrain))
        .register(Arc::new(lstm::predict::LstmPredict));
}

/// Catalog entries for every table the pipeline writes.
pub fn tables() -> Vec<TableDef> {
    tables::all()
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::{Arc, Mutex};

    use chrono::NaiveDate;
    use krxflow_core::{TaskContext, TaskCounters, TaskObservations, WeekdayCalendar};

    pub fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    /// `s` as UTF-16 LE with its byte-order mark (Excel's "Unicode text").
    pub fn utf16le_with_bom(s: &str) -> Vec<u8> {
        [0xFF, 0xFE]
            .into_iter()
            .chain(s.encode_utf16().flat_map(u16::to_le_bytes))
            .collect()
    }

    /// `n` deterministic bytes that are no text in any encoding.
    pub fn noise(n: u32) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// A context for running an operator outside the engine (weekday calendar, no store).
    pub fn ctx(ds: NaiveDate) -> TaskContext {
        TaskContext {
            dag: "test".into(),
            task: "test".into(),
            ds,
            run_id: "test".into(),
            attempt: 1,
            calendar: Arc::new(WeekdayCalendar::default()),
            cancel: Default::default(),
            counters: Arc::new(TaskCounters::default()),
            observations: Arc::new(TaskObservations::default()),
            artifacts: Arc::new(Mutex::new(Vec::new())),
            watermarks: Default::default(),
            store: None,
        }
    }
}
