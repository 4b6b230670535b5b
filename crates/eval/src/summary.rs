//! One row per (model, horizon): the scalar metrics of the report's tables.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::calibration::Calibration;
use crate::cross_section::SeriesStats;
use crate::input::Outcome;

/// What a row describes: the ensemble, one of its members, or a naive baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ensemble,
    Member,
    Baseline,
}

impl Kind {
    pub fn of(model: &str) -> Self {
        if model == "ensemble" {
            Self::Ensemble
        } else if crate::baselines::is_baseline(model) {
            Self::Baseline
        } else {
            Self::Member
        }
    }
}

/// Metrics in return units (prices divided by the base close) so codes compare; a metric a
/// model cannot have (an interval for "always up") is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub horizon: u32,
    pub model: String,
    pub kind: Kind,
    pub n: usize,
    pub days: usize,
    pub hit_rate: f64,
    pub mae_return: Option<f64>,
    pub pinball_q10: Option<f64>,
    pub pinball_q50: Option<f64>,
    pub pinball_q90: Option<f64>,
    pub coverage: Option<f64>,
    /// Mean (q90 − q10) / base close.
    pub width: Option<f64>,
    /// q10–q90 coverage in the lowest, middle and highest third of trailing 60-day volatility.
    pub coverage_low_vol: Option<f64>,
    pub coverage_mid_vol: Option<f64>,
    pub coverage_high_vol: Option<f64>,
    /// q10–q90 coverage of the forecasts made in the 60 trading days from the range's largest
    /// drawdown's peak ([`crate::drawdown`]).
    pub coverage_drawdown: Option<f64>,
    pub brier: Option<f64>,
    pub brier_reliability: Option<f64>,
    pub brier_resolution: Option<f64>,
    pub brier_uncertainty: Option<f64>,
    pub rank_ic: Option<f64>,
    pub rank_ic_sd: Option<f64>,
    pub icir: Option<f64>,
    pub rank_ic_t: Option<f64>,
    pub ic_days: Option<usize>,
    /// Mean daily top-minus-bottom quintile h-day return (gross: no costs).
    pub long_short_mean: Option<f64>,
    pub long_short_t: Option<f64>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn pinball(q: f64, tau: f64, y: f64) -> f64 {
    let d = y - q;
    (tau * d).max((tau - 1.0) * d)
}

/// Volatility tercile (0, 1, 2) of each (code, base_date), from the cut points of all keys.
pub struct VolTerciles {
    pub vol: HashMap<(String, NaiveDate), f64>,
    pub cuts: [f64; 2],
}

impl VolTerciles {
    pub fn new(vol: HashMap<(String, NaiveDate), f64>) -> Self {
        let mut v: Vec<f64> = vol.values().copied().collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        let cuts = [at(1.0 / 3.0), at(2.0 / 3.0)];
        Self { vol, cuts }
    }

    pub fn of(&self, o: &Outcome) -> Option<usize> {
        let v = *self.vol.get(&(o.code.clone(), o.base_date))?;
        Some(if v < self.cuts[0] {
            0
        } else if v < self.cuts[1] {
            1
        } else {
            2
        })
    }
}

/// The summary of one model's rows at one horizon (`rows` non-empty).
pub fn summarise(
    rows: &[&Outcome],
    calibration: Option<&Calibration>,
    ic: Option<SeriesStats>,
    long_short: Option<SeriesStats>,
    terciles: &VolTerciles,
    drawdown: Option<&crate::drawdown::Drawdown>,
) -> Summary {
    let first = rows[0];
    let days = rows
        .iter()
        .map(|o| o.base_date)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let ret = |o: &Outcome, p: f64| p / o.base_close - 1.0;
    let interval = || rows.iter().filter_map(|o| Some((o, o.q10?, o.q90?)));
    let covered = |o: &Outcome, lo: f64, hi: f64| {
        let actual = o.base_close * (1.0 + o.actual_return);
        f64::from(u8::from(lo <= actual && actual <= hi))
    };
    let coverage_in = |t: usize| {
        mean(
            interval()
                .filter(|(o, _, _)| terciles.of(o) == Some(t))
                .map(|(o, lo, hi)| covered(o, lo, hi)),
        )
    };
    Summary {
        horizon: first.horizon,
        model: first.model.clone(),
        kind: Kind::of(&first.model),
        n: rows.len(),
        days,
        hit_rate: rows.iter().filter(|o| o.hit()).count() as f64 / rows.len() as f64,
        mae_return: mean(
            rows.iter()
                .filter_map(|o| Some((ret(o, o.point?) - o.actual_return).abs())),
        ),
        pinball_q10: mean(interval().map(|(o, lo, _)| pinball(ret(o, lo), 0.1, o.actual_return))),
        pinball_q50: mean(
            rows.iter()
                .filter_map(|o| Some(pinball(ret(o, o.point?), 0.5, o.actual_return))),
        ),
        pinball_q90: mean(interval().map(|(o, _, hi)| pinball(ret(o, hi), 0.9, o.actual_return))),
        coverage: mean(interval().map(|(o, lo, hi)| covered(o, lo, hi))),
        width: mean(interval().map(|(o, lo, hi)| (hi - lo) / o.base_close)),
        coverage_low_vol: coverage_in(0),
        coverage_mid_vol: coverage_in(1),
        coverage_high_vol: coverage_in(2),
        coverage_drawdown: drawdown.and_then(|dd| {
            mean(
                interval()
                    .filter(|(o, _, _)| dd.contains(o.base_date))
                    .map(|(o, lo, hi)| covered(o, lo, hi)),
            )
        }),
        brier: calibration.map(|c| c.brier),
        brier_reliability: calibration.map(|c| c.reliability),
        brier_resolution: calibration.map(|c| c.resolution),
        brier_uncertainty: calibration.map(|c| c.uncertainty),
        rank_ic: ic.map(|s| s.mean),
        rank_ic_sd: ic.map(|s| s.sd),
        icir: ic.map(|s| s.ratio),
        rank_ic_t: ic.map(|s| s.t),
        ic_days: ic.map(|s| s.days),
        long_short_mean: long_short.map(|s| s.mean),
        long_short_t: long_short.map(|s| s.t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Direction;

    fn row(point: f64, q10: f64, q90: f64, actual_return: f64) -> Outcome {
        Outcome {
            model: "lgbm".into(),
            code: "A".into(),
            base_date: NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(),
            horizon: 3,
            base_close: 100.0,
            point: Some(point),
            q10: Some(q10),
            q90: Some(q90),
            predicted: Direction::Up,
            prob_up: None,
            actual_return,
            actual: Direction::of_return(actual_return, 0.003),
        }
    }

    #[test]
    fn errors_and_interval_metrics_are_in_return_units() {
        let rows = [row(102.0, 98.0, 104.0, 0.01), row(101.0, 99.0, 103.0, 0.05)];
        let refs: Vec<&Outcome> = rows.iter().collect();
        let s = summarise(
            &refs,
            None,
            None,
            None,
            &VolTerciles::new(HashMap::new()),
            None,
        );
        assert_eq!((s.n, s.days, s.kind), (2, 1, Kind::Member));
        assert_eq!(s.hit_rate, 1.0);
        assert!((s.mae_return.unwrap() - (0.01 + 0.04) / 2.0).abs() < 1e-12);
        assert!((s.coverage.unwrap() - 0.5).abs() < 1e-12);
        assert!((s.width.unwrap() - 0.05).abs() < 1e-12);
        // q90 = +3% against +5%: 0.9 × 0.02; +4% against +1%: 0.1 × 0.03.
        assert!((s.pinball_q90.unwrap() - (0.003 + 0.018) / 2.0).abs() < 1e-12);
        assert_eq!(s.coverage_low_vol, None);
    }

    #[test]
    fn coverage_is_split_by_volatility_tercile() {
        let mut rows = Vec::new();
        let mut vol = HashMap::new();
        for i in 0..9u64 {
            let mut o = row(100.0, 99.0, 101.0, if i < 3 { 0.0 } else { 0.05 });
            o.base_date = o.base_date + chrono::Days::new(i);
            vol.insert((o.code.clone(), o.base_date), i as f64);
            rows.push(o);
        }
        let t = VolTerciles::new(vol);
        let s = summarise(&rows.iter().collect::<Vec<_>>(), None, None, None, &t, None);
        assert_eq!(
            (s.coverage_low_vol, s.coverage_mid_vol, s.coverage_high_vol),
            (Some(1.0), Some(0.0), Some(0.0))
        );
    }
}
