//! The range's largest drawdown of an equal-weighted index of the codes, and the 60 trading
//! days from its peak: the stretch where intervals fitted on calmer days are tested hardest.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::input::Close;

/// Trading days in the stress window, from the drawdown's peak.
pub const WINDOW_DAYS: usize = 60;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drawdown {
    /// The index's high before the fall.
    pub peak: NaiveDate,
    pub trough: NaiveDate,
    /// Trough / peak − 1 (negative).
    pub depth: f64,
    /// The last day of the window of [`WINDOW_DAYS`] trading days that starts at the peak.
    pub window_end: NaiveDate,
}

impl Drawdown {
    pub fn contains(&self, d: NaiveDate) -> bool {
        (self.peak..=self.window_end).contains(&d)
    }
}

/// The largest peak-to-trough fall, over `from..=to`, of the index whose daily return is the
/// mean of the codes' close-to-close returns (codes with a close on both days); `None` when the
/// index never falls.
pub fn largest(closes: &[Close], from: NaiveDate, to: NaiveDate) -> Option<Drawdown> {
    let mut by_code: BTreeMap<&str, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for c in closes.iter().filter(|c| (from..=to).contains(&c.date)) {
        by_code
            .entry(c.code.as_str())
            .or_default()
            .insert(c.date, c.close);
    }
    let mut day_returns: BTreeMap<NaiveDate, (f64, usize)> = BTreeMap::new();
    for series in by_code.values() {
        let v: Vec<(&NaiveDate, &f64)> = series.iter().collect();
        for w in v.windows(2) {
            let e = day_returns.entry(*w[1].0).or_default();
            e.0 += w[1].1 / w[0].1 - 1.0;
            e.1 += 1;
        }
    }
    // The index: 1 on the range's first close, then compounded by each day's mean return.
    let first = by_code
        .values()
        .filter_map(|s| s.keys().next())
        .min()
        .copied()?;
    let mut days = vec![first];
    let mut level = vec![1.0];
    for (d, (sum, n)) in day_returns.range(first.succ_opt()?..) {
        days.push(*d);
        level.push(level[level.len() - 1] * (1.0 + sum / *n as f64));
    }
    let mut peak = 0;
    let mut best: Option<(usize, usize, f64)> = None;
    for i in 0..level.len() {
        if level[i] > level[peak] {
            peak = i;
        }
        let depth = level[i] / level[peak] - 1.0;
        if depth < best.map_or(0.0, |b| b.2) {
            best = Some((peak, i, depth));
        }
    }
    let (p, t, depth) = best?;
    Some(Drawdown {
        peak: days[p],
        trough: days[t],
        depth,
        window_end: days[(p + WINDOW_DAYS - 1).min(days.len() - 1)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(i: usize) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(i as u64)
    }

    fn index(levels: &[f64]) -> Vec<Close> {
        ["A", "B"]
            .iter()
            .flat_map(|code| {
                levels.iter().enumerate().map(move |(i, &close)| Close {
                    code: code.to_string(),
                    date: day(i),
                    close,
                })
            })
            .collect()
    }

    #[test]
    fn the_largest_fall_is_found_from_its_peak_to_its_trough() {
        // Up to 110 on day 2, down to 88 on day 5 (−20%), a smaller fall later.
        let closes = index(&[
            100.0, 105.0, 110.0, 100.0, 95.0, 88.0, 99.0, 101.0, 97.0, 100.0,
        ]);
        let d = largest(&closes, day(0), day(9)).unwrap();
        assert_eq!((d.peak, d.trough), (day(2), day(5)));
        assert!((d.depth + 0.2).abs() < 1e-12, "{d:?}");
        assert_eq!(d.window_end, day(9), "the window is cut at the range's end");
        assert!(d.contains(day(3)) && !d.contains(day(1)));
    }

    #[test]
    fn a_range_that_only_rises_has_no_drawdown() {
        assert_eq!(largest(&index(&[1.0, 2.0, 3.0]), day(0), day(2)), None);
    }
}
