//! What `lgbm.train`'s models learn: the h-day return itself (`target: raw`) or its excess over
//! the day's cross-sectional median (`target: excess`), and the direction classes, which always
//! come from the raw return (the ±0.3% flat band is about the stock's own move).
//!
//! The excess target removes the part of a day's returns that every code shares (the market's
//! move), which a ranking across codes cannot use and which dominates a pooled regression's
//! squared error. The median of a date is taken over the codes of the training rows that have
//! a label on that date; it is defined only with at least [`MIN_CODES_FOR_EXCESS`] of them.
//! Labels for a date `t` only exist once `t + h` has closed, so the median of `t` uses no close
//! after `t + h`: the same bound the raw label has.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::FeatureRows;

/// Fewer labelled codes on a date: no excess label there (a median of two says little).
pub const MIN_CODES_FOR_EXCESS: usize = 5;

/// The regression's label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `close[t+h] / close[t] − 1`.
    #[default]
    Raw,
    /// The raw return minus the median raw return of the codes labelled on the same date.
    Excess,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Raw => "raw",
            Target::Excess => "excess",
        }
    }
}

/// Labels per horizon, aligned with the feature rows.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// What the return regression learns (raw or excess).
    pub regression: BTreeMap<u32, Vec<Option<f64>>>,
    /// The raw return the direction classes are cut from.
    pub direction: BTreeMap<u32, Vec<Option<f64>>>,
}

impl Labels {
    /// Builds both from the raw forward returns.
    pub fn new(target: Target, rows: &FeatureRows, raw: BTreeMap<u32, Vec<Option<f64>>>) -> Self {
        let regression = match target {
            Target::Raw => raw.clone(),
            Target::Excess => raw
                .iter()
                .map(|(&h, lab)| (h, excess(&rows.dates, lab)))
                .collect(),
        };
        Self {
            regression,
            direction: raw,
        }
    }
}

/// Each label minus the median label of its date (`None` where the date has fewer than
/// [`MIN_CODES_FOR_EXCESS`] labels).
pub fn excess(dates: &[i32], labels: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut by_date: HashMap<i32, Vec<f64>> = HashMap::new();
    for (d, l) in dates.iter().zip(labels) {
        if let Some(v) = l.filter(|v| v.is_finite()) {
            by_date.entry(*d).or_default().push(v);
        }
    }
    let medians: HashMap<i32, f64> = by_date
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_CODES_FOR_EXCESS)
        .map(|(d, mut v)| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let m = if n % 2 == 1 {
                v[n / 2]
            } else {
                0.5 * (v[n / 2 - 1] + v[n / 2])
            };
            (d, m)
        })
        .collect();
    dates
        .iter()
        .zip(labels)
        .map(|(d, l)| {
            let v = l.filter(|v| v.is_finite())?;
            medians.get(d).map(|m| v - m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_subtracts_the_median_of_the_same_date() {
        // Date 1: five codes (median 0.02); date 2: six codes (median of 0.0 and 0.1 = 0.05).
        let dates = [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        let labels = [
            0.05, 0.01, 0.02, -0.04, 0.03, 0.3, 0.0, 0.1, -0.2, 0.2, -0.1,
        ]
        .map(Some);
        let e = excess(&dates, &labels);
        let want = [
            0.03, -0.01, 0.0, -0.06, 0.01, 0.25, -0.05, 0.05, -0.25, 0.15, -0.15,
        ];
        for (got, want) in e.iter().zip(want) {
            let got = got.expect("labelled");
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn excess_needs_enough_labelled_codes_and_keeps_missing_labels_missing() {
        // Date 1 has four labels (one missing, one NaN among six rows): no median.
        let dates = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2];
        let labels = [
            Some(0.1),
            Some(0.2),
            None,
            Some(f64::NAN),
            Some(0.3),
            Some(0.4),
            Some(0.0),
            None,
            Some(0.01),
            Some(0.02),
            Some(0.03),
        ];
        assert!(excess(&dates, &labels).iter().take(6).all(Option::is_none));
        // Date 2: four labels as well.
        assert!(excess(&dates, &labels).iter().all(Option::is_none));
        let mut more = labels.to_vec();
        more[7] = Some(0.04);
        let e = excess(&dates, &more);
        assert_eq!(e[7], Some(0.04 - 0.02));
        assert_eq!(e[6], Some(-0.02));
    }

    #[test]
    fn the_direction_labels_stay_raw() {
        let rows = FeatureRows {
            codes: (0..5).map(|i| format!("C{i}")).collect(),
            dates: vec![7; 5],
            x: vec![0.0; 5],
            n_features: 1,
        };
        let raw: BTreeMap<u32, Vec<Option<f64>>> =
            [(1, [0.01, 0.02, 0.03, 0.04, 0.05].map(Some).to_vec())].into();
        let l = Labels::new(Target::Excess, &rows, raw.clone());
        assert_eq!(l.direction, raw);
        let r = &l.regression[&1];
        assert!((r[0].expect("labelled") + 0.02).abs() < 1e-12);
        assert_eq!(Labels::new(Target::Raw, &rows, raw.clone()).regression, raw);
    }
}
