//! Cross-sectional skill, day by day: the Rank IC (Spearman correlation across codes of the
//! predicted and the realised return) and the top-minus-bottom quintile return.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::input::Outcome;

/// Fewer codes than this on a day and the day has no IC or long–short return.
pub const MIN_CODES: usize = 5;

/// Per base day: (predicted return, realised return) of every code with a point forecast.
pub fn by_day(rows: &[&Outcome]) -> BTreeMap<NaiveDate, Vec<(f64, f64)>> {
    let mut days: BTreeMap<NaiveDate, Vec<(f64, f64)>> = BTreeMap::new();
    for o in rows {
        if let Some(p) = o.predicted_return() {
            days.entry(o.base_date)
                .or_default()
                .push((p, o.actual_return));
        }
    }
    days.retain(|_, v| v.len() >= MIN_CODES);
    days
}

/// One value per base day, in date order.
pub type Daily = Vec<(NaiveDate, f64)>;

/// The daily Rank IC and the daily long–short return of one model's rows at one horizon.
pub fn daily_ic_and_long_short(rows: &[&Outcome]) -> (Daily, Daily) {
    let days = by_day(rows);
    let ic = days
        .iter()
        .filter_map(|(d, p)| Some((*d, spearman(p)?)))
        .collect();
    let ls = days
        .iter()
        .filter_map(|(d, p)| Some((*d, long_short(p)?)))
        .collect();
    (ic, ls)
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

/// The mean of the realised returns of the top fifth by prediction minus the bottom fifth's.
pub fn long_short(pairs: &[(f64, f64)]) -> Option<f64> {
    let mut v = pairs.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let k = v.len() / 5;
    if k == 0 || v[0].0 == v[v.len() - 1].0 {
        return None;
    }
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    Some(mean(&v[v.len() - k..]) - mean(&v[..k]))
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
        let mut p: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 0.005)).collect();
        p[9].1 = 0.03;
        p[8].1 = 0.01;
        p[0].1 = -0.02;
        p[1].1 = 0.0;
        assert!((long_short(&p).unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(long_short(&p[..4]), None);
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
