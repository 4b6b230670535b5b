//! The difference in hit rate between a model and a baseline on the same forecasts, with a
//! moving-block bootstrap 95% interval over trading days: returns are correlated across codes
//! on one day and across neighbouring days, so days (in blocks), not rows, are resampled.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use crate::input::Outcome;

/// How the bootstrap resamples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Consecutive trading days per block (circular).
    pub block_days: usize,
    pub resamples: usize,
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            block_days: 10,
            resamples: 2000,
            seed: 20_190_102,
        }
    }
}

/// Model hit rate minus baseline hit rate on their common forecasts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HitDiff {
    pub model: String,
    pub baseline: String,
    pub horizon: u32,
    /// Forecasts both made.
    pub n: usize,
    pub days: usize,
    pub model_hit_rate: f64,
    pub baseline_hit_rate: f64,
    pub diff: f64,
    /// The 2.5% and 97.5% percentiles of the bootstrapped difference.
    pub ci_low: f64,
    pub ci_high: f64,
    /// The share of resamples with a difference ≤ 0 (a one-sided bootstrap p-value).
    pub p_not_better: f64,
}

/// SplitMix64: a small, seeded, reproducible generator (the report must not change between
/// runs on the same lake).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The paired difference of `model` against `baseline` (rows of one horizon each); `None`
/// when they share no forecast.
pub fn hit_diff(
    model: &[&Outcome],
    baseline: &[&Outcome],
    cfg: &BootstrapConfig,
) -> Option<HitDiff> {
    let base: HashMap<(&str, NaiveDate), bool> = baseline
        .iter()
        .map(|o| ((o.code.as_str(), o.base_date), o.hit()))
        .collect();
    // Per day: (model hits − baseline hits, model hits, forecasts).
    let mut days: BTreeMap<NaiveDate, (f64, f64, f64)> = BTreeMap::new();
    for o in model {
        let Some(&b) = base.get(&(o.code.as_str(), o.base_date)) else {
            continue;
        };
        let m = f64::from(u8::from(o.hit()));
        let e = days.entry(o.base_date).or_default();
        e.0 += m - f64::from(u8::from(b));
        e.1 += m;
        e.2 += 1.0;
    }
    let first = model.first()?;
    let daily: Vec<(f64, f64)> = days.values().map(|&(d, _, n)| (d, n)).collect();
    let (diff_sum, hits, n) = days
        .values()
        .fold((0.0, 0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
    if n == 0.0 {
        return None;
    }
    let diff = diff_sum / n;
    let mut rng = SplitMix(cfg.seed);
    let len = daily.len();
    let block = cfg.block_days.clamp(1, len);
    let mut stats: Vec<f64> = (0..cfg.resamples.max(1))
        .map(|_| {
            let (mut d, mut c, mut taken) = (0.0, 0.0, 0);
            while taken < len {
                let start = rng.below(len);
                for k in 0..block.min(len - taken) {
                    let (dd, nn) = daily[(start + k) % len];
                    d += dd;
                    c += nn;
                }
                taken += block;
            }
            if c > 0.0 { d / c } else { 0.0 }
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let not_better = stats.iter().filter(|s| **s <= 0.0).count();
    Some(HitDiff {
        model: first.model.clone(),
        baseline: baseline
            .first()
            .map(|o| o.model.clone())
            .unwrap_or_default(),
        horizon: first.horizon,
        n: n as usize,
        days: len,
        model_hit_rate: hits / n,
        baseline_hit_rate: (hits - diff_sum) / n,
        diff,
        ci_low: percentile(&stats, 0.025),
        ci_high: percentile(&stats, 0.975),
        p_not_better: not_better as f64 / stats.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Direction;

    fn row(model: &str, code: usize, day: u64, hit: bool) -> Outcome {
        Outcome {
            model: model.into(),
            code: format!("{code:06}"),
            base_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(day),
            horizon: 1,
            base_close: 100.0,
            point: None,
            q10: None,
            q90: None,
            predicted: if hit { Direction::Up } else { Direction::Down },
            prob_up: None,
            actual_return: 0.01,
            actual: Direction::Up,
        }
    }

    /// A deterministic pseudo-random hit pattern with the given rate.
    fn hits(model: &str, rate: f64, salt: u64) -> Vec<Outcome> {
        let mut g = SplitMix(salt);
        (0..250)
            .flat_map(|day| (0..30).map(move |code| (day, code)))
            .map(|(day, code)| row(model, code, day, (g.next() % 1000) as f64 / 1000.0 < rate))
            .collect()
    }

    #[test]
    fn a_model_that_is_better_has_an_interval_above_zero() {
        let (m, b) = (hits("m", 0.56, 1), hits("b", 0.50, 2));
        let d = hit_diff(
            &m.iter().collect::<Vec<_>>(),
            &b.iter().collect::<Vec<_>>(),
            &BootstrapConfig::default(),
        )
        .unwrap();
        assert_eq!((d.n, d.days), (7500, 250));
        assert!(d.diff > 0.04 && d.diff < 0.08, "{d:?}");
        assert!(
            d.ci_low > 0.0 && d.ci_high > d.diff && d.ci_low < d.diff,
            "{d:?}"
        );
        assert!(d.p_not_better < 0.01);
    }

    #[test]
    fn a_model_no_better_than_the_baseline_has_an_interval_around_zero() {
        let (m, b) = (hits("m", 0.5, 3), hits("b", 0.5, 4));
        let d = hit_diff(
            &m.iter().collect::<Vec<_>>(),
            &b.iter().collect::<Vec<_>>(),
            &BootstrapConfig::default(),
        )
        .unwrap();
        assert!(d.ci_low < 0.0 && d.ci_high > 0.0, "{d:?}");
    }

    #[test]
    fn blocks_widen_the_interval_when_days_are_correlated() {
        // Whole days hit or miss together (a market-wide move): the rows are not independent,
        // so the day-level bootstrap is wider than the row count alone would suggest.
        let mut g = SplitMix(9);
        let day_hit: Vec<bool> = (0..250).map(|_| g.next().is_multiple_of(2)).collect();
        let m: Vec<Outcome> = (0..250u64)
            .flat_map(|day| (0..30).map(move |c| (day, c)))
            .map(|(day, c)| row("m", c, day, day_hit[day as usize]))
            .collect();
        let b: Vec<Outcome> = m
            .iter()
            .map(|o| Outcome {
                model: "b".into(),
                predicted: Direction::Flat,
                ..o.clone()
            })
            .collect();
        let d = hit_diff(
            &m.iter().collect::<Vec<_>>(),
            &b.iter().collect::<Vec<_>>(),
            &BootstrapConfig::default(),
        )
        .unwrap();
        // A row-level standard error would be sqrt(0.25 / 7500) = 0.006; by day it is ~0.032.
        assert!(d.ci_high - d.ci_low > 0.08, "{d:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let (m, b) = (hits("m", 0.52, 5), hits("b", 0.5, 6));
        let (m, b): (Vec<_>, Vec<_>) = (m.iter().collect(), b.iter().collect());
        let cfg = BootstrapConfig::default();
        assert_eq!(hit_diff(&m, &b, &cfg), hit_diff(&m, &b, &cfg));
        assert!(hit_diff(&m, &[], &cfg).is_none());
    }
}
