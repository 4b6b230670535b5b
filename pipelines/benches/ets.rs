//! The embedded ETS member against the implementation it replaced, on the same series.
//!
//! AutoETS (additive error, no/additive/damped trend, by AICc, on log closes) for every code
//! of the full-market panel with a bar on 2019-09-17, each series its last <= 250 closes as
//! `forecast.ets` builds them (`closes_as_of`): krxflow's own (`krxflow_models::ets`, with its
//! searches run four in lockstep as `forecast.ets` runs them, and one at a time) against
//! augurs-ets 0.10.3, a port of statsforecast's AutoETS, on one thread each, 5 timed runs
//! after a warm-up; min / median / max and the ratio of medians. Before timing, both must
//! agree on every series: the same model selected and the one-step log mean within 1e-6; and
//! the lockstep fits must be bit for bit the one-at-a-time fits.
//!
//! Input: `../shared/data` (or `KRXFLOW_DATA`); skipped with a message when absent.
//! Run: `cargo bench -p krxflow-pipelines --bench ets`.

use std::time::Instant;

use augurs_core::{Fit, Predict};
use augurs_ets::model::TrendComponent;
use chrono::NaiveDate;
use krxflow_models::ets::{self, model::Trend};
use krxflow_pipelines::forecast::quantiles::closes_as_of;
use krxflow_pipelines::ingest::ohlcv::bars_batch;

mod common;
use common::{Stats, full_market_panel, machine, read_panel, shared_data};

const RUNS: usize = 5;
const CONTEXT: usize = 250;

fn main() {
    let Some(panel) = full_market_panel(&shared_data()) else {
        return;
    };
    println!("{}", machine());
    let ds = NaiveDate::from_ymd_opt(2019, 9, 17).expect("date");
    let collected = read_panel(&panel).expect("the panel parses");
    let bars = bars_batch(&collected.bars, "panel").expect("bars batch");
    let series: Vec<Vec<f64>> = closes_as_of(std::slice::from_ref(&bars), ds, &[])
        .expect("closes")
        .into_values()
        .filter(|v| v.len() >= 60)
        .map(|v| {
            let tail = &v[v.len().saturating_sub(CONTEXT)..];
            tail.iter().map(|(_, c)| c.ln()).collect()
        })
        .collect();
    let points: usize = series.iter().map(Vec::len).sum();
    println!(
        "\n## AutoETS on {} full-market series as of {ds} ({points} log closes, <= {CONTEXT} each)",
        series.len()
    );

    // Agreement first: the same model and the same one-step mean on every series.
    let mut classes = [0usize; 3];
    let (mut disagree, mut worst): (usize, f64) = (0, 0.0);
    let mut unfit = 0usize;
    let mut fitted_by_both = Vec::with_capacity(series.len());
    for y in series {
        // A series either side cannot fit is counted and left out of the timing (both sides
        // then run on the same series).
        let spec = augurs_ets::AutoETS::new(1, "AZN").expect("a valid spec literal");
        let (Ok(ours), Ok(theirs)) = (ets::select(&y), spec.fit(&y)) else {
            unfit += 1;
            continue;
        };
        let m = theirs.model();
        let class = match (m.model_type().trend, m.damped()) {
            (TrendComponent::None, _) => Trend::None,
            (_, false) => Trend::Additive,
            (_, true) => Trend::Damped,
        };
        classes[Trend::ALL
            .iter()
            .position(|t| *t == ours.trend)
            .unwrap_or(0)] += 1;
        disagree += usize::from(class != ours.trend);
        let mean = ets::model::forecast_mean(ours.params, ours.last, 1)[0];
        match theirs
            .predict(1, None)
            .ok()
            .and_then(|f| f.point.first().copied())
        {
            Some(reference) => worst = worst.max((mean - reference).abs()),
            None => disagree += 1,
        }
        fitted_by_both.push(y);
    }
    let series = fitted_by_both;
    println!(
        "agreement: models selected (ANN, AAN, AAdN) {classes:?}; {disagree} of {} series \
         select a different model; largest one-step log-mean difference {worst:.1e}; \
         {unfit} series left out (not fitted by one side)",
        series.len()
    );
    assert!(
        disagree * 100 <= series.len() && worst < 1e-6 && unfit * 100 <= series.len(),
        "the two implementations disagree: {disagree} models, {worst:e}"
    );

    // The lockstep path (`select_many`, what `forecast.ets` runs) must select and fit exactly
    // what one search at a time does.
    let slices: Vec<&[f64]> = series.iter().map(Vec::as_slice).collect();
    let many = ets::select_many(&slices);
    let same = many
        .iter()
        .zip(&slices)
        .filter(|(m, y)| **m == ets::select(y))
        .count();
    println!(
        "lockstep: {same} of {} series fitted bit for bit as one search at a time",
        series.len()
    );
    assert_eq!(same, series.len(), "select_many differs from select");

    // Alternate the three so drift in machine load favours none.
    let (mut native, mut lockstep, mut augurs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=RUNS {
        let t = Instant::now();
        for y in &series {
            let f = ets::select(y).expect("fitted in the agreement pass");
            std::hint::black_box(ets::model::forecast_mean(f.params, f.last, 5));
            std::hint::black_box(ets::model::variance_multipliers(f.params, 5));
        }
        let a = t.elapsed();
        let t = Instant::now();
        for f in ets::select_many(&slices) {
            let f = f.expect("fitted in the agreement pass");
            std::hint::black_box(ets::model::forecast_mean(f.params, f.last, 5));
            std::hint::black_box(ets::model::variance_multipliers(f.params, 5));
        }
        let l = t.elapsed();
        let t = Instant::now();
        for y in &series {
            let fitted = augurs_ets::AutoETS::new(1, "AZN")
                .expect("a valid spec literal")
                .fit(y)
                .expect("fitted in the agreement pass");
            std::hint::black_box(fitted.predict(5, 0.8).ok());
        }
        let b = t.elapsed();
        if run > 0 {
            native.push(a);
            lockstep.push(l);
            augurs.push(b);
        }
    }
    let (native, lockstep, augurs) = (Stats::of(&native), Stats::of(&lockstep), Stats::of(&augurs));
    println!("krxflow ets, searches in lockstep (forecast.ets): {lockstep}");
    println!("krxflow ets, one search at a time: {native}");
    println!("augurs-ets 0.10.3 (fit + select + predict): {augurs}");
    let ratio = |peer: &Stats| peer.median.as_secs_f64() / lockstep.median.as_secs_f64();
    println!(
        "krxflow (lockstep) faster by {:.2}x than augurs-ets and {:.2}x than one search at a \
         time (medians, one thread, {} series)",
        ratio(&augurs),
        ratio(&native),
        series.len()
    );
}
