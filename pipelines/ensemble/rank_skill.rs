//! Ranking skill: how well each member has ordered the codes lately, per horizon, and the tilt
//! it gives the ensemble's point.
//!
//! The learned weights (`ensemble_weights`) judge a member per code on direction hits and
//! errors, which says nothing about whether its forecasts *rank* the codes: on the 30 real
//! tickers in 2023, LightGBM hit as often as ETS but its daily Rank IC was 0.010 against ETS's
//! 0.050, and blending its returns at hit-rate weights cut the ensemble's Rank IC to 0.045
//! (0.027 against 0.040 at 3 days). So the point (and the expected return ranked by a user)
//! blends the members at `w · s / Σ w·s`, where `s` is the member's skill at the horizon: the
//! mean daily Spearman correlation between its predicted and realised returns across codes,
//! over the latest `window` base dates whose outcomes matured before the day, floored at 0.
//! The probabilities and the band keep the learned weights (they are judged by hits and
//! coverage, which the weights track).
//!
//! Before they are blended, the members' returns are put on one scale ([`Skills::blend`]): each
//! less its centre over its spread, the means over the same dates of its forecasts' mean and
//! standard deviation across the day's codes, and the blend restated as a return at the
//! weighted centre and spread. Blended as they come, the member whose forecasts spread widest
//! across the codes orders the blend whatever its weight: ETS's spread wider than LightGBM's
//! mapped ranks, so on the six-year walk-forward ETS's order (Rank IC 0.023) ruled an ensemble
//! that ranked at 0.043 beside LightGBM's 0.051. The scale is each member's own past, not the
//! day's codes, so one code's forecast never depends on the others forecast with it.
//!
//! No tilt (the learned weights alone) for a horizon with fewer than `min_days` such dates
//! for any member present, or when no member's skill is positive. Only outcomes with a target
//! date before ds count: a re-run of ds sees what ds's close knew.

use std::collections::BTreeMap;

/// Spearman's correlation of `(predicted, actual)` pairs, ties at their mean rank; `None` when
/// either side is constant (the evaluation's own, so the tilt and `krxflow eval` agree).
pub use krxflow_eval::cross_section::spearman;

/// One matured member forecast: its predicted and realised return.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Days since 1970-01-01.
    pub base: i32,
    pub target: i32,
    pub horizon: u32,
    pub predicted: f64,
    pub actual: f64,
}

/// The skill estimate's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Latest base dates averaged (as `weights.update`'s window).
    pub window: usize,
    /// Fewer dates than this for a member: no tilt at that horizon.
    pub min_days: usize,
    /// Fewer codes than this on a date: the date has no correlation.
    pub min_codes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window: 60,
            min_days: 20,
            min_codes: 5,
        }
    }
}

/// A member's record at one horizon over its latest dates: its ranking skill and the scale
/// of its forecasts across codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skill {
    /// The mean daily Rank IC.
    pub ic: f64,
    /// The mean over the dates of its predicted returns' mean across the day's codes.
    pub centre: f64,
    /// The mean over the dates of their standard deviation across the day's codes.
    pub spread: f64,
}

impl Skill {
    /// The record of `days` (each day's Rank IC, mean, standard deviation), in their order.
    fn of(days: &[DayStat]) -> Self {
        let n = days.len() as f64;
        let (ic, centre, spread) = days.iter().fold((0.0, 0.0, 0.0), |(a, b, c), d| {
            (a + d.ic, b + d.mean, c + d.sd)
        });
        Self {
            ic: ic / n,
            centre: centre / n,
            spread: spread / n,
        }
    }
}

/// One date of a member's record.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DayStat {
    ic: f64,
    mean: f64,
    sd: f64,
}

impl DayStat {
    /// The date's Rank IC and the mean and standard deviation (n − 1) of its predictions;
    /// `None` without a correlation.
    fn of(day: &[(f64, f64)]) -> Option<Self> {
        let ic = spearman(day)?;
        let n = day.len() as f64;
        let mean = day.iter().map(|p| p.0).sum::<f64>() / n;
        let ss = day.iter().map(|p| (p.0 - mean) * (p.0 - mean)).sum::<f64>();
        Some(Self {
            ic,
            mean,
            sd: (ss / (n - 1.0).max(1.0)).sqrt(),
        })
    }
}

/// The record of each member with an estimate at one horizon; the point weights follow from
/// it ([`Skills::tilt`]), and the point itself ([`Skills::blend`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Skills(pub BTreeMap<String, Skill>);

impl Skills {
    /// The point weights for members `present` with learned weights `w` (same order), or `None`
    /// when a member has no skill estimate or none is positive.
    pub fn tilt(&self, present: &[(&str, f64)]) -> Option<Vec<f64>> {
        let s: Vec<f64> = present
            .iter()
            .map(|(m, _)| self.0.get(*m).map(|s| s.ic.max(0.0)))
            .collect::<Option<_>>()?;
        let raw: Vec<f64> = present.iter().zip(&s).map(|((_, w), s)| w * s).collect();
        let total: f64 = raw.iter().sum();
        (total > 0.0 && total.is_finite()).then(|| raw.iter().map(|r| r / total).collect())
    }

    /// The blended return of members `present` (name, learned weight, predicted return) at
    /// the tilted weights `t`, each return first put on one scale: `c + s · Σ t·(r − cₘ)/sₘ`
    /// with `cₘ`, `sₘ` the member's centre and spread, `c = Σ t·cₘ`, `s = Σ t·sₘ` (a member
    /// whose forecasts had no spread adds its centre only); `None` as [`Skills::tilt`].
    pub fn blend(&self, present: &[(&str, f64, f64)]) -> Option<f64> {
        let weights: Vec<(&str, f64)> = present.iter().map(|(m, w, _)| (*m, *w)).collect();
        let t = self.tilt(&weights)?;
        let (mut centre, mut spread, mut z) = (0.0, 0.0, 0.0);
        for ((m, _, r), t) in present.iter().zip(&t) {
            let sk = self.0.get(*m)?;
            centre += t * sk.centre;
            spread += t * sk.spread;
            if sk.spread > 0.0 {
                z += t * (r - sk.centre) / sk.spread;
            }
        }
        let out = centre + spread * z;
        out.is_finite().then_some(out)
    }
}

/// Each horizon's skills at `ds` from every member's matured forecasts (`by_member`; any
/// order). A member with fewer than `min_days` dates has no estimate (and so no tilt for rows
/// it is part of).
pub fn skills(
    by_member: &BTreeMap<String, Vec<Scored>>,
    ds: i32,
    s: &Settings,
) -> BTreeMap<u32, Skills> {
    // horizon -> member -> skill
    let mut out: BTreeMap<u32, BTreeMap<String, Skill>> = BTreeMap::new();
    for (member, rows) in by_member {
        let Some(days) = Days::count(rows, ds) else {
            continue;
        };
        // Only the latest dates can be among the `window` used: rows before each horizon's
        // cutoff are not placed (a year of the full market is ~900,000 rows per member; the
        // window is a fifth of it). Should the dates after it not give `window`
        // correlations while older dates exist (a member constant across the codes on
        // some days has none), the horizon is done again from all its dates.
        let cutoffs: Vec<usize> = (0..days.horizons.len())
            .map(|k| days.cutoff(k, s.min_codes, s.window + CUTOFF_SLACK))
            .collect();
        let placed = Placed::of(rows, ds, &days, &cutoffs);
        for (k, &h) in days.horizons.iter().enumerate() {
            let mut stats = placed.stats(k, &days, s);
            if stats.len() < s.window && days.older_than(k, cutoffs[k], s.min_codes) {
                let all: Vec<usize> = (0..days.horizons.len())
                    .map(|j| if j == k { 0 } else { days.width })
                    .collect();
                stats = Placed::of(rows, ds, &days, &all).stats(k, &days, s);
            }
            if stats.len() >= s.min_days {
                out.entry(h)
                    .or_default()
                    .insert(member.clone(), Skill::of(&stats));
            }
        }
    }
    out.into_iter().map(|(h, m)| (h, Skills(m))).collect()
}

/// Dates with enough codes kept beyond the `window` newest when placing a member's rows.
const CUTOFF_SLACK: usize = 10;

/// Whether a member's row counts: matured before ds, a base before its target, finite.
fn usable(r: &Scored, ds: i32) -> bool {
    r.target < ds && r.base < r.target && r.predicted.is_finite() && r.actual.is_finite()
}

/// A member's usable rows counted by (horizon, base date): a row per horizon, a column per
/// day from the first base date.
struct Days {
    horizons: Vec<u32>,
    first: i32,
    width: usize,
    counts: Vec<usize>,
}

impl Days {
    /// `None` when the member has no usable row.
    fn count(rows: &[Scored], ds: i32) -> Option<Self> {
        let mut horizons: Vec<u32> = Vec::new();
        let (mut first, mut last) = (i32::MAX, i32::MIN);
        for r in rows.iter().filter(|r| usable(r, ds)) {
            if !horizons.contains(&r.horizon) {
                horizons.push(r.horizon);
            }
            first = first.min(r.base);
            last = last.max(r.base);
        }
        if horizons.is_empty() {
            return None;
        }
        horizons.sort_unstable();
        let width = (i64::from(last) - i64::from(first) + 1) as usize;
        let mut days = Self {
            horizons,
            first,
            width,
            counts: Vec::new(),
        };
        days.counts = vec![0; days.horizons.len() * width];
        for r in rows.iter().filter(|r| usable(r, ds)) {
            let cell = days.cell(r);
            days.counts[cell] += 1;
        }
        Some(days)
    }

    /// The (horizon, day) cell of a usable row.
    fn cell(&self, r: &Scored) -> usize {
        let k = self.horizons.partition_point(|h| *h < r.horizon);
        k * self.width + (r.base - self.first) as usize
    }

    /// Rows of horizon `k` per day.
    fn of(&self, k: usize) -> &[usize] {
        &self.counts[k * self.width..(k + 1) * self.width]
    }

    /// The days (columns) of horizon `k` with a row and at least `min_codes` rows, oldest
    /// first: those that can have a correlation.
    fn eligible(&self, k: usize, min_codes: usize) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let n = self.of(k);
        (0..self.width).filter(move |&d| n[d] > 0 && n[d] >= min_codes)
    }

    /// The first day (column) of the `keep` newest eligible at horizon `k` (0 when there are
    /// fewer).
    fn cutoff(&self, k: usize, min_codes: usize, keep: usize) -> usize {
        self.eligible(k, min_codes)
            .rev()
            .nth(keep.saturating_sub(1))
            .unwrap_or(0)
    }

    /// Whether horizon `k` has an eligible day before column `cutoff`.
    fn older_than(&self, k: usize, cutoff: usize, min_codes: usize) -> bool {
        self.eligible(k, min_codes)
            .next()
            .is_some_and(|d| d < cutoff)
    }
}

/// A member's (predicted, actual) pairs placed by (horizon, day), each day's in read order
/// (the correlation's sums follow the pairs' order), from each horizon's cutoff day on.
struct Placed {
    /// Each cell's first pair.
    start: Vec<usize>,
    pairs: Vec<(f64, f64)>,
}

impl Placed {
    fn of(rows: &[Scored], ds: i32, days: &Days, cutoffs: &[usize]) -> Self {
        let kept = |cell: usize| cell % days.width >= cutoffs[cell / days.width];
        let mut start = Vec::with_capacity(days.counts.len() + 1);
        let mut at = 0;
        for (cell, &n) in days.counts.iter().enumerate() {
            start.push(at);
            if kept(cell) {
                at += n;
            }
        }
        start.push(at);
        let mut next = start.clone();
        let mut pairs = vec![(0.0, 0.0); at];
        for r in rows.iter().filter(|r| usable(r, ds)) {
            let cell = days.cell(r);
            if kept(cell) {
                pairs[next[cell]] = (r.predicted, r.actual);
                next[cell] += 1;
            }
        }
        Self { start, pairs }
    }

    /// Horizon `k`'s records of the latest `window` placed days with a correlation, newest
    /// first.
    fn stats(&self, k: usize, days: &Days, s: &Settings) -> Vec<DayStat> {
        days.eligible(k, s.min_codes)
            .rev()
            .map(|d| k * days.width + d)
            .map(|cell| &self.pairs[self.start[cell]..self.start[cell + 1]])
            .filter(|day| !day.is_empty())
            .filter_map(DayStat::of)
            .take(s.window)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn spearman_ranks_ties_by_their_mean_and_is_none_for_a_constant_side() {
        let up: Vec<(f64, f64)> = (0..6).map(|i| (f64::from(i), f64::from(i * i))).collect();
        assert!(spearman(&up).is_some_and(|r| close(r, 1.0)));
        let down: Vec<(f64, f64)> = (0..6).map(|i| (f64::from(i), -f64::from(i))).collect();
        assert!(spearman(&down).is_some_and(|r| close(r, -1.0)));
        // Ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4): 4.5 / √(4.5 · 5) = √0.9.
        let tied = [(0.0, 1.0), (0.0, 2.0), (1.0, 3.0), (2.0, 4.0)];
        assert!(spearman(&tied).is_some_and(|r| close(r, 0.9f64.sqrt())));
        assert_eq!(spearman(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }

    /// `days` base dates of 10 codes at horizon 1: the realised return of code k on day d is
    /// a fixed pseudo-random number; `ranker` predicts it exactly, `noise` predicts an
    /// unrelated one.
    fn history(days: i32) -> BTreeMap<String, Vec<Scored>> {
        let actual = |d: i32, k: i32| (f64::from(d * 31 + k * 17) * 0.7).sin();
        let unrelated = |d: i32, k: i32| (f64::from(d * 13 + k * 29) * 1.3).cos();
        let rows = |f: &dyn Fn(i32, i32) -> f64| -> Vec<Scored> {
            (0..days)
                .flat_map(|d| (0..10).map(move |k| (d, k)))
                .map(|(d, k)| Scored {
                    base: d,
                    target: d + 1,
                    horizon: 1,
                    predicted: f(d, k),
                    actual: actual(d, k),
                })
                .collect()
        };
        [
            ("ranker".to_string(), rows(&actual)),
            ("noise".to_string(), rows(&unrelated)),
        ]
        .into()
    }

    #[test]
    fn the_member_that_ranks_the_codes_carries_the_point() {
        let sk = skills(&history(80), 100, &Settings::default());
        let h1 = &sk[&1];
        assert!(close(h1.0["ranker"].ic, 1.0), "{h1:?}");
        assert!(h1.0["noise"].ic.abs() < 0.2, "{h1:?}");
        let w = h1.tilt(&[("ranker", 0.3), ("noise", 0.7)]).expect("a tilt");
        assert!(w[0] > 0.6 && close(w[0] + w[1], 1.0), "{w:?}");
    }

    #[test]
    fn outcomes_maturing_on_or_after_ds_are_not_seen() {
        let known = history(40);
        let before = skills(&known, 40, &Settings::default());
        let mut later = known.clone();
        // Day 40 matures on ds (41st day's close is after the run), day 45 later still; both
        // would turn the noise member into a perfect ranker.
        for (d, t) in [(39, 40), (45, 46)] {
            for k in 0..10 {
                let r = Scored {
                    base: d,
                    target: t,
                    horizon: 1,
                    predicted: f64::from(k),
                    actual: f64::from(k),
                };
                if let Some(v) = later.get_mut("noise") {
                    v.push(r);
                }
            }
        }
        assert_eq!(skills(&later, 40, &Settings::default()), before);
        assert!(before.contains_key(&1));
    }

    /// The skills as first written: every usable row sorted by (horizon, base), stably.
    fn skills_by_sorting(
        by_member: &BTreeMap<String, Vec<Scored>>,
        ds: i32,
        s: &Settings,
    ) -> BTreeMap<u32, Skills> {
        let mut out: BTreeMap<u32, BTreeMap<String, Skill>> = BTreeMap::new();
        for (member, rows) in by_member {
            let mut keyed: Vec<(u32, i32, f64, f64)> = rows
                .iter()
                .filter(|r| usable(r, ds))
                .map(|r| (r.horizon, r.base, r.predicted, r.actual))
                .collect();
            keyed.sort_by_key(|r| (r.0, r.1));
            for by_horizon in keyed.chunk_by(|a, b| a.0 == b.0) {
                let stats: Vec<DayStat> = by_horizon
                    .chunk_by(|a, b| a.1 == b.1)
                    .rev()
                    .filter(|day| day.len() >= s.min_codes)
                    .filter_map(|day| {
                        DayStat::of(&day.iter().map(|r| (r.2, r.3)).collect::<Vec<_>>())
                    })
                    .take(s.window)
                    .collect();
                if stats.len() >= s.min_days {
                    out.entry(by_horizon[0].0)
                        .or_default()
                        .insert(member.clone(), Skill::of(&stats));
                }
            }
        }
        out.into_iter().map(|(h, m)| (h, Skills(m))).collect()
    }

    #[test]
    fn only_the_latest_dates_are_placed_and_the_skills_are_those_of_every_date() {
        // Three horizons, 200 base dates, codes in a scrambled order, a few days with too few
        // codes; for "flat" the newest 75 days are constant across codes (no correlation), so
        // its window reaches past the cutoff and is done again from every date.
        let mut by: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
        for (m, member) in ["ranker", "flat"].into_iter().enumerate() {
            let mut rows = Vec::new();
            for d in 0..200 {
                let codes = if d % 17 == 3 { 4 } else { 12 };
                for h in [5u32, 1, 3] {
                    for k in 0..codes {
                        let x = f64::from((d * 7 + k * 13 + h as i32 * 3 + m as i32) % 23);
                        let predicted = if member == "flat" && d >= 125 {
                            0.5
                        } else {
                            x.sin()
                        };
                        rows.push(Scored {
                            base: 1000 + d,
                            target: 1000 + d + h as i32,
                            horizon: h,
                            predicted,
                            actual: (x * 1.7).cos(),
                        });
                    }
                }
            }
            // Read order is not date order.
            rows.reverse();
            rows.rotate_left(1234);
            by.insert(member.to_string(), rows);
        }
        for ds in [1100, 1150, 1205, 1300] {
            for s in [
                Settings::default(),
                Settings {
                    window: 20,
                    min_days: 5,
                    min_codes: 5,
                },
                Settings {
                    window: 500,
                    min_days: 20,
                    min_codes: 13,
                },
            ] {
                assert_eq!(
                    skills(&by, ds, &s),
                    skills_by_sorting(&by, ds, &s),
                    "ds {ds} {s:?}"
                );
            }
        }
        let all = skills(&by, 1300, &Settings::default());
        assert!(all[&1].0.contains_key("flat") && all[&1].0.contains_key("ranker"));
    }

    fn skill(ic: f64) -> Skill {
        Skill {
            ic,
            centre: 0.0,
            spread: 0.01,
        }
    }

    #[test]
    fn too_short_a_record_or_no_positive_skill_leaves_the_learned_weights() {
        assert!(skills(&history(15), 100, &Settings::default()).is_empty());
        let s = Skills(
            [
                ("a".to_string(), skill(-0.1)),
                ("b".to_string(), skill(0.0)),
            ]
            .into(),
        );
        assert_eq!(s.tilt(&[("a", 0.5), ("b", 0.5)]), None);
        assert_eq!(s.blend(&[("a", 0.5, 0.01), ("b", 0.5, 0.02)]), None);
        // A member present without an estimate (e.g. a new one): no tilt.
        let s = Skills([("a".to_string(), skill(0.1))].into());
        assert_eq!(s.tilt(&[("a", 0.5), ("c", 0.5)]), None);
        let w = Skills(
            [
                ("a".to_string(), skill(0.1)),
                ("b".to_string(), skill(-0.2)),
            ]
            .into(),
        )
        .tilt(&[("a", 0.2), ("b", 0.8)]);
        assert_eq!(w, Some(vec![1.0, 0.0]));
    }

    #[test]
    fn the_record_keeps_each_members_centre_and_spread_across_codes() {
        // "ranker" predicts sin(·) of 10 codes a day: its centre is the days' mean of them.
        let sk = skills(&history(80), 100, &Settings::default());
        let r = sk[&1].0["ranker"];
        let days: Vec<DayStat> = (0..80)
            .rev()
            .map(|d| {
                let day: Vec<(f64, f64)> = (0..10)
                    .map(|k| {
                        let a = (f64::from(d * 31 + k * 17) * 0.7).sin();
                        (a, a)
                    })
                    .collect();
                DayStat::of(&day).expect("a correlation")
            })
            .take(60)
            .collect();
        assert_eq!(r, Skill::of(&days));
        assert!(r.spread > 0.5 && r.centre.abs() < 0.2, "{r:?}");
    }

    /// Members of equal skill (0.05) with these (name, centre, spread).
    fn scaled(members: &[(&str, f64, f64)]) -> Skills {
        Skills(
            members
                .iter()
                .map(|&(m, centre, spread)| {
                    let skill = Skill {
                        ic: 0.05,
                        centre,
                        spread,
                    };
                    (m.to_string(), skill)
                })
                .collect(),
        )
    }

    #[test]
    fn a_wide_member_does_not_order_the_blend_beyond_its_weight() {
        // "wide" forecasts 10x the spread of "narrow" around its own centre; equal skills and
        // weights. Code A: narrow says +1 sd, wide -0.5 sd; code B: narrow -0.5 sd, wide +0.2 sd.
        let sk = scaled(&[("narrow", 0.001, 0.002), ("wide", 0.0, 0.02)]);
        let a = [("narrow", 0.5, 0.001 + 0.002), ("wide", 0.5, -0.01)];
        let b = [("narrow", 0.5, 0.001 - 0.001), ("wide", 0.5, 0.004)];
        let (za, zb) = (sk.blend(&a).expect("a"), sk.blend(&b).expect("b"));
        // On one scale A (+0.25 sd) ranks above B (-0.15 sd); blended as they came, wide's
        // order wins (A -0.0035 < B +0.0020).
        assert!(za > zb, "{za} {zb}");
        let plain = |p: &[(&str, f64, f64)]| p.iter().map(|m| 0.5 * m.2).sum::<f64>();
        assert!(plain(&a) < plain(&b));
        // The blend is a return: centre 0.0005 + spread 0.011 · 0.25.
        assert!(close(za, 0.0005 + 0.011 * 0.25), "{za}");
        // A member whose forecasts never spread adds its centre only.
        let flat = scaled(&[("flat", 0.003, 0.0), ("wide", 0.0, 0.02)]);
        let v = flat
            .blend(&[("flat", 0.5, 0.003), ("wide", 0.5, 0.02)])
            .expect("blend");
        assert!(close(v, 0.0015 + 0.01 * 0.5), "{v}");
    }
}
