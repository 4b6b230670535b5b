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
    let mut search = Search::new(x0, lower, upper, opts);
    while let Some(x) = search.point() {
        let v = f(x);
        search.tell(v);
    }
    search.minimum()
}

/// What the search waits for: the objective at the point [`Search::point`] returns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Vertex i of the starting simplex.
    Start(usize),
    /// The reflection of the worst vertex through the centroid (`xr`).
    Reflect,
    /// The expansion beyond the reflection (`trial`), which had objective `fr`.
    Expand {
        fr: f64,
    },
    /// The contraction (`trial`): outside when the reflection beat the worst vertex.
    Contract {
        fr: f64,
        outside: bool,
    },
    /// Vertex i after shrinking towards the best one.
    Shrink(usize),
    Done,
}

/// [`minimise`] as a state machine the caller drives: [`Search::point`] is the next point to
/// evaluate and [`Search::tell`] its objective. Several searches can then be driven in lockstep
/// (their objectives evaluated together), each taking exactly the steps `minimise` would.
#[derive(Debug, Clone)]
pub struct Search {
    lower: Vec<f64>,
    upper: Vec<f64>,
    opts: Options,
    simplex: Vec<Vec<f64>>,
    fs: Vec<f64>,
    order: Vec<usize>,
    centroid: Vec<f64>,
    xr: Vec<f64>,
    trial: Vec<f64>,
    /// Iterations begun.
    iter: usize,
    phase: Phase,
    // This iteration's best, second-worst and worst vertices.
    best: usize,
    second_worst: usize,
    worst: usize,
}

impl Search {
    /// A search from `x0` in the box `[lower, upper]` (same non-zero lengths).
    pub fn new(x0: &[f64], lower: &[f64], upper: &[f64], opts: Options) -> Self {
        let n = x0.len();
        debug_assert!(n > 0 && lower.len() == n && upper.len() == n);
        let mut s = Self {
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            opts,
            simplex: Vec::with_capacity(n + 1),
            fs: vec![f64::INFINITY; n + 1],
            order: (0..=n).collect(),
            centroid: vec![0.0; n],
            xr: vec![0.0; n],
            trial: vec![0.0; n],
            iter: 0,
            phase: Phase::Start(0),
            best: 0,
            second_worst: 0,
            worst: 0,
        };
        let mut start = x0.to_vec();
        s.clamp_vec(&mut start);
        for i in 0..n {
            let mut v = start.clone();
            v[i] = if v[i].abs() < 1e-8 { 1e-4 } else { v[i] * 1.05 };
            s.clamp_vec(&mut v);
            s.simplex.push(v);
        }
        s.simplex.push(start);
        s
    }

    fn clamp_vec(&self, x: &mut [f64]) {
        for ((v, lo), hi) in x.iter_mut().zip(&self.lower).zip(&self.upper) {
            *v = v.clamp(*lo, *hi);
        }
    }

    fn dim(&self) -> usize {
        self.centroid.len()
    }

    /// The point whose objective the search needs next; `None` once it has finished.
    pub fn point(&self) -> Option<&[f64]> {
        match self.phase {
            Phase::Start(i) | Phase::Shrink(i) => Some(&self.simplex[i]),
            Phase::Reflect => Some(&self.xr),
            Phase::Expand { .. } | Phase::Contract { .. } => Some(&self.trial),
            Phase::Done => None,
        }
    }

    /// The objective at [`Search::point`] (a non-finite value counts as +∞); moves on to the
    /// next point. Ignored once the search has finished.
    pub fn tell(&mut self, v: f64) {
        let v = if v.is_finite() { v } else { f64::INFINITY };
        match self.phase {
            Phase::Start(i) => {
                self.fs[i] = v;
                if i < self.dim() {
                    self.phase = Phase::Start(i + 1);
                } else {
                    self.iterate();
                }
            }
            Phase::Reflect => self.reflected(v),
            Phase::Expand { fr } => {
                if v < fr {
                    self.replace_worst_with_trial(v);
                } else {
                    self.replace_worst_with_reflection(fr);
                }
                self.iterate();
            }
            Phase::Contract { fr, outside } => {
                if (outside && v <= fr) || (!outside && v < self.fs[self.worst]) {
                    self.replace_worst_with_trial(v);
                    self.iterate();
                } else {
                    self.shrink_from(0);
                }
            }
            Phase::Shrink(i) => {
                self.fs[i] = v;
                self.shrink_from(i + 1);
            }
            Phase::Done => {}
        }
    }

    /// Begins the next iteration (sort, stopping test, centroid, reflection) or finishes.
    fn iterate(&mut self) {
        if self.iter >= self.opts.max_iter {
            self.phase = Phase::Done;
            return;
        }
        self.iter += 1;
        let n = self.dim();
        let fs = &self.fs;
        self.order.sort_by(|&a, &b| fs[a].total_cmp(&fs[b]));
        (self.best, self.second_worst, self.worst) =
            (self.order[0], self.order[n - 1], self.order[n]);
        if population_sd(&self.fs) < self.opts.f_tol {
            self.phase = Phase::Done;
            return;
        }
        self.centroid.fill(0.0);
        for (i, v) in self.simplex.iter().enumerate() {
            if i != self.worst {
                for (c, x) in self.centroid.iter_mut().zip(v) {
                    *c += x;
                }
            }
        }
        let nf = n as f64;
        self.centroid.iter_mut().for_each(|c| *c /= nf);
        // Reflect the worst vertex through the centroid.
        for ((r, c), w) in self
            .xr
            .iter_mut()
            .zip(&self.centroid)
            .zip(&self.simplex[self.worst])
        {
            *r = c + (c - w);
        }
        let mut xr = std::mem::take(&mut self.xr);
        self.clamp_vec(&mut xr);
        self.xr = xr;
        self.phase = Phase::Reflect;
    }

    fn reflected(&mut self, fr: f64) {
        let nf = self.dim() as f64;
        let (best, second_worst, worst) = (self.best, self.second_worst, self.worst);
        if self.fs[best] <= fr && fr < self.fs[second_worst] {
            self.replace_worst_with_reflection(fr);
            self.iterate();
            return;
        }
        let (step, phase) = if fr < self.fs[best] {
            // Expand further along the same line.
            (1.0 + 2.0 / nf, Phase::Expand { fr })
        } else {
            // Contract: outside when the reflection beat the worst vertex, inside otherwise.
            let outside = fr < self.fs[worst];
            let sign = if outside { 1.0 } else { -1.0 };
            (sign * (0.75 - 0.5 / nf), Phase::Contract { fr, outside })
        };
        for ((t, c), r) in self.trial.iter_mut().zip(&self.centroid).zip(&self.xr) {
            *t = c + step * (r - c);
        }
        let mut trial = std::mem::take(&mut self.trial);
        self.clamp_vec(&mut trial);
        self.trial = trial;
        self.phase = phase;
    }

    fn replace_worst_with_reflection(&mut self, fr: f64) {
        self.simplex[self.worst].copy_from_slice(&self.xr);
        self.fs[self.worst] = fr;
    }

    fn replace_worst_with_trial(&mut self, ft: f64) {
        self.simplex[self.worst].copy_from_slice(&self.trial);
        self.fs[self.worst] = ft;
    }

    /// Shrinks vertex `from` (or the next one that is not the best) towards the best vertex
    /// and asks for its objective; begins the next iteration when none is left. Convex
    /// combinations stay in the box.
    fn shrink_from(&mut self, from: usize) {
        let best = self.best;
        let Some(i) = (from..self.simplex.len()).find(|&i| i != best) else {
            self.iterate();
            return;
        };
        let shrink = 1.0 - 1.0 / self.dim() as f64;
        let (anchor, v) = if i < best {
            let (lo, hi) = self.simplex.split_at_mut(best);
            (&hi[0], &mut lo[i])
        } else {
            let (lo, hi) = self.simplex.split_at_mut(i);
            (&lo[best], &mut hi[0])
        };
        for (x, a) in v.iter_mut().zip(anchor.iter()) {
            *x = a + shrink * (*x - a);
        }
        self.phase = Phase::Shrink(i);
    }

    /// Whether the search has finished.
    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The best vertex and its objective (the first of equals).
    pub fn minimum(mut self) -> Minimum {
        let n = self.dim();
        let fs = &self.fs;
        let best = (0..=n)
            .min_by(|&a, &b| fs[a].total_cmp(&fs[b]))
            .unwrap_or(n);
        Minimum {
            f: self.fs[best],
            x: self.simplex.swap_remove(best),
        }
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
