//! A box-bounded Nelder–Mead minimiser, the optimiser R's `forecast::ets` and statsforecast fit
//! ETS models with: derivative-free (the likelihood surface has kinks at the bounds), a few
//! parameters, a cheap objective.
//!
//! The coefficients adapt to the dimension n (Gao & Han 2012, "Implementing the Nelder-Mead
//! simplex algorithm with adaptive parameters"): reflection 1, expansion 1 + 2/n, contraction
//! 3/4 − 1/(2n), shrink 1 − 1/n. Every trial point is clamped into the box. It stops when the
//! population standard deviation of the objective over the simplex falls under `f_tol`, or after
//! `max_iter` iterations. A non-finite objective counts as +∞, so a point where the model
//! diverges is never kept over a finite one.

/// When to stop.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_iter: usize,
    pub f_tol: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_iter: 2_000,
            f_tol: 1e-4,
        }
    }
}

/// The best point found and its objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
}

/// Minimises `f` over the box `[lower, upper]`, starting from the simplex of `x0` and, for each
/// coordinate i, `x0` with coordinate i scaled by 1.05 (set to 1e-4 where it is ~0).
///
/// `x0`, `lower` and `upper` must have the same non-zero length (the caller's invariant).
pub fn minimise(
    mut f: impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: Options,
) -> Minimum {
    let n = x0.len();
    debug_assert!(n > 0 && lower.len() == n && upper.len() == n);
    let clamp = |x: &mut [f64]| {
        for ((v, lo), hi) in x.iter_mut().zip(lower).zip(upper) {
            *v = v.clamp(*lo, *hi);
        }
    };
    let mut eval = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() { v } else { f64::INFINITY }
    };

    // n + 1 vertices.
    let mut simplex: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    let mut start = x0.to_vec();
    clamp(&mut start);
    for i in 0..n {
        let mut v = start.clone();
        v[i] = if v[i].abs() < 1e-8 { 1e-4 } else { v[i] * 1.05 };
        clamp(&mut v);
        simplex.push(v);
    }
    simplex.push(start);
    let mut fs: Vec<f64> = simplex.iter().map(|v| eval(v)).collect();

    let nf = n as f64;
    let (expand, contract, shrink) = (1.0 + 2.0 / nf, 0.75 - 0.5 / nf, 1.0 - 1.0 / nf);
    let mut order: Vec<usize> = (0..=n).collect();
    let (mut centroid, mut xr, mut trial) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);

    for _ in 0..opts.max_iter {
        order.sort_by(|&a, &b| fs[a].total_cmp(&fs[b]));
        let (best, second_worst, worst) = (order[0], order[n - 1], order[n]);
        if population_sd(&fs) < opts.f_tol {
            break;
        }
        centroid.fill(0.0);
        for (i, v) in simplex.iter().enumerate() {
            if i != worst {
                for (c, x) in centroid.iter_mut().zip(v) {
                    *c += x;
                }
            }
        }
        centroid.iter_mut().for_each(|c| *c /= nf);

        // Reflect the worst vertex through the centroid.
        for ((r, c), w) in xr.iter_mut().zip(&centroid).zip(&simplex[worst]) {
            *r = c + (c - w);
        }
        clamp(&mut xr);
        let fr = eval(&xr);
        if fs[best] <= fr && fr < fs[second_worst] {
            simplex[worst].copy_from_slice(&xr);
            fs[worst] = fr;
            continue;
        }
        if fr < fs[best] {
            // Expand further along the same line.
            for ((t, c), r) in trial.iter_mut().zip(&centroid).zip(&xr) {
                *t = c + expand * (r - c);
            }
            clamp(&mut trial);
            let fe = eval(&trial);
            if fe < fr {
                simplex[worst].copy_from_slice(&trial);
                fs[worst] = fe;
            } else {
                simplex[worst].copy_from_slice(&xr);
                fs[worst] = fr;
            }
            continue;
        }
        // Contract: outside when the reflection beat the worst vertex, inside otherwise.
        let outside = fr < fs[worst];
        let sign = if outside { 1.0 } else { -1.0 };
        for ((t, c), r) in trial.iter_mut().zip(&centroid).zip(&xr) {
            *t = c + sign * contract * (r - c);
        }
        clamp(&mut trial);
        let fc = eval(&trial);
        if (outside && fc <= fr) || (!outside && fc < fs[worst]) {
            simplex[worst].copy_from_slice(&trial);
            fs[worst] = fc;
            continue;
        }
        // Shrink every vertex towards the best (convex combinations stay in the box).
        let anchor = simplex[best].clone();
        for (i, v) in simplex.iter_mut().enumerate() {
            if i != best {
                for (x, a) in v.iter_mut().zip(&anchor) {
                    *x = a + shrink * (*x - a);
                }
                fs[i] = eval(v);
            }
        }
    }
    let best = (0..=n)
        .min_by(|&a, &b| fs[a].total_cmp(&fs[b]))
        .unwrap_or(n);
    Minimum {
        x: simplex.swap_remove(best),
        f: fs[best],
    }
}

/// Population standard deviation; NaN when any value is infinite (so it never stops early).
fn population_sd(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64]) -> f64 {
        (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2)
    }

    #[test]
    fn finds_the_minimum_of_a_curved_valley() {
        let opts = Options {
            max_iter: 5_000,
            f_tol: 1e-14,
        };
        let m = minimise(rosenbrock, &[-1.2, 1.0], &[-5.0; 2], &[5.0; 2], opts);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-3 && (m.x[1] - 1.0).abs() < 1e-3,
            "{m:?}"
        );
        assert!(m.f < 1e-6);
    }

    #[test]
    fn a_minimum_outside_the_box_ends_on_its_edge() {
        let f = |x: &[f64]| (x[0] - 3.0).powi(2) + (x[1] + 2.0).powi(2);
        let opts = Options {
            max_iter: 2_000,
            f_tol: 1e-12,
        };
        let m = minimise(f, &[0.5, 0.5], &[0.0, 0.0], &[1.0, 1.0], opts);
        assert!((m.x[0] - 1.0).abs() < 1e-6 && m.x[1].abs() < 1e-6, "{m:?}");
        assert!((m.f - 8.0).abs() < 1e-6);
    }

    #[test]
    fn a_diverging_region_is_never_preferred_and_max_iter_bounds_the_work() {
        let mut calls = 0;
        let f = |x: &[f64]| {
            calls += 1;
            if x[0] > 0.5 {
                f64::NAN
            } else {
                (x[0] - 0.2).powi(2)
            }
        };
        let opts = Options {
            max_iter: 50,
            f_tol: 0.0,
        };
        let m = minimise(f, &[0.4], &[0.0], &[1.0], opts);
        assert!(m.f.is_finite() && m.x[0] <= 0.5, "{m:?}");
        // Each iteration evaluates at most n + 2 points (reflect, one more, or a shrink).
        assert!(calls <= 2 + 50 * 3, "{calls}");
    }
}
