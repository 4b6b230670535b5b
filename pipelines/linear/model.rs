//! The linear ranker itself: robust standardisation, a weighted ridge fit on the date's return
//! ranks, the score priced as a return, and the residuals that give its interval and its
//! up / flat / down probabilities.

use serde::{Deserialize, Serialize};

use crate::lgbm::target::ReturnMap;

/// A standardised feature is clipped to ± this many scaled MADs (Qlib's RobustZScoreNorm).
const CLIP: f64 = 3.0;
/// The MAD of a normal sample is 1/1.4826 of its standard deviation.
const MAD_TO_SD: f64 = 1.4826;
/// Residual quantiles kept for the interval and the probabilities (1%, 2%, …, 99%).
const RESIDUAL_QUANTILES: usize = 99;

/// A fitted model: everything `linear.predict` needs, serialised in the model's card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    /// Per feature: the training rows' median and scaled MAD (1 where the MAD is 0).
    pub centre: Vec<f64>,
    pub scale: Vec<f64>,
    /// The ridge coefficients on the standardised features (no intercept: the label's ranks
    /// are centred on every date).
    pub coef: Vec<f64>,
    /// From the score to a return: what a rank was worth on the newest dates.
    pub return_map: ReturnMap,
    /// Quantiles 1%..99% of the realised return minus the mapped score on those dates.
    pub residuals: Vec<f64>,
}

/// What went into a fit.
pub struct FitRows<'a> {
    /// Row-major features (NaN: missing), `n_features` per row.
    pub x: &'a [f64],
    pub n_features: usize,
    /// The rows to learn from, their label (the centred rank) and weight.
    pub rows: &'a [usize],
    pub label: &'a [f64],
    pub weight: &'a [f64],
}

impl LinearModel {
    /// Fits the ridge `(XᵀWX + α·ΣW·I) β = XᵀWy` on the standardised features, its scores not
    /// yet priced (a zero return line, no residuals: the caller takes them on its newest
    /// dates). `None` when there are no rows or the system is singular (α = 0 and a constant
    /// feature).
    pub fn fit(data: &FitRows, alpha: f64) -> Option<Self> {
        let p = data.n_features;
        if data.rows.is_empty() || data.rows.len() != data.label.len() {
            return None;
        }
        let (centre, scale) = robust_scale(data);
        let mut xtx = vec![0.0; p * p];
        let mut xty = vec![0.0; p];
        let mut z = vec![0.0; p];
        let mut total = 0.0;
        for (k, &r) in data.rows.iter().enumerate() {
            let w = data.weight[k];
            standardise(&data.x[r * p..(r + 1) * p], &centre, &scale, &mut z);
            for i in 0..p {
                let wz = w * z[i];
                xty[i] += wz * data.label[k];
                for j in 0..=i {
                    xtx[i * p + j] += wz * z[j];
                }
            }
            total += w;
        }
        for i in 0..p {
            for j in 0..i {
                xtx[j * p + i] = xtx[i * p + j];
            }
            xtx[i * p + i] += alpha * total;
        }
        let coef = solve_spd(xtx, xty, p)?;
        Some(Self {
            centre,
            scale,
            coef,
            return_map: ReturnMap {
                intercept: 0.0,
                slope: 0.0,
            },
            residuals: Vec::new(),
        })
    }

    /// The model's score of one row of features.
    pub fn score(&self, row: &[f64]) -> f64 {
        (0..row.len())
            .map(|j| z_score(row[j], self.centre[j], self.scale[j]) * self.coef[j])
            .sum()
    }

    /// The return forecast of one row, its q10 / q90 and `[down, flat, up]` probabilities
    /// for a flat band of ±`band`: the residuals' share on each side of the band.
    pub fn forecast(&self, row: &[f64], band: f64) -> (f64, f64, f64, [f64; 3]) {
        forecast_from(
            self.return_map.apply(self.score(row)),
            &self.residuals,
            band,
        )
    }
}

/// A return forecast `ret` with its q10 / q90 and `[down, flat, up]` probabilities for a flat
/// band of ±`band`: the residual quantiles' share on each side of the band.
pub(crate) fn forecast_from(ret: f64, residuals: &[f64], band: f64) -> (f64, f64, f64, [f64; 3]) {
    let q = |p: f64| ret + quantile(residuals, p);
    let below = |x: f64| cdf(residuals, x - ret);
    let down = below(-band);
    let up = 1.0 - below(band);
    (ret, q(0.1), q(0.9), [down, (1.0 - up - down).max(0.0), up])
}

/// Per feature, the median and scaled MAD of the finite values of `rows` (0 and 1 without any).
pub(crate) fn robust_scale(data: &FitRows) -> (Vec<f64>, Vec<f64>) {
    let p = data.n_features;
    let mut centre = vec![0.0; p];
    let mut scale = vec![1.0; p];
    let mut col = Vec::with_capacity(data.rows.len());
    for j in 0..p {
        col.clear();
        col.extend(
            data.rows
                .iter()
                .map(|&r| data.x[r * p + j])
                .filter(|v| v.is_finite()),
        );
        let Some(m) = median(&mut col) else { continue };
        for v in col.iter_mut() {
            *v = (*v - m).abs();
        }
        let mad = median(&mut col).unwrap_or(0.0) * MAD_TO_SD;
        centre[j] = m;
        scale[j] = if mad > 0.0 { mad } else { 1.0 };
    }
    (centre, scale)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let (n, mid) = (v.len(), v.len() / 2);
    let (lo, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    Some(if n % 2 == 1 {
        upper
    } else {
        let lower = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    })
}

/// `(x − centre) / scale` clipped to ±[`CLIP`]; a missing value is 0 (the median).
pub(crate) fn z_score(x: f64, centre: f64, scale: f64) -> f64 {
    if x.is_finite() {
        ((x - centre) / scale).clamp(-CLIP, CLIP)
    } else {
        0.0
    }
}

/// [`z_score`] of each feature of `x`, into `out`.
fn standardise(x: &[f64], centre: &[f64], scale: &[f64], out: &mut [f64]) {
    for j in 0..out.len() {
        out[j] = z_score(x[j], centre[j], scale[j]);
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major `n × n`) by Cholesky;
/// `None` when `a` is not positive definite.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let d = a[j * n + j] - (0..j).map(|k| a[j * n + k].powi(2)).sum::<f64>();
        if d.is_nan() || d <= 1e-300 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        b[i] = (b[i] - (0..i).map(|k| a[i * n + k] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    for i in (0..n).rev() {
        b[i] = (b[i] - (i + 1..n).map(|k| a[k * n + i] * b[k]).sum::<f64>()) / a[i * n + i];
    }
    Some(b)
}

/// Quantiles 1%..99% of `v` (linear interpolation between order statistics); empty for an
/// empty `v`.
pub fn residual_quantiles(v: &mut [f64]) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    v.sort_unstable_by(f64::total_cmp);
    (1..=RESIDUAL_QUANTILES)
        .map(|k| {
            let pos = (k as f64 / 100.0) * (v.len() - 1) as f64;
            let (i, f) = (pos.floor() as usize, pos.fract());
            let next = v[(i + 1).min(v.len() - 1)];
            v[i] + f * (next - v[i])
        })
        .collect()
}

/// The residual quantile at probability `p` (0 without residuals).
fn quantile(q: &[f64], p: f64) -> f64 {
    if q.is_empty() {
        return 0.0;
    }
    let pos = (p * 100.0 - 1.0).clamp(0.0, (q.len() - 1) as f64);
    let (i, f) = (pos.floor() as usize, pos.fract());
    q[i] + f * (q[(i + 1).min(q.len() - 1)] - q[i])
}

/// The share of residuals below `x`, read off the quantiles 1%..99% (½ without residuals).
fn cdf(q: &[f64], x: f64) -> f64 {
    if q.is_empty() {
        return 0.5;
    }
    let n = q.len();
    if x <= q[0] {
        return 0.01;
    }
    if x >= q[n - 1] {
        return 1.0 - 0.01;
    }
    let i = q.partition_point(|v| *v <= x).saturating_sub(1);
    let span = q[i + 1] - q[i];
    let f = if span > 0.0 { (x - q[i]) / span } else { 0.0 };
    (i as f64 + 1.0 + f) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(x: &[f64], p: usize, label: &[f64], alpha: f64) -> Option<LinearModel> {
        let rows: Vec<usize> = (0..label.len()).collect();
        let weight = vec![1.0; label.len()];
        LinearModel::fit(
            &FitRows {
                x,
                n_features: p,
                rows: &rows,
                label,
                weight: &weight,
            },
            alpha,
        )
    }

    #[test]
    fn the_ridge_recovers_a_planted_linear_rule_on_standardised_features() {
        let n = 400;
        let mut x = Vec::new();
        for i in 0..n {
            let a = ((i * 37) % 101) as f64 / 100.0 - 0.5;
            let b = ((i * 53) % 97) as f64 / 96.0 - 0.5;
            x.extend([a * 10.0 + 3.0, b]);
        }
        let rows: Vec<usize> = (0..n).collect();
        let weight = vec![1.0; n];
        let probe = FitRows {
            x: &x,
            n_features: 2,
            rows: &rows,
            label: &weight,
            weight: &weight,
        };
        let (centre, scale) = robust_scale(&probe);
        assert!((centre[0] - 3.0).abs() < 0.1 && (scale[0] - 10.0 * 0.25 * MAD_TO_SD).abs() < 0.1);
        // label = 0.2·z1 − 0.1·z2 exactly (no row is clipped: |z| < 1.4).
        let label: Vec<f64> = (0..n)
            .map(|i| {
                0.2 * (x[2 * i] - centre[0]) / scale[0]
                    - 0.1 * (x[2 * i + 1] - centre[1]) / scale[1]
            })
            .collect();
        let coef = fit(&x, 2, &label, 0.0).expect("fit").coef;
        assert!(
            (coef[0] - 0.2).abs() < 1e-9 && (coef[1] + 0.1).abs() < 1e-9,
            "{coef:?}"
        );
        // A penalty shrinks the coefficients toward 0.
        let shrunk = fit(&x, 2, &label, 1.0).expect("fit").coef;
        assert!(shrunk[0].abs() < 0.2 && shrunk[1].abs() < 0.1, "{shrunk:?}");
    }

    #[test]
    fn a_missing_feature_counts_as_its_median_and_outliers_are_clipped() {
        let m = LinearModel {
            centre: vec![1.0, 0.0],
            scale: vec![2.0, 1.0],
            coef: vec![0.5, 1.0],
            return_map: ReturnMap {
                intercept: 0.0,
                slope: 1.0,
            },
            residuals: Vec::new(),
        };
        assert_eq!(m.score(&[f64::NAN, 0.25]), 0.25);
        assert_eq!(m.score(&[1e9, 0.0]), 0.5 * CLIP);
        assert_eq!(m.score(&[3.0, f64::INFINITY]), 0.5);
    }

    #[test]
    fn a_constant_feature_without_a_penalty_is_singular_and_refused() {
        let x = [1.0, 0.1, 1.0, 0.2, 1.0, 0.3, 1.0, 0.4];
        let label = [0.1, 0.2, 0.3, 0.4];
        // The constant column standardises to 0 everywhere: XᵀX is singular.
        assert!(fit(&x, 2, &label, 0.0).is_none());
        assert!(
            fit(&x, 2, &label, 0.01).is_some(),
            "a penalty makes it solvable"
        );
        assert!(fit(&[], 2, &[], 0.1).is_none());
    }

    #[test]
    fn probabilities_and_interval_come_from_the_residual_quantiles() {
        let mut res: Vec<f64> = (0..1001).map(|i| (i as f64 - 500.0) / 10_000.0).collect();
        let q = residual_quantiles(&mut res);
        assert_eq!(q.len(), 99);
        assert!((q[49] - 0.0).abs() < 1e-12 && (q[9] + 0.04).abs() < 1e-12);
        let m = LinearModel {
            centre: vec![0.0],
            scale: vec![1.0],
            coef: vec![1.0],
            return_map: ReturnMap {
                intercept: 0.01,
                slope: 0.0,
            },
            residuals: q,
        };
        let (ret, q10, q90, [down, flat, up]) = m.forecast(&[0.0], 0.003);
        assert!((ret - 0.01).abs() < 1e-12);
        assert!((q10 - (0.01 - 0.04)).abs() < 1e-9 && (q90 - 0.05).abs() < 1e-9);
        // Residuals uniform on ±0.05: P(ret + e < −0.003) = (−0.013 + 0.05) / 0.1.
        assert!((down - 0.37).abs() < 1e-9, "{down}");
        assert!((up - (1.0 - 0.43)).abs() < 1e-9, "{up}");
        assert!((down + flat + up - 1.0).abs() < 1e-12);
        // Without residuals: no interval, even odds either side.
        let bare = LinearModel {
            residuals: Vec::new(),
            ..m
        };
        let (_, lo, hi, p) = bare.forecast(&[0.0], 0.003);
        assert_eq!((lo, hi), (0.01, 0.01));
        assert_eq!(p, [0.5, 0.0, 0.5]);
    }
}
