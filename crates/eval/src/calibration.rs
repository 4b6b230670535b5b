//! How well P(up) is calibrated: the Brier score, its Murphy decomposition
//! (reliability − resolution + uncertainty) and the reliability diagram's bins.

use serde::Serialize;

use crate::input::{Direction, Outcome};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub low: f64,
    pub high: f64,
    pub n: usize,
    pub mean_prob: f64,
    /// The share of these forecasts whose outcome was up.
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub n: usize,
    pub brier: f64,
    /// Σ n_k (p̄_k − ō_k)² / N: lower is better calibrated.
    pub reliability: f64,
    /// Σ n_k (ō_k − ō)² / N: higher separates up days from the rest better.
    pub resolution: f64,
    /// ō (1 − ō): the Brier score of always forecasting the base rate.
    pub uncertainty: f64,
    pub bins: Vec<Bin>,
}

/// Calibration of the rows that carry a P(up), in `bins` equal-width bins; `None` if none do.
pub fn calibration(rows: &[&Outcome], bins: usize) -> Option<Calibration> {
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|o| {
            o.prob_up
                .map(|p| (p, f64::from(u8::from(o.actual == Direction::Up))))
        })
        .collect();
    if pairs.is_empty() || bins == 0 {
        return None;
    }
    let n = pairs.len() as f64;
    let brier = pairs.iter().map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n;
    let base = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let mut acc = vec![(0usize, 0.0, 0.0); bins];
    for (p, y) in &pairs {
        let k = ((p * bins as f64) as usize).min(bins - 1);
        acc[k].0 += 1;
        acc[k].1 += p;
        acc[k].2 += y;
    }
    let (mut rel, mut res) = (0.0, 0.0);
    let mut out = Vec::new();
    for (k, &(c, sp, sy)) in acc.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (pk, ok) = (sp / c as f64, sy / c as f64);
        rel += c as f64 * (pk - ok).powi(2);
        res += c as f64 * (ok - base).powi(2);
        out.push(Bin {
            low: k as f64 / bins as f64,
            high: (k + 1) as f64 / bins as f64,
            n: c,
            mean_prob: pk,
            observed: ok,
        });
    }
    Some(Calibration {
        n: pairs.len(),
        brier,
        reliability: rel / n,
        resolution: res / n,
        uncertainty: base * (1.0 - base),
        bins: out,
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn row(p: f64, up: bool) -> Outcome {
        Outcome {
            model: "m".into(),
            code: "A".into(),
            base_date: NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            horizon: 1,
            base_close: 1.0,
            point: None,
            q10: None,
            q90: None,
            predicted: Direction::Up,
            prob_up: Some(p),
            actual_return: 0.0,
            actual: if up { Direction::Up } else { Direction::Down },
        }
    }

    #[test]
    fn the_decomposition_adds_up_when_each_bin_holds_one_forecast_value() {
        let rows: Vec<Outcome> = [
            (0.2, false),
            (0.2, false),
            (0.2, true),
            (0.8, true),
            (0.8, true),
            (0.8, false),
        ]
        .iter()
        .map(|&(p, y)| row(p, y))
        .collect();
        let c = calibration(&rows.iter().collect::<Vec<_>>(), 10).unwrap();
        assert!((c.brier - (c.reliability - c.resolution + c.uncertainty)).abs() < 1e-12);
        assert_eq!(c.bins.len(), 2);
        assert!((c.bins[0].observed - 1.0 / 3.0).abs() < 1e-12);
        assert!((c.uncertainty - 0.25).abs() < 1e-12);
    }

    #[test]
    fn perfectly_calibrated_forecasts_have_zero_reliability_and_certainty_one_goes_in_the_top_bin()
    {
        let rows: Vec<Outcome> = [(1.0, true), (1.0, true), (0.0, false)]
            .iter()
            .map(|&(p, y)| row(p, y))
            .collect();
        let c = calibration(&rows.iter().collect::<Vec<_>>(), 10).unwrap();
        assert_eq!((c.brier, c.reliability), (0.0, 0.0));
        assert_eq!(c.bins.last().unwrap().low, 0.9);
        assert!(calibration(&[], 10).is_none());
    }
}
