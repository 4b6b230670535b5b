//! Calibrated intervals: split-conformal on the ensemble's matured outcomes, normalised by
//! volatility and grouped by it (Mondrian conformal), with adaptive conformal inference
//! (Gibbs & Candès 2021) steering each group's miscoverage level online, per horizon.
//!
//! * A matured prediction's score is how far the realised close fell outside the raw blended
//!   q10–q90 band, in log price, per unit of the code's 20-day volatility scaled to the horizon
//!   (`σ = vol_20d · √h` at the base date): `max(ln(q10/y), ln(y/q90)) / σ`. Negative inside.
//! * At each base date the calibration set is the scores whose target date is before it (so a
//!   re-run of ds sees exactly what ds's close knew) within the trailing window, split into
//!   `groups` volatility bands at equal counts of the set's own σ (the cut points move with the
//!   window). A row is calibrated by its band's set: the raw band widened (or narrowed) by that
//!   set's `⌈(n+1)(1−α)⌉/n` quantile `Q`: `q10·e^(−Qσ)`, `q90·e^(Qσ)`, never past the point.
//!   Normalising by σ alone is not enough when the raw band does not scale with volatility
//!   (LightGBM's residual band is one width for every code): one pooled `Q` then over-covers
//!   calm codes and under-covers volatile ones, while a band's own `Q` holds ~80% in each.
//! * ACI, per band: α starts at the target (0.2 for q10–q90) and after each target day moves by
//!   `γ (target − misses)`, the day's miss rate of the intervals issued to that band; so
//!   coverage that falls (a regime change) widens the band's next intervals, and the reverse.
//! * The whole recursion is replayed from the lake's outcomes on every run: deterministic,
//!   idempotent, no state of its own.

use std::collections::{BTreeMap, VecDeque};

use super::order_stats::{RankSet, Universe};

/// One matured ensemble forecast, as the calibration needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Matured {
    /// Days since 1970-01-01.
    pub base: i32,
    pub target: i32,
    /// The raw blended band (the members' q10/q90 at their weights).
    pub q10: f64,
    pub q90: f64,
    pub actual: f64,
    /// `vol_20d · √h` at the base date.
    pub scale: f64,
}

impl Matured {
    fn score(&self) -> Option<f64> {
        let s = (self.q10 / self.actual)
            .ln()
            .max((self.actual / self.q90).ln())
            / self.scale;
        (s.is_finite() && self.scale > 0.0).then_some(s)
    }
}

/// The calibration's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Target miscoverage of the interval (0.2 for q10–q90).
    pub target: f64,
    /// ACI step size.
    pub gamma: f64,
    /// Calendar days of scores kept in the calibration set.
    pub window_days: i32,
    /// A band with fewer scores than this is not calibrated (its rows keep the raw band).
    pub min_scores: usize,
    /// Volatility bands calibrated apart (1: one pooled calibration).
    pub groups: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            target: 0.2,
            gamma: 0.005,
            window_days: 365,
            min_scores: 50,
            groups: 3,
        }
    }
}

/// One volatility band's calibration in force at a base date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The widening quantile, in units of the row's σ.
    pub q: f64,
    /// ACI's miscoverage level behind it.
    pub alpha: f64,
    /// Scores in the band's calibration set.
    pub n: usize,
}

/// The calibrations in force at a base date: the bands' σ cut points and each band's
/// calibration (`None`: too few scores in it).
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// Ascending; a row with σ below `cuts[0]` is in band 0, from `cuts[i-1]` below `cuts[i]`
    /// in band i, from the last cut on in the top band.
    pub cuts: Vec<f64>,
    pub bands: Vec<Option<Calibration>>,
}

impl Issued {
    /// The band of a row with this σ; `None` before there are cut points (no scores yet).
    pub fn band(&self, scale: f64) -> Option<usize> {
        (self.cuts.len() + 1 == self.bands.len())
            .then(|| self.cuts.partition_point(|c| *c <= scale))
    }

    /// The calibration of a row with this σ; `None` when its band has too few scores.
    pub fn for_scale(&self, scale: f64) -> Option<&Calibration> {
        self.band(scale)
            .and_then(|g| self.bands.get(g))
            .and_then(Option::as_ref)
    }

    /// Scores over all bands.
    pub fn scores(&self) -> usize {
        self.bands.iter().flatten().map(|c| c.n).sum()
    }
}

/// The position (0-based) of the `⌈(n+1)(1−α)⌉`-th smallest of n scores (split conformal's
/// finite-sample quantile), clamped to the set.
fn conformal_rank(n: usize, alpha: f64) -> usize {
    let rank = (((n + 1) as f64) * (1.0 - alpha)).ceil() as usize;
    rank.clamp(1, n) - 1
}

/// Applies `c` to a raw band around `point`: `(q10, q90)`.
pub fn widen(point: f64, q10: f64, q90: f64, scale: f64, c: &Calibration) -> (f64, f64) {
    let lo = (q10 * (-c.q * scale).exp()).min(point);
    let hi = (q90 * (c.q * scale).exp()).max(point);
    (lo, hi)
}

/// Replays ACI over `matured` (one horizon; any order) and returns the calibrations for base
/// date `ds`. Outcomes whose target date is not before `ds` are ignored. `None`: no band has
/// enough scores.
pub fn calibrate(matured: &[Matured], ds: i32, s: &Settings) -> Option<Issued> {
    replay(matured, ds, s)
        .remove(&ds)
        .filter(|i| i.bands.iter().any(Option::is_some))
}

/// One volatility band's calibration set and ACI level.
struct Band {
    /// Its scores (ranks in the replay's universe of scores).
    set: RankSet,
    alpha: f64,
}

/// The calibrations issued at every base date of `matured` and at `ds` (see [`calibrate`]).
pub fn replay(matured: &[Matured], ds: i32, s: &Settings) -> BTreeMap<i32, Issued> {
    // Reserved for every row (a filter's collect would grow by copying).
    let mut rows: Vec<(&Matured, f64)> = Vec::with_capacity(matured.len());
    rows.extend(
        matured
            .iter()
            .filter(|m| m.target < ds && m.base < m.target)
            .filter_map(|m| m.score().map(|sc| (m, sc))),
    );
    // Only the target days need an order: a day's rows enter the sets together and leave
    // them together, and ACI steps once per day on their counts, so the order of the rows
    // within a day changes nothing.
    rows.sort_unstable_by_key(|r| r.0.target);
    let mut bases: Vec<i32> = rows.iter().map(|(m, _)| m.base).collect();
    bases.push(ds);
    bases.sort_unstable();
    bases.dedup();

    // Every score and σ the sets will hold, known up front: the sets hold their ranks.
    let (score_values, score_rank) = Universe::of(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let (scale_values, scale_rank) =
        Universe::of(&rows.iter().map(|r| r.0.scale).collect::<Vec<_>>());

    let lo_alpha = 0.005;
    let groups = s.groups.max(1);
    let mut bands: Vec<Band> = (0..groups)
        .map(|_| Band {
            set: RankSet::new(score_values.len()),
            alpha: s.target,
        })
        .collect();
    let mut issued: BTreeMap<i32, Issued> = BTreeMap::new();
    // The calibration set in target order (to evict): (target, row, band), and every σ in it
    // (for the cut points). A row issued before there were cut points is in no band: its σ
    // counts towards the cut points, its score towards no band's set.
    // It holds at most every row: reserved, not grown by copying.
    let mut window: VecDeque<(i32, usize, Option<usize>)> = VecDeque::with_capacity(rows.len());
    let mut scales = RankSet::new(scale_values.len());
    let mut next = 0; // rows absorbed so far
    for &b in &bases {
        // Absorb the target days before b, one ACI step per band and day.
        while next < rows.len() && rows[next].0.target < b {
            let day = rows[next].0.target;
            let mut tally = vec![(0usize, 0usize); groups]; // (misses, n) per band
            // The sets are read only between days: a day's values go in as they come.
            while next < rows.len() && rows[next].0.target == day {
                let (m, sc) = rows[next];
                // The band and calibration the row's interval was issued with (a band without
                // one issued the raw band: q = 0).
                let issued_at = issued.get(&m.base);
                let g = issued_at
                    .and_then(|i| i.band(m.scale))
                    .filter(|g| *g < groups);
                if let Some(g) = g {
                    let q = issued_at
                        .and_then(|i| i.bands.get(g).copied().flatten())
                        .map_or(0.0, |c| c.q);
                    tally[g].0 += usize::from(sc > q);
                    tally[g].1 += 1;
                    bands[g].set.insert(score_rank[next]);
                }
                window.push_back((day, next, g));
                scales.insert(scale_rank[next]);
                next += 1;
            }
            for (band, (misses, n)) in bands.iter_mut().zip(tally) {
                if n > 0 {
                    let err = misses as f64 / n as f64;
                    band.alpha =
                        (band.alpha + s.gamma * (s.target - err)).clamp(lo_alpha, 1.0 - lo_alpha);
                }
            }
        }
        while window.front().is_some_and(|w| w.0 < b - s.window_days) {
            if let Some((_, row, g)) = window.pop_front() {
                if let Some(g) = g {
                    bands[g].set.remove(score_rank[row]);
                }
                scales.remove(scale_rank[row]);
            }
        }
        let cuts: Vec<f64> = if scales.is_empty() {
            Vec::new()
        } else {
            (1..groups)
                .map(|i| scale_values.value(scales.kth(scales.len() * i / groups)))
                .collect()
        };
        let cal = bands
            .iter()
            .map(|band| {
                let n = band.set.len();
                (n >= s.min_scores && n > 0).then(|| Calibration {
                    q: score_values.value(band.set.kth(conformal_rank(n, band.alpha))),
                    alpha: band.alpha,
                    n,
                })
            })
            .collect();
        issued.insert(b, Issued { cuts, bands: cal });
    }
    issued
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 uniform in (0, 1) and a standard normal from it (Box–Muller).
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 1e-12
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// 30 codes a day for `days` days; code k's daily vol is `vol(day, k)`; the raw band
    /// claims ±`claimed`·`band_vol(day)` (1.2816 σ is a true q10–q90 for normal returns).
    /// Returns the coverage of the raw and of the calibrated intervals issued from day 100 on,
    /// over all codes and per code for `per_code`.
    fn simulate_codes(
        s: &Settings,
        days: i32,
        claimed: f64,
        vol: impl Fn(i32, usize) -> f64,
        band_vol: impl Fn(i32) -> f64,
    ) -> (f64, f64, Vec<f64>) {
        let mut rng = Rng(7);
        let mut matured: Vec<(usize, Matured)> = Vec::new();
        for day in 0..days {
            for k in 0..30 {
                let y = 100.0 * (vol(day, k) * rng.normal()).exp();
                let w = claimed * band_vol(day);
                // The row's scale is the 20-day vol the pipeline would see: the truth, lagged.
                let scale = vol((day - 10).max(0), k);
                let (q10, q90) = (100.0 * (-w).exp(), 100.0 * w.exp());
                let m = Matured {
                    base: day,
                    target: day + 1,
                    q10,
                    q90,
                    actual: y,
                    scale,
                };
                matured.push((k, m));
            }
        }
        let all: Vec<Matured> = matured.iter().map(|(_, m)| m.clone()).collect();
        let issued = replay(&all, days + 1, s);
        let (mut raw_in, mut cal_in, mut n) = (0usize, 0usize, 0usize);
        let mut per_code = vec![(0usize, 0usize); 30];
        for (k, m) in matured.iter().filter(|(_, m)| m.base >= 100) {
            n += 1;
            per_code[*k].1 += 1;
            raw_in += usize::from(m.q10 <= m.actual && m.actual <= m.q90);
            if let Some(c) = issued.get(&m.base).and_then(|i| i.for_scale(m.scale)) {
                let (lo, hi) = widen(100.0, m.q10, m.q90, m.scale, c);
                let inside = usize::from(lo <= m.actual && m.actual <= hi);
                cal_in += inside;
                per_code[*k].0 += inside;
            }
        }
        let per_code = per_code
            .into_iter()
            .map(|(i, n)| i as f64 / n as f64)
            .collect();
        (raw_in as f64 / n as f64, cal_in as f64 / n as f64, per_code)
    }

    fn simulate(
        days: i32,
        claimed: f64,
        vol: impl Fn(i32) -> f64,
        band_vol: impl Fn(i32) -> f64,
    ) -> (f64, f64) {
        let (raw, cal, _) =
            simulate_codes(&Settings::default(), days, claimed, |d, _| vol(d), band_vol);
        (raw, cal)
    }

    #[test]
    fn a_band_that_claims_too_little_is_widened_to_80_percent_coverage() {
        // The raw band is half as wide as a true q10–q90: it covers about 48%.
        let (raw, cal) = simulate(600, 0.64, |_| 0.02, |_| 0.02);
        assert!(raw < 0.55, "raw {raw}");
        assert!((0.77..=0.83).contains(&cal), "calibrated {cal}");
    }

    #[test]
    fn a_band_that_claims_too_much_is_narrowed() {
        let (raw, cal) = simulate(600, 2.5, |_| 0.02, |_| 0.02);
        assert!(raw > 0.95, "raw {raw}");
        assert!((0.77..=0.83).contains(&cal), "calibrated {cal}");
    }

    #[test]
    fn coverage_recovers_after_volatility_triples_and_the_band_does_not_follow() {
        // The raw band stays sized for 2% vol while vol jumps to 6% on day 300: normalising
        // by the (lagged) vol and ACI bring the coverage back near 80%.
        let vol = |d: i32| if d < 300 { 0.02 } else { 0.06 };
        let (raw, cal) = simulate(700, 1.2816, vol, |_| 0.02);
        assert!(raw < 0.6, "raw {raw}");
        assert!((0.74..=0.86).contains(&cal), "calibrated {cal}");
    }

    #[test]
    fn calm_and_volatile_codes_are_each_covered_when_the_raw_band_is_one_width_for_all() {
        // A third of the codes move 1% a day, a third 2%, a third 4%; the raw band is sized
        // for 2% whatever the code (as LightGBM's residual band is). One pooled calibration
        // over-covers the calm codes and under-covers the volatile ones; a calibration per
        // volatility band holds every code near 80%.
        let vol = |_: i32, k: usize| [0.01, 0.02, 0.04][k % 3];
        let by_vol = |per_code: &[f64]| -> [f64; 3] {
            let mut m = [0.0; 3];
            for (k, c) in per_code.iter().enumerate() {
                m[k % 3] += c / 10.0;
            }
            m
        };
        let pooled = Settings {
            groups: 1,
            ..Settings::default()
        };
        let (_, cal, per_code) = simulate_codes(&pooled, 600, 1.2816, vol, |_| 0.02);
        let [calm, _, volatile] = by_vol(&per_code);
        assert!((0.75..=0.85).contains(&cal), "pooled overall {cal}");
        assert!(
            calm > 0.87 && volatile < 0.73,
            "pooled: calm {calm}, volatile {volatile}"
        );
        let (_, cal, per_code) = simulate_codes(&Settings::default(), 600, 1.2816, vol, |_| 0.02);
        assert!((0.77..=0.83).contains(&cal), "banded overall {cal}");
        for (i, c) in by_vol(&per_code).into_iter().enumerate() {
            assert!((0.76..=0.84).contains(&c), "band {i}: {c}");
        }
    }

    #[test]
    fn cut_points_split_the_window_at_equal_counts_and_place_rows_by_their_scale() {
        let rows: Vec<Matured> = (0..120)
            .map(|i| Matured {
                base: i / 30,
                target: i / 30 + 1,
                q10: 90.0,
                q90: 110.0,
                actual: 100.0,
                scale: f64::from(i % 30 + 1) / 100.0,
            })
            .collect();
        let s = Settings {
            min_scores: 20,
            ..Settings::default()
        };
        let issued = calibrate(&rows, 10, &s).expect("calibrated");
        assert_eq!(issued.cuts, vec![0.11, 0.21]);
        assert_eq!(
            [0.05, 0.11, 0.2, 0.21, 0.5].map(|x| issued.band(x)),
            [0, 1, 1, 2, 2].map(Some)
        );
        // Days 0 and 1 were issued before any score had matured: in no band. Days 2 and 3
        // split ten and ten by the cut points of days 0 (and 0–1), the same 0.11 and 0.21.
        assert!(issued.bands.iter().all(|b| b.is_some_and(|c| c.n == 20)));
        assert_eq!(issued.scores(), 60);
    }

    #[test]
    fn the_calibrations_do_not_depend_on_the_order_of_the_outcomes() {
        // 40 days of 25 codes, horizons mixed (targets 1-3 days on), misses and ties.
        let mut rng = Rng(11);
        let rows: Vec<Matured> = (0..1000)
            .map(|i| {
                let base = i / 25;
                let target = base + 1 + (i % 3);
                let scale = 0.01 + f64::from(i % 7) * 0.005;
                Matured {
                    base,
                    target,
                    q10: 98.0,
                    q90: 102.0,
                    actual: 100.0 * (1.0 + 1.5 * scale * rng.normal()),
                    scale,
                }
            })
            .collect();
        let s = Settings {
            min_scores: 20,
            window_days: 15,
            ..Settings::default()
        };
        let want = replay(&rows, 40, &s);
        assert!(want.values().any(|i| i.bands.iter().all(Option::is_some)));
        let mut shuffled = rows.clone();
        for k in (1..shuffled.len()).rev() {
            shuffled.swap(k, (rng.uniform() * (k + 1) as f64) as usize % (k + 1));
        }
        assert_eq!(replay(&shuffled, 40, &s), want);
        shuffled.reverse();
        assert_eq!(replay(&shuffled, 40, &s), want);
    }

    #[test]
    fn outcomes_maturing_on_or_after_ds_are_not_seen() {
        let s = Settings {
            min_scores: 5,
            groups: 1,
            ..Settings::default()
        };
        let row = |base, target, actual| Matured {
            base,
            target,
            q10: 90.0,
            q90: 110.0,
            actual,
            scale: 0.02,
        };
        let known: Vec<Matured> = (0..20).map(|d| row(d, d + 1, 100.0 + d as f64)).collect();
        let before = calibrate(&known, 21, &s);
        let mut later = known.clone();
        later.push(row(20, 21, 500.0)); // matures on ds: known only after ds's close
        later.push(row(21, 22, 1.0));
        assert_eq!(calibrate(&later, 21, &s), before);
        assert!(before.is_some());
    }

    #[test]
    fn too_few_scores_leave_the_raw_band() {
        let rows: Vec<Matured> = (0..10)
            .map(|d| Matured {
                base: d,
                target: d + 1,
                q10: 90.0,
                q90: 110.0,
                actual: 100.0,
                scale: 0.02,
            })
            .collect();
        assert_eq!(calibrate(&rows, 20, &Settings::default()), None);
    }

    #[test]
    fn the_calibrated_band_never_crosses_the_point() {
        let c = Calibration {
            q: -50.0,
            alpha: 0.2,
            n: 100,
        };
        let (lo, hi) = widen(100.0, 95.0, 106.0, 0.02, &c);
        assert!(lo <= 100.0 && hi >= 100.0, "{lo} {hi}");
    }
}
