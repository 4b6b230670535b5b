//! The time series behind the report's charts, one flat row each (they are written as CSVs).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::input::{Outcome, Weight};

/// The hit rate from the start of the range through `date`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CumulativeHit {
    pub horizon: u32,
    pub model: String,
    pub date: NaiveDate,
    pub n: usize,
    pub hit_rate: f64,
}

/// One calendar month of one model's forecasts (by base date).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monthly {
    pub horizon: u32,
    pub model: String,
    /// YYYY-MM.
    pub month: String,
    pub n: usize,
    pub hit_rate: f64,
    pub coverage: Option<f64>,
    pub rank_ic: Option<f64>,
}

/// A value of one model on one base day (Rank IC, long–short return).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Daily {
    pub horizon: u32,
    pub model: String,
    pub date: NaiveDate,
    pub value: f64,
    /// The running sum; for the long–short return, of value / horizon (one overlapping
    /// h-day portfolio formed each day).
    pub cumulative: f64,
}

/// The mean weight of a member over codes on one update day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanWeight {
    pub horizon: u32,
    pub model: String,
    pub as_of: NaiveDate,
    pub codes: usize,
    pub weight: f64,
}

pub fn cumulative_hit(rows: &[&Outcome]) -> Vec<CumulativeHit> {
    let mut by_day: BTreeMap<NaiveDate, (usize, usize)> = BTreeMap::new();
    for o in rows {
        let e = by_day.entry(o.base_date).or_default();
        e.0 += usize::from(o.hit());
        e.1 += 1;
    }
    let (mut hits, mut n) = (0, 0);
    by_day
        .into_iter()
        .map(|(date, (h, c))| {
            hits += h;
            n += c;
            CumulativeHit {
                horizon: rows[0].horizon,
                model: rows[0].model.clone(),
                date,
                n,
                hit_rate: hits as f64 / n as f64,
            }
        })
        .collect()
}

fn month_of(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

pub fn monthly(rows: &[&Outcome], daily_ic: &[(NaiveDate, f64)]) -> Vec<Monthly> {
    #[derive(Default)]
    struct Acc {
        n: usize,
        hits: usize,
        inside: usize,
        with_interval: usize,
        ic: Vec<f64>,
    }
    let mut months: BTreeMap<String, Acc> = BTreeMap::new();
    for o in rows {
        let a = months.entry(month_of(o.base_date)).or_default();
        a.n += 1;
        a.hits += usize::from(o.hit());
        if let (Some(lo), Some(hi)) = (o.q10, o.q90) {
            let actual = o.base_close * (1.0 + o.actual_return);
            a.with_interval += 1;
            a.inside += usize::from(lo <= actual && actual <= hi);
        }
    }
    for (d, ic) in daily_ic {
        if let Some(a) = months.get_mut(&month_of(*d)) {
            a.ic.push(*ic);
        }
    }
    months
        .into_iter()
        .map(|(month, a)| Monthly {
            horizon: rows[0].horizon,
            model: rows[0].model.clone(),
            month,
            n: a.n,
            hit_rate: a.hits as f64 / a.n as f64,
            coverage: (a.with_interval > 0).then(|| a.inside as f64 / a.with_interval as f64),
            rank_ic: (!a.ic.is_empty()).then(|| a.ic.iter().sum::<f64>() / a.ic.len() as f64),
        })
        .collect()
}

pub fn daily(horizon: u32, model: &str, values: &[(NaiveDate, f64)], per_day: f64) -> Vec<Daily> {
    let mut cum = 0.0;
    values
        .iter()
        .map(|&(date, value)| {
            cum += value / per_day;
            Daily {
                horizon,
                model: model.to_string(),
                date,
                value,
                cumulative: cum,
            }
        })
        .collect()
}

/// Mean weight per (horizon, model, as_of) over codes, for update days in `from..=to`.
pub fn mean_weights(weights: &[Weight], from: NaiveDate, to: NaiveDate) -> Vec<MeanWeight> {
    let mut acc: BTreeMap<(u32, String, NaiveDate), (usize, f64)> = BTreeMap::new();
    for w in weights.iter().filter(|w| (from..=to).contains(&w.as_of)) {
        let e = acc
            .entry((w.horizon, w.model.clone(), w.as_of))
            .or_default();
        e.0 += 1;
        e.1 += w.weight;
    }
    acc.into_iter()
        .map(|((horizon, model, as_of), (codes, sum))| MeanWeight {
            horizon,
            model,
            as_of,
            codes,
            weight: sum / codes as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Direction;

    fn row(day: u32, hit: bool, inside: bool) -> Outcome {
        Outcome {
            model: "ensemble".into(),
            code: "A".into(),
            base_date: NaiveDate::from_ymd_opt(2024, 1, 30).unwrap()
                + chrono::Days::new(u64::from(day)),
            horizon: 1,
            base_close: 100.0,
            point: Some(101.0),
            q10: Some(99.0),
            q90: Some(if inside { 103.0 } else { 100.5 }),
            predicted: if hit { Direction::Up } else { Direction::Down },
            prob_up: None,
            actual_return: 0.01,
            actual: Direction::Up,
        }
    }

    #[test]
    fn the_cumulative_hit_rate_runs_through_each_day() {
        let rows = [row(0, true, true), row(0, false, true), row(1, true, true)];
        let c = cumulative_hit(&rows.iter().collect::<Vec<_>>());
        assert_eq!(
            c.iter().map(|c| (c.n, c.hit_rate)).collect::<Vec<_>>(),
            [(2, 0.5), (3, 2.0 / 3.0)]
        );
    }

    #[test]
    fn months_split_at_the_calendar_month() {
        // Jan 30, Jan 31, Feb 1.
        let rows = [
            row(0, true, true),
            row(1, true, false),
            row(2, false, false),
        ];
        let ic = [(rows[0].base_date, 0.2), (rows[2].base_date, -0.1)];
        let m = monthly(&rows.iter().collect::<Vec<_>>(), &ic);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].month.as_str(), m[0].n, m[0].coverage, m[0].rank_ic),
            ("2024-01", 2, Some(0.5), Some(0.2))
        );
        assert_eq!((m[1].hit_rate, m[1].coverage), (0.0, Some(0.0)));
    }

    #[test]
    fn the_long_short_curve_divides_each_days_return_by_the_holding_period() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        let s = daily(5, "m", &[(d, 0.05), (d, 0.10)], 5.0);
        assert!((s[1].cumulative - 0.03).abs() < 1e-12);
    }
}
