//! `features.build`: the daily feature table `features_daily` from `ohlcv_daily` (+ the market
//! index when present), optionally with training targets.
//!
//! One pass per code over its (code, date)-sorted slice. Rolling and lagged features are
//! computed for each written row from exactly the rows their formula names (a window's mean
//! and standard deviation are two passes over that window, not a running sum), so a value does
//! not depend on where the read started: an incremental run that reads the last 1,000 trading
//! days writes the same bits as a full refresh, and a daily run computes only the rows it
//! writes. Features defined by a recursion (Wilder's RSI and ATR, the EMAs of MACD) run as one
//! linear pass over the slice.
//!
//! Every feature is documented in [`FEATURES`](crate::tables::FEATURES). A row is
//! `warmup = true` when any feature that needs history is null for lack of it (never filled
//! with a made-up value).
//!
//! Point-in-time: inputs are read as of `ds` by the engine, so a feature for day D only sees
//! rows dated <= D; targets (`with_targets: true`) use rows after the base date, so rows whose
//! horizon ends after `ds` are excluded.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

// The computation and the indicators live in their own files; these are their old paths.
pub use super::compute::{build_features, compute_features, compute_features_on};
pub use super::indicators::{Series, atr_norm, ema, macd, rsi_wilder};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildParams {
    /// Add y_ret_h / y_dir_h for these horizons (trading days).
    #[serde(default)]
    pub with_targets: bool,
    /// Only emit rows dated on or after this many trading days before ds (default: all).
    #[serde(default)]
    pub emit_days: Option<u32>,
    /// Index code in the index table used for market features.
    #[serde(default = "default_index")]
    pub index_code: String,
    /// Only upsert rows from `overlap_days` trading days before the table's watermark on:
    /// a daily run rewrites the recent rows (whose targets may have matured) instead of the
    /// whole history. The first run (empty table) writes everything.
    #[serde(default = "default_true")]
    pub incremental: bool,
    #[serde(default = "default_overlap")]
    pub overlap_days: u32,
}

fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    10
}

fn default_index() -> String {
    "KS11".into()
}

pub struct BuildFeatures;

struct Configured {
    p: BuildParams,
}

#[async_trait]
impl Operator for BuildFeatures {
    fn kind(&self) -> &'static str {
        "features.build"
    }
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "Daily features (returns, moving averages, RSI, MACD, Bollinger, ATR, volume, 52w, market) and optional targets"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::optional(
                "with_targets",
                "bool",
                "false",
                "add y_ret_{1,3,5}d and y_dir_{1,3,5}d (rows whose 1-day target is after ds are excluded)",
            ),
            ParamSpec::optional(
                "emit_days",
                "u32",
                "all",
                "only upsert rows of the last N trading days up to ds",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "only upsert rows from overlap_days trading days before the table's watermark",
            ),
            ParamSpec::optional(
                "overlap_days",
                "u32",
                "10",
                "trading days rewritten before the watermark (must cover the longest target horizon)",
            ),
            ParamSpec::optional(
                "index_code",
                "string",
                "KS11",
                "index code (in the index table) for market features",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new(
                "bars",
                tables::subset(&tables::ohlcv_daily(), &super::compute::BAR_COLUMNS),
                "daily bars",
            )
            .projected(),
            InputPort::new("index", tables::index_daily().schema, "market index bars").optional(),
            InputPort::new(
                "sentiment",
                tables::sentiment_daily().schema,
                "daily news sentiment",
            )
            .optional(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::features_daily(), "features", WriteMode::Merge)
                .doc("one row per code and date")
                .with_watermark(),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: BuildParams = parse_params(params)?;
        if p.with_targets && p.incremental && p.overlap_days < 5 {
            return Err(ConfigError::new(
                "overlap_days",
                "must be >= 5 with targets (the 5-day target matures 5 trading days later)",
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

/// Trading days of history an incremental run reads before ds: more than the longest window
/// (250) plus the overlap, and long enough for the recursive indicators (Wilder 14, EMA 26) to
/// forget their seed: its weight is at most (13/14)^700 ≈ 3e-23, far below f64 resolution.
pub const INCREMENTAL_HISTORY_DAYS: i64 = 1000;

/// Trading days of history an emitted row needs before it (the 250-day window, with margin).
const WARM_DAYS: i64 = 300;

impl Configured {
    /// The first date this run writes: `emit_days` before ds, or the watermark minus the overlap
    /// when incremental; `None` = all history.
    fn emit_from(
        &self,
        ds: NaiveDate,
        watermark: Option<NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        let by_emit = self
            .p
            .emit_days
            .map(|n| cal.add_trading_days(ds, -(i64::from(n) - 1)));
        let by_watermark = watermark
            .filter(|_| self.p.incremental)
            .map(|w| cal.add_trading_days(w, -i64::from(self.p.overlap_days)));
        by_emit.max(by_watermark)
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    /// A run that writes only recent rows reads the last [`INCREMENTAL_HISTORY_DAYS`] trading
    /// days, a window fixed relative to ds (so a re-run of ds reads the same rows whatever the
    /// watermark); when the rows to write start too early for that window, all history.
    fn read_from(
        &self,
        port: &str,
        ds: NaiveDate,
        watermarks: &BTreeMap<String, NaiveDate>,
        cal: &dyn Calendar,
    ) -> Option<NaiveDate> {
        if !matches!(port, "bars" | "index" | "sentiment") {
            return None;
        }
        let from = self.emit_from(ds, watermarks.get("features").copied(), cal)?;
        let since = cal.add_trading_days(ds, -INCREMENTAL_HISTORY_DAYS);
        (cal.add_trading_days(from, -WARM_DAYS) >= since).then_some(since)
    }

    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.batches("bars")?;
        let index = if inputs.has("index") {
            Some(inputs.concat("index")?)
        } else {
            None
        };
        let sentiment = if inputs.has("sentiment") {
            Some(inputs.concat("sentiment")?)
        } else {
            None
        };
        let from = self.emit_from(
            ctx.ds,
            ctx.watermarks.get("features").copied(),
            ctx.calendar.as_ref(),
        );
        let out = compute_features(
            bars,
            index.as_ref(),
            sentiment.as_ref(),
            &self.p.index_code,
            self.p.with_targets,
            from,
        )?;
        let warm = out
            .column_by_name("warmup")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::BooleanArray>())
            .map(|b| b.true_count())
            .unwrap_or(0);
        ctx.counters.add("rows", out.num_rows() as i64);
        ctx.counters.add("warmup_rows", warm as i64);
        Ok(OutputBatches::new().with("features", vec![out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::FEATURES;

    #[test]
    fn the_features_doc_lists_exactly_the_computed_features_and_formulas() {
        let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/features.md");
        let doc = std::fs::read_to_string(doc_path).unwrap();
        let rows: Vec<(String, String)> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let (name, rest) = l.split_once("` | ")?;
                Some((name.to_string(), rest.strip_suffix(" |")?.to_string()))
            })
            .collect();
        let want: Vec<(String, String)> = FEATURES
            .iter()
            .map(|(n, f)| (n.to_string(), f.to_string()))
            .collect();
        assert_eq!(rows, want, "docs/features.md is out of date with FEATURES");
        let schema = tables::features_daily().schema;
        for (name, _) in FEATURES {
            assert!(
                schema.field_with_name(name).is_ok(),
                "{name} not in the table"
            );
        }
    }
}
