//! What `lgbm.train`'s models learn: the h-day return itself (`target: raw`), its excess over
//! the day's cross-sectional median (`target: excess`) or its rank among the day's codes
//! (`target: rank`), and the direction classes, which always come from the raw return (the
//! ±0.3% flat band is about the stock's own move).
//!
//! The excess target removes the part of a day's returns that every code shares (the market's
//! move), which a ranking across codes cannot use and which dominates a pooled regression's
//! squared error. The median of a date is taken over the codes of the training rows that have
//! a label on that date; it is defined only with at least [`MIN_CODES_FOR_EXCESS`] of them.
//! Labels for a date `t` only exist once `t + h` has closed, so the median of `t` uses no close
//! after `t + h`: the same bound the raw label has. The rank target goes further: a pooled
//! squared error on raw or excess returns is ruled by the few largest moves, so the trees
//! chase them (on the 30 real tickers such models ordered the codes no better than chance);
//! ranks weigh every code's day alike.

use std::collections::{BTreeMap, HashMap};

use krxflow_eval::cross_section::ranks;
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
    /// The raw return's centred rank among the codes labelled on the same date, in (−½, ½)
    /// (Qlib's `CSRankNorm` label): what a ranking across codes needs, free of the market's
    /// move and of fat tails. The model's score is mapped back to a return by [`ReturnMap`].
    Rank,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Raw => "raw",
            Target::Excess => "excess",
            Target::Rank => "rank",
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
            Target::Rank => raw
                .iter()
                .map(|(&h, lab)| (h, centred_rank(&rows.dates, lab)))
                .collect(),
        };
        Self {
            regression,
            direction: raw,
        }
    }
}

/// Finite labels grouped by date: (date, [(row, label)]).
fn by_date(dates: &[i32], labels: &[Option<f64>]) -> HashMap<i32, Vec<(usize, f64)>> {
    let mut out: HashMap<i32, Vec<(usize, f64)>> = HashMap::new();
    for (i, (d, l)) in dates.iter().zip(labels).enumerate() {
        if let Some(v) = l.filter(|v| v.is_finite()) {
            out.entry(*d).or_default().push((i, v));
        }
    }
    out
}

/// Each label's centred rank among its date's labels: `(rank − ½) / n − ½` with 1-based
/// ranks and ties sharing their mean rank (`None` where the date has fewer than
/// [`MIN_CODES_FOR_EXCESS`] labels).
pub fn centred_rank(dates: &[i32], labels: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut out = vec![None; labels.len()];
    for (_, group) in by_date(dates, labels) {
        if group.len() < MIN_CODES_FOR_EXCESS {
            continue;
        }
        let values: Vec<f64> = group.iter().map(|g| g.1).collect();
        for (&(row, _), u) in group.iter().zip(centred_ranks(&values)) {
            out[row] = Some(u);
        }
    }
    out
}

/// The centred ranks `(rank − ½) / n − ½` of `values` (finite), in their order, ties sharing
/// their mean rank; they sum to 0.
fn centred_ranks(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    ranks(values)
        .into_iter()
        .map(|rank| (rank - 0.5) / n - 0.5)
        .collect()
}

/// How a `target: rank` model's score becomes a return: `intercept + slope × score`.
///
/// The score estimates a return's centred rank among its day's codes, so the slope is that of
/// the returns on their *own* centred ranks within each validation date (both centred on
/// their date's means, least squares): the return a rank is worth in that period, positive
/// whenever the day's returns differ. The intercept puts the line through the mean return at
/// the mean score. A score that ranks well maps to returns spread like the realised ones in
/// proportion to its confidence; how well the scores ranked lately is not this map's to judge
/// but the ensemble's, which weighs each member by its Rank IC on matured outcomes
/// (`ensemble/rank_skill.rs`).
///
/// Until session 21 the slope was fitted on the (score, return) pairs of the validation rows
/// and floored at 0. Over 150 validation dates that fit is noise for a model whose daily Rank
/// IC is ~0.05: it came out at 0 for one weekly model in eight at 1 day and one in five at 5
/// days on the six-year walk-forward, and every code then got the same forecast for the week
/// although the scores still ranked them (a daily Rank IC of 0.015-0.06 on those weeks).
/// Without a date holding two codes (a model of one code) the returns have no ranks: the
/// slope is then that of the returns on the scores over the dates, floored at 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReturnMap {
    pub intercept: f64,
    pub slope: f64,
}

impl ReturnMap {
    /// Fits the line on the rows of `dates` with a finite score and return; `None` with fewer
    /// than two of them.
    pub fn fit(dates: &[i32], scores: &[f64], returns: &[f64]) -> Option<Self> {
        let mut by_day: BTreeMap<i32, Vec<(f64, f64)>> = BTreeMap::new();
        for ((&d, &s), &r) in dates.iter().zip(scores).zip(returns) {
            if s.is_finite() && r.is_finite() {
                by_day.entry(d).or_default().push((s, r));
            }
        }
        let pairs: Vec<(f64, f64)> = by_day.values().flatten().copied().collect();
        if pairs.len() < 2 {
            return None;
        }
        let (ms, mr) = means(&pairs);
        let slope = if by_day.values().any(|day| day.len() >= 2) {
            slope_on_own_ranks(by_day.values())
        } else {
            let (sxy, sxx) = pairs.iter().fold((0.0, 0.0), |(xy, xx), (s, r)| {
                (xy + (s - ms) * (r - mr), xx + (s - ms) * (s - ms))
            });
            if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 }
        };
        Some(Self {
            intercept: mr - slope * ms,
            slope,
        })
    }

    pub fn apply(&self, score: f64) -> f64 {
        self.intercept + self.slope * score
    }
}

/// The least-squares slope of each date's returns on their centred ranks `(rank − ½) / n − ½`
/// (ties sharing their mean rank), pooled over the dates; 0 when no date's returns differ.
/// A date's centred ranks sum to 0, so they need no centring, and the returns' own ranks
/// never slope down.
fn slope_on_own_ranks<'a>(days: impl Iterator<Item = &'a Vec<(f64, f64)>>) -> f64 {
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for day in days {
        let returns: Vec<f64> = day.iter().map(|p| p.1).collect();
        for (r, u) in returns.iter().zip(centred_ranks(&returns)) {
            sxy += u * r;
            sxx += u * u;
        }
    }
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// The means of the scores and of the returns.
fn means(pairs: &[(f64, f64)]) -> (f64, f64) {
    let n = pairs.len() as f64;
    pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (s, r)| (a + s / n, b + r / n))
}

/// Each label minus the median label of its date (`None` where the date has fewer than
/// [`MIN_CODES_FOR_EXCESS`] labels).
pub fn excess(dates: &[i32], labels: &[Option<f64>]) -> Vec<Option<f64>> {
    let medians: HashMap<i32, f64> = by_date(dates, labels)
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_CODES_FOR_EXCESS)
        .map(|(d, g)| {
            let mut v: Vec<f64> = g.into_iter().map(|(_, v)| v).collect();
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

    #[test]
    fn rank_labels_are_centred_per_date_with_ties_sharing_their_rank() {
        // Date 1: five codes, two tied; date 2: four codes (too few: no labels).
        let dates = [1, 1, 1, 1, 1, 2, 2, 2, 2];
        let labels = [0.05, -0.01, 0.02, 0.02, 0.30, 0.1, 0.2, 0.3, 0.4].map(Some);
        let r = centred_rank(&dates, &labels);
        // Ranks 4, 1, 2.5, 2.5, 5 of 5: (rank - 0.5) / 5 - 0.5.
        let want = [0.2, -0.4, -0.1, -0.1, 0.4];
        for (got, want) in r.iter().zip(want) {
            assert!(
                (got.expect("ranked") - want).abs() < 1e-12,
                "{got:?} vs {want}"
            );
        }
        assert!(r[5..].iter().all(Option::is_none));
        // A missing or NaN label is neither ranked nor counted.
        let mut gaps = labels;
        gaps[0] = None;
        gaps[1] = Some(f64::NAN);
        assert!(centred_rank(&dates, &gaps).iter().all(Option::is_none));
    }

    #[test]
    fn the_return_map_prices_a_rank_at_what_the_validation_days_paid_for_one() {
        // Two days of five codes: 1% a rank step apart (0.2 of a centred rank) on day 1, 2% on
        // day 2; the scores (any order) set only the intercept.
        let days = [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        let returns = [
            0.01,
            -0.01,
            0.0,
            0.02,
            -0.02,
            0.04,
            -0.04,
            0.0,
            -0.02,
            0.02,
            f64::NAN,
        ];
        let scores = [0.1, 0.0, 0.0, -0.1, 0.0, 0.0, 0.1, 0.0, 0.0, -0.1, 0.3];
        let m = ReturnMap::fit(&days, &scores, &returns).expect("fitted");
        // Centred ranks u = 0, ±0.2, ±0.4 each day, r = u / 20 on day 1 and u / 10 on day 2:
        // Σ u·r / Σ u² = (0.05 · 0.4 + 0.1 · 0.4) / 0.8 = 0.075.
        assert!((m.slope - 0.075).abs() < 1e-12, "{m:?}");
        assert!(m.intercept.abs() < 1e-12, "{m:?}");
        assert!((m.apply(0.2) - 0.015).abs() < 1e-12);
        // Scores that order the returns backwards keep the slope: the map does not judge them.
        let backwards: Vec<f64> = returns.iter().map(|r| -r).collect();
        let b = ReturnMap::fit(&days, &backwards, &returns).expect("fitted");
        assert!((b.slope - m.slope).abs() < 1e-12);
        // The line passes through the mean return at the mean score.
        let shifted: Vec<f64> = scores.iter().map(|s| s + 0.1).collect();
        let c = ReturnMap::fit(&days, &shifted, &returns).expect("fitted");
        assert!((c.apply(0.1) - m.apply(0.0)).abs() < 1e-12);
        assert!(ReturnMap::fit(&[1], &[0.1], &[0.2]).is_none());
    }

    #[test]
    fn a_day_of_equal_returns_prices_no_rank() {
        let m = ReturnMap::fit(&[1, 1, 1], &[-0.2, 0.0, 0.2], &[0.01; 3]).expect("fitted");
        assert_eq!(m.slope, 0.0);
        assert!((m.apply(0.4) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn a_model_of_one_code_gets_the_slope_of_its_returns_on_its_scores_floored_at_zero() {
        let days = [1, 2, 3, 4];
        let scores = [-0.2, 0.0, 0.1, 0.3];
        let returns: Vec<f64> = scores.iter().map(|s| 0.5 * s - 0.001).collect();
        let m = ReturnMap::fit(&days, &scores, &returns).expect("fitted");
        assert!((m.slope - 0.5).abs() < 1e-12 && (m.intercept + 0.001).abs() < 1e-12);
        let backwards: Vec<f64> = scores.iter().map(|s| 0.002 - 0.01 * s).collect();
        let m = ReturnMap::fit(&days, &scores, &backwards).expect("fitted");
        assert_eq!(m.slope, 0.0);
        assert!((m.apply(0.3) - 0.002 + 0.01 * 0.05).abs() < 1e-12);
    }
}
