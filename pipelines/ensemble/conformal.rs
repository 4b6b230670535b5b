//! Calibrated intervals: split-conformal on the ensemble's matured outcomes, normalised by
//! volatility, with adaptive conformal inference (Gibbs & Candès 2021) steering the miscoverage
//! level online, per horizon.
//!
//! * A matured prediction's score is how far the realised close fell outside the raw blended
//!   q10–q90 band, in log price, per unit of the code's 20-day volatility scaled to the horizon
//!   (`vol_20d · √h` at the base date): `max(ln(q10/y), ln(y/q90)) / σ`. Negative inside.
//! * At each base date the calibration set is the scores whose target date is before it (so a
//!   re-run of ds sees exactly what ds's close knew) within the trailing window; the interval is
//!   the raw band widened (or narrowed) by the set's `⌈(n+1)(1−α)⌉/n` quantile `Q`:
//!   `q10·e^(−Qσ)`, `q90·e^(Qσ)`, never past the point.
//! * ACI: α starts at the target (0.2 for q10–q90) and after each target day moves by
//!   `γ (target − misses)`, the day's miss rate of the intervals that were issued for it; so
//!   coverage that falls (a regime change) widens the next intervals, and the reverse.
//! * The whole recursion is replayed from the lake's outcomes on every run: deterministic,
//!   idempotent, no state of its own.

use std::collections::BTreeMap;

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
    /// Fewer scores than this: no calibration (the raw band).
    pub min_scores: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            target: 0.2,
            gamma: 0.005,
            window_days: 365,
            min_scores: 50,
        }
    }
}

/// The calibration in force at a base date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The widening quantile, in units of the row's σ.
    pub q: f64,
    /// ACI's miscoverage level behind it.
    pub alpha: f64,
    /// Scores in the calibration set.
    pub n: usize,
}

/// The `⌈(n+1)(1−α)⌉`-th smallest score (split conformal's finite-sample quantile), clamped
/// to the set.
fn conformal_quantile(sorted: &[f64], alpha: f64) -> f64 {
    let n = sorted.len();
    let rank = (((n + 1) as f64) * (1.0 - alpha)).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Applies `c` to a raw band around `point`: `(q10, q90)`.
pub fn widen(point: f64, q10: f64, q90: f64, scale: f64, c: &Calibration) -> (f64, f64) {
    let lo = (q10 * (-c.q * scale).exp()).min(point);
    let hi = (q90 * (c.q * scale).exp()).max(point);
    (lo, hi)
}

/// Replays ACI over `matured` (one horizon; any order) and returns the calibration for base
/// date `ds`. Outcomes whose target date is not before `ds` are ignored. `None`: too few scores.
pub fn calibrate(matured: &[Matured], ds: i32, s: &Settings) -> Option<Calibration> {
    replay(matured, ds, s).get(&ds).copied().flatten()
}

/// The calibration issued at every base date of `matured` and at `ds` (see [`calibrate`]).
pub fn replay(matured: &[Matured], ds: i32, s: &Settings) -> BTreeMap<i32, Option<Calibration>> {
    let mut rows: Vec<(&Matured, f64)> = matured
        .iter()
        .filter(|m| m.target < ds && m.base < m.target)
        .filter_map(|m| m.score().map(|sc| (m, sc)))
        .collect();
    rows.sort_by(|a, b| {
        (a.0.target, a.0.base)
            .cmp(&(b.0.target, b.0.base))
            .then(a.1.total_cmp(&b.1))
    });
    let mut bases: Vec<i32> = rows.iter().map(|(m, _)| m.base).collect();
    bases.push(ds);
    bases.sort_unstable();
    bases.dedup();

    let lo_alpha = 0.005;
    let mut alpha = s.target;
    let mut issued: BTreeMap<i32, Option<Calibration>> = BTreeMap::new();
    // The calibration set: scores in target order (to evict) and sorted (to take quantiles).
    let mut window: std::collections::VecDeque<(i32, f64)> = Default::default();
    let mut sorted: Vec<f64> = Vec::new();
    let mut next = 0; // rows absorbed so far
    for &b in &bases {
        // Absorb the target days before b, one ACI step per day.
        while next < rows.len() && rows[next].0.target < b {
            let day = rows[next].0.target;
            let (mut misses, mut n) = (0usize, 0usize);
            while next < rows.len() && rows[next].0.target == day {
                let (m, sc) = rows[next];
                let q = issued.get(&m.base).copied().flatten().map_or(0.0, |c| c.q);
                misses += usize::from(sc > q);
                n += 1;
                window.push_back((day, sc));
                let at = sorted.partition_point(|x| x.total_cmp(&sc).is_lt());
                sorted.insert(at, sc);
                next += 1;
            }
            let err = misses as f64 / n as f64;
            alpha = (alpha + s.gamma * (s.target - err)).clamp(lo_alpha, 1.0 - lo_alpha);
        }
        while window.front().is_some_and(|(t, _)| *t < b - s.window_days) {
            if let Some((_, sc)) = window.pop_front() {
                let at = sorted.partition_point(|x| x.total_cmp(&sc).is_lt());
                sorted.remove(at);
            }
        }
        let cal = (sorted.len() >= s.min_scores).then(|| Calibration {
            q: conformal_quantile(&sorted, alpha),
            alpha,
            n: sorted.len(),
        });
        issued.insert(b, cal);
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

    /// 30 codes a day for `days` days, daily vol `vol(day)`; the raw band claims
    /// ±`claimed`·`band_vol(day)` (1.2816 σ is a true q10–q90 for normal returns). Returns the
    /// coverage of the raw and of the calibrated intervals issued from day 100 on.
    fn simulate(
        days: i32,
        claimed: f64,
        vol: impl Fn(i32) -> f64,
        band_vol: impl Fn(i32) -> f64,
    ) -> (f64, f64) {
        let s = Settings::default();
        let mut rng = Rng(7);
        let mut matured: Vec<Matured> = Vec::new();
        for day in 0..days {
            for _ in 0..30 {
                let y = 100.0 * (vol(day) * rng.normal()).exp();
                let w = claimed * band_vol(day);
                // The row's scale is the 20-day vol the pipeline would see: the truth, lagged.
                let scale = vol((day - 10).max(0));
                let (q10, q90) = (100.0 * (-w).exp(), 100.0 * w.exp());
                matured.push(Matured {
                    base: day,
                    target: day + 1,
                    q10,
                    q90,
                    actual: y,
                    scale,
                });
            }
        }
        let issued = replay(&matured, days + 1, &s);
        let (mut raw_in, mut cal_in, mut n) = (0usize, 0usize, 0usize);
        for m in matured.iter().filter(|m| m.base >= 100) {
            n += 1;
            raw_in += usize::from(m.q10 <= m.actual && m.actual <= m.q90);
            if let Some(Some(c)) = issued.get(&m.base) {
                let (lo, hi) = widen(100.0, m.q10, m.q90, m.scale, c);
                cal_in += usize::from(lo <= m.actual && m.actual <= hi);
            }
        }
        (raw_in as f64 / n as f64, cal_in as f64 / n as f64)
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
    fn outcomes_maturing_on_or_after_ds_are_not_seen() {
        let s = Settings {
            min_scores: 5,
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
