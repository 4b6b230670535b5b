//! The naive baselines, made for exactly the (code, base_date, horizon) keys the models were
//! scored on, from closes on or before each base date (nothing later is read):
//! - always up, always down, always flat (always down is not in issue 16's list, but it is as
//!   naive as always up, and it is the better of the two in a range with more down days than
//!   up days: the 30 real tickers' 2019–2024 at 1 and 3 days);
//! - momentum: the direction of the base day's own return, carried forward;
//! - random walk: zero return, with a q10–q90 interval and P(up) from the trailing 60-day
//!   volatility of daily log returns.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use crate::input::{Close, Direction, Outcome};

pub const ALWAYS_UP: &str = "naive: always up";
pub const ALWAYS_DOWN: &str = "naive: always down";
pub const ALWAYS_FLAT: &str = "naive: always flat";
pub const MOMENTUM: &str = "naive: momentum";
pub const RANDOM_WALK: &str = "naive: random walk";

/// Every baseline's name, in report order.
pub const ALL: [&str; 5] = [ALWAYS_UP, ALWAYS_DOWN, ALWAYS_FLAT, MOMENTUM, RANDOM_WALK];

pub fn is_baseline(model: &str) -> bool {
    ALL.contains(&model)
}

/// Daily log returns in the volatility window.
const VOL_WINDOW: usize = 60;
/// Fewer returns than this and the volatility is not estimated.
const VOL_MIN: usize = 20;
/// The standard normal's 90% quantile.
const Z90: f64 = 1.281_551_565_544_600_4;

/// Closes per code in date order.
pub struct History {
    by_code: HashMap<String, Vec<(NaiveDate, f64)>>,
}

/// What is known of a code at a base day's close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtClose {
    /// The base day's return (close / previous close − 1).
    pub last_return: Option<f64>,
    /// The standard deviation of the last 60 daily log returns (at least 20).
    pub vol: Option<f64>,
}

impl History {
    pub fn new(closes: &[Close]) -> Self {
        let mut by_code: HashMap<String, BTreeMap<NaiveDate, f64>> = HashMap::new();
        for c in closes {
            by_code
                .entry(c.code.clone())
                .or_default()
                .insert(c.date, c.close);
        }
        Self {
            by_code: by_code
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
        }
    }

    /// The state at `date`'s close, from closes on or before `date` only; `None` if the code
    /// has no close on `date`.
    pub fn at(&self, code: &str, date: NaiveDate) -> Option<AtClose> {
        let series = self.by_code.get(code)?;
        let i = series.binary_search_by_key(&date, |(d, _)| *d).ok()?;
        let last_return = (i > 0).then(|| series[i].1 / series[i - 1].1 - 1.0);
        let start = i.saturating_sub(VOL_WINDOW);
        let rets: Vec<f64> = series[start..=i]
            .windows(2)
            .map(|w| (w[1].1 / w[0].1).ln())
            .collect();
        let vol = (rets.len() >= VOL_MIN).then(|| {
            let n = rets.len() as f64;
            let mean = rets.iter().sum::<f64>() / n;
            (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        });
        Some(AtClose { last_return, vol })
    }
}

/// The standard normal CDF (Abramowitz & Stegun 7.1.26 through erf; |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The baselines' rows for each distinct (code, base_date, horizon) of `scored` (its first row
/// per key gives the base close and the outcome). A key whose base day has no close in
/// `history` gets no momentum or random-walk row.
pub fn baselines(scored: &[Outcome], history: &History, band: f64) -> Vec<Outcome> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for o in scored {
        if !seen.insert((o.code.as_str(), o.base_date, o.horizon)) {
            continue;
        }
        let row = |model: &str, predicted: Direction| Outcome {
            model: model.to_string(),
            predicted,
            point: None,
            q10: None,
            q90: None,
            prob_up: None,
            ..o.clone()
        };
        out.push(row(ALWAYS_UP, Direction::Up));
        out.push(row(ALWAYS_DOWN, Direction::Down));
        out.push(row(ALWAYS_FLAT, Direction::Flat));
        let Some(at) = history.at(&o.code, o.base_date) else {
            continue;
        };
        if let Some(r) = at.last_return {
            out.push(Outcome {
                point: Some(o.base_close * (1.0 + r)),
                ..row(MOMENTUM, Direction::of_return(r, band))
            });
        }
        if let Some(vol) = at.vol {
            let s = vol * f64::from(o.horizon).sqrt();
            let up = if s > 0.0 {
                1.0 - normal_cdf((1.0 + band).ln() / s)
            } else {
                0.0
            };
            out.push(Outcome {
                point: Some(o.base_close),
                q10: Some(o.base_close * (-Z90 * s).exp()),
                q90: Some(o.base_close * (Z90 * s).exp()),
                prob_up: Some(up),
                ..row(RANDOM_WALK, Direction::Flat)
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(u64::from(day))
    }

    fn closes(code: &str, prices: &[f64]) -> Vec<Close> {
        prices
            .iter()
            .enumerate()
            .map(|(i, &close)| Close {
                code: code.into(),
                date: d(i as u32),
                close,
            })
            .collect()
    }

    fn scored(day: u32, base_close: f64) -> Outcome {
        Outcome {
            model: "ensemble".into(),
            code: "A".into(),
            base_date: d(day),
            horizon: 1,
            base_close,
            point: Some(base_close),
            q10: None,
            q90: None,
            predicted: Direction::Up,
            prob_up: Some(0.5),
            actual_return: 0.01,
            actual: Direction::Up,
        }
    }

    fn zigzag(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 100.0 * if i % 2 == 0 { 1.0 } else { 1.02 })
            .collect()
    }

    #[test]
    fn momentum_carries_the_base_days_own_return() {
        let h = History::new(&closes("A", &[100.0, 101.0, 100.0]));
        let rows = baselines(&[scored(1, 101.0), scored(2, 100.0)], &h, 0.003);
        let mom: Vec<&Outcome> = rows.iter().filter(|o| o.model == MOMENTUM).collect();
        assert_eq!(mom[0].predicted, Direction::Up);
        assert_eq!(mom[1].predicted, Direction::Down);
        assert!((mom[0].point.unwrap() - 102.01).abs() < 1e-9);
    }

    #[test]
    fn the_random_walk_interval_widens_with_the_horizon_and_covers_about_eighty_percent() {
        let h = History::new(&closes("A", &zigzag(80)));
        let at = h.at("A", d(79)).unwrap();
        let vol = at.vol.unwrap();
        assert!((vol - 0.02).abs() < 0.001, "{vol}");
        let mut five = scored(79, 102.0);
        five.horizon = 5;
        let rows = baselines(&[scored(79, 102.0), five], &h, 0.003);
        let rw: Vec<&Outcome> = rows.iter().filter(|o| o.model == RANDOM_WALK).collect();
        let width = |o: &Outcome| o.q90.unwrap() / o.q10.unwrap();
        assert!(width(rw[1]) > width(rw[0]));
        assert_eq!(rw[0].predicted, Direction::Flat);
        // P(up) of a zero-drift walk is just under one half (the flat band takes the middle).
        let p = rw[0].prob_up.unwrap();
        assert!(p > 0.4 && p < 0.5, "{p}");
        assert!((normal_cdf(Z90) - 0.9).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn baselines_at_a_date_ignore_every_later_close() {
        let base = closes("A", &zigzag(70));
        let mut later = base.clone();
        later.extend((70..90).map(|i| Close {
            code: "A".into(),
            date: d(i),
            close: 500.0 + f64::from(i),
        }));
        let key = [scored(65, base[65].close)];
        assert_eq!(
            baselines(&key, &History::new(&base), 0.003),
            baselines(&key, &History::new(&later), 0.003)
        );
    }

    #[test]
    fn a_short_history_gets_no_random_walk_and_a_missing_close_no_momentum() {
        let h = History::new(&closes("A", &[100.0, 101.0, 102.0]));
        let rows = baselines(&[scored(2, 102.0), scored(9, 102.0)], &h, 0.003);
        let names: Vec<&str> = rows.iter().map(|o| o.model.as_str()).collect();
        assert_eq!(
            names,
            [
                ALWAYS_UP,
                ALWAYS_DOWN,
                ALWAYS_FLAT,
                MOMENTUM,
                ALWAYS_UP,
                ALWAYS_DOWN,
                ALWAYS_FLAT
            ]
        );
    }
}
