//! Cross-sectional skill, day by day: the Rank IC (Spearman correlation across codes of the
//! predicted and the realised return) and the top-minus-bottom quintile return.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::input::Outcome;

/// Fewer codes than this on a day and the day has no IC or long–short return.
pub const MIN_CODES: usize = 5;

/// One code on one base day: (predicted return, realised return, code).
pub type Pick<'a> = (f64, f64, &'a str);

/// Per base day, the codes with a point forecast (in the rows' order).
pub type Days<'a> = BTreeMap<NaiveDate, Vec<Pick<'a>>>;

/// Per base day: every code with a point forecast, days with fewer than [`MIN_CODES`] left out.
pub fn by_day<'a>(rows: &[&'a Outcome]) -> Days<'a> {
    let mut days: Days<'a> = BTreeMap::new();
    for o in rows {
        if let Some(p) = o.predicted_return() {
            days.entry(o.base_date)
                .or_default()
                .push((p, o.actual_return, o.code.as_str()));
        }
    }
    days.retain(|_, v| v.len() >= MIN_CODES);
    days
}

/// One value per base day, in date order.
pub type Daily = Vec<(NaiveDate, f64)>;

/// A model's cross-sectional series at one horizon, one value per base day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrossSection {
    /// Rank IC.
    pub ic: Daily,
    /// Top-minus-bottom quintile return, gross.
    pub long_short: Daily,
}

/// The daily Rank IC and long–short return of one model's days ([`by_day`]) at one horizon.
pub fn daily(days: &Days<'_>) -> CrossSection {
    let mut out = CrossSection::default();
    for (&d, picks) in days {
        let pairs: Vec<(f64, f64)> = picks.iter().map(|p| (p.0, p.1)).collect();
        if let Some(ic) = spearman(&pairs) {
            out.ic.push((d, ic));
        }
        if let Some(v) = ordered(picks) {
            let k = v.len() / 5;
            out.long_short
                .push((d, mean_realised(&v[v.len() - k..]) - mean_realised(&v[..k])));
        }
    }
    out
}

fn mean_realised(leg: &[Pick<'_>]) -> f64 {
    leg.iter().map(|p| p.1).sum::<f64>() / leg.len() as f64
}

/// A day's codes by predicted return, worst first (a stable sort: ties keep the day's code
/// order), when they can be split into fifths: `None` with fewer than five codes or when every
/// prediction is the same. Its top and bottom fifth are the long–short's legs.
pub fn ordered<'a>(picks: &[Pick<'a>]) -> Option<Vec<Pick<'a>>> {
    let mut v = picks.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let k = v.len() / 5;
    (k > 0 && v[0].0 != v[v.len() - 1].0).then_some(v)
}

/// Ranks from 1, in the values' order, ties sharing their mean rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman's rank correlation; `None` when either side is constant (e.g. a random walk's
/// zero forecasts).
pub fn spearman(pairs: &[(f64, f64)]) -> Option<f64> {
    let x: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let y: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    pearson(&ranks(&x), &ranks(&y))
}

/// Mean, standard deviation, mean / sd and the t statistic of a daily series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesStats {
    pub days: usize,
    pub mean: f64,
    pub sd: f64,
    /// mean / sd (for the IC series: the ICIR, daily, not annualised).
    pub ratio: f64,
    pub t: f64,
}

pub fn stats(values: &[f64]) -> Option<SeriesStats> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let ratio = if sd > 0.0 { mean / sd } else { 0.0 };
    Some(SeriesStats {
        days: n,
        mean,
        sd,
        ratio,
        t: ratio * (n as f64).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::fixture::outcome;

    #[test]
    fn spearman_is_one_for_any_increasing_relation_and_ties_share_ranks() {
        let p: Vec<(f64, f64)> = (1..=6)
            .map(|i| (f64::from(i), f64::from(i).exp()))
            .collect();
        assert!((spearman(&p).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let rev: Vec<(f64, f64)> = p.iter().map(|&(a, b)| (-a, b)).collect();
        assert!((spearman(&rev).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&[(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]), None);
    }

    #[test]
    fn the_long_short_return_is_top_fifth_minus_bottom_fifth() {
        // Ten codes: the top two realise 3% and 1%, the bottom two −2% and 0%.
        let realised = [
            -0.02, 0.0, 0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.01, 0.03,
        ];
        let rows: Vec<Outcome> = (0..10)
            .map(|i| {
                outcome(
                    &format!("C{i}"),
                    0,
                    f64::from(i) / 100.0,
                    realised[i as usize],
                )
            })
            .collect();
        let x = daily(&by_day(&rows.iter().collect::<Vec<_>>()));
        assert_eq!(x.long_short.len(), 1);
        assert!((x.long_short[0].1 - 0.03).abs() < 1e-12);
        let few = daily(&by_day(&rows[..4].iter().collect::<Vec<_>>()));
        assert!(few.long_short.is_empty() && few.ic.is_empty());
    }

    #[test]
    fn series_stats_give_the_icir_and_its_t() {
        let s = stats(&[0.1, 0.0, 0.2, 0.1]).unwrap();
        assert!((s.mean - 0.1).abs() < 1e-12);
        assert!((s.sd - (0.02f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((s.t - s.ratio * 2.0).abs() < 1e-12);
        assert_eq!(stats(&[1.0]), None);
    }
}
