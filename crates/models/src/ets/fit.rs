//! Fitting one ETS model by maximum likelihood, as statsforecast's `AutoETS` (after R's
//! `forecast::ets`) does: initial smoothing parameters and states from simple heuristics, then
//! Nelder–Mead over (α, β, φ, l₀, b₀) inside the box α ∈ [1e-4, 0.9999], β ∈ [1e-4, α₀],
//! φ ∈ [0.8, 0.98], where α₀ = 0.19006 is α's starting value.
//!
//! That β bound is statsforecast's (its `initparam` lowers β's upper bound to the initial α in
//! place; augurs-ets ports it); R's `ets` instead requires β ≤ α at every step. krxflow keeps
//! statsforecast's box so that its forecasts are the reference implementation's (checked in
//! `super::tests` and `benches/ets.rs`): with R's region, 110 of 2,141 full-market series fit
//! a damped trend with β up to 0.54 and φ at its lower bound, moving the one-step forecast by
//! up to 1.5%.
//!
//! With Gaussian additive errors the likelihood, maximised over σ², depends on the parameters
//! only through the sum of squared one-step errors (SSE), so the objective is n·ln(SSE).

use super::EtsError;
use super::model::{Params, State, Trend, filter};
use super::nelder_mead::{self, Options};

/// Box bounds of α, β and φ (statsforecast's and R's defaults).
const ALPHA: (f64, f64) = (1e-4, 0.9999);
const BETA: (f64, f64) = (1e-4, 0.9999);
const PHI: (f64, f64) = (0.8, 0.98);

/// A fitted model: its parameters, its state after the last observation and its fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub trend: Trend,
    pub params: Params,
    pub last: State,
    /// Sum of squared one-step errors.
    pub sse: f64,
    /// Observations.
    pub n: usize,
}

impl Fitted {
    /// Estimated parameters and initial states (σ² not included).
    pub fn n_params(&self) -> usize {
        self.trend.n_states() + self.trend.n_smoothing()
    }

    /// −2 × the Gaussian log-likelihood at the maximum-likelihood σ² = SSE/n. A perfect fit
    /// (a series that never moved) is floored at the smallest positive SSE, so it stays finite
    /// and comparable.
    pub fn neg2_log_likelihood(&self) -> f64 {
        let n = self.n as f64;
        let sse = self.sse.max(f64::MIN_POSITIVE);
        n * ((2.0 * std::f64::consts::PI * sse / n).ln() + 1.0)
    }

    /// The small-sample corrected AIC, counting σ² as a parameter.
    pub fn aicc(&self) -> f64 {
        let k = (self.n_params() + 1) as f64;
        let n = self.n as f64;
        self.neg2_log_likelihood() + 2.0 * k + 2.0 * k * (k + 1.0) / (n - k - 1.0)
    }

    /// The one-step error variance: SSE over the degrees of freedom left, n − parameters (augurs
    /// divides by n − parameters − 2).
    pub fn sigma2(&self) -> f64 {
        self.sse / (self.n - self.n_params()) as f64
    }
}

/// Fits `trend`'s model to `y`. Needs at least `n_params + 4` observations (so σ² and the AICc
/// have degrees of freedom left).
pub fn fit(y: &[f64], trend: Trend) -> Result<Fitted, EtsError> {
    let n_params = trend.n_states() + trend.n_smoothing();
    let need = n_params + 4;
    if y.len() < need {
        return Err(EtsError::NotEnoughData {
            have: y.len(),
            need,
        });
    }
    let (x0, lower, upper) = start(y, trend);
    let objective = |x: &[f64]| {
        let (p, s) = unpack(x, trend);
        let (sse, _) = filter(y, p, s);
        y.len() as f64 * sse.max(f64::MIN_POSITIVE).ln()
    };
    let best = nelder_mead::minimise(objective, &x0, &lower, &upper, Options::default());
    if !best.f.is_finite() {
        return Err(EtsError::NoFit(trend.model_name()));
    }
    let (params, init) = unpack(&best.x, trend);
    let (sse, last) = filter(y, params, init);
    if !(sse.is_finite() && last.level.is_finite() && last.slope.is_finite()) {
        return Err(EtsError::NoFit(trend.model_name()));
    }
    Ok(Fitted {
        trend,
        params,
        last,
        sse,
        n: y.len(),
    })
}

/// The optimiser's vector (α, [β], [φ], l₀, [b₀]) as parameters and initial state.
fn unpack(x: &[f64], trend: Trend) -> (Params, State) {
    match trend {
        Trend::None => (
            Params {
                alpha: x[0],
                beta: 0.0,
                phi: 1.0,
            },
            State {
                level: x[1],
                slope: 0.0,
            },
        ),
        Trend::Additive => (
            Params {
                alpha: x[0],
                beta: x[1],
                phi: 1.0,
            },
            State {
                level: x[2],
                slope: x[3],
            },
        ),
        Trend::Damped => (
            Params {
                alpha: x[0],
                beta: x[1],
                phi: x[2],
            },
            State {
                level: x[3],
                slope: x[4],
            },
        ),
    }
}

/// The starting point and box: α at 20% of its range, β at 10% of [lower, α₀] (its upper bound
/// too), φ at 99% of its range; the level (and slope) from the first ten observations: their mean, or a least-squares
/// line through them.
fn start(y: &[f64], trend: Trend) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let alpha = ALPHA.0 + 0.2 * (ALPHA.1 - ALPHA.0);
    let beta_max = BETA.1.min(alpha);
    let beta = BETA.0 + 0.1 * (beta_max - BETA.0);
    let phi = PHI.0 + 0.99 * (PHI.1 - PHI.0);
    let head = &y[..y.len().min(10)];
    let (mut x0, mut lower, mut upper) = (vec![alpha], vec![ALPHA.0], vec![ALPHA.1]);
    if trend != Trend::None {
        x0.push(beta);
        lower.push(BETA.0);
        upper.push(beta_max);
    }
    if trend == Trend::Damped {
        x0.push(phi);
        lower.push(PHI.0);
        upper.push(PHI.1);
    }
    if trend == Trend::None {
        x0.push(head.iter().sum::<f64>() / head.len() as f64);
    } else {
        let (level, slope) = line(head);
        x0.extend([level, slope]);
    }
    let states = trend.n_states();
    lower.extend(std::iter::repeat_n(f64::NEG_INFINITY, states));
    upper.extend(std::iter::repeat_n(f64::INFINITY, states));
    (x0, lower, upper)
}

/// Least-squares intercept and slope of `v` against t = 1, 2, …, so the level sits at t = 0,
/// one step before the first observation.
fn line(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let t_mean = (n + 1.0) / 2.0;
    let y_mean = v.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in v.iter().enumerate() {
        let dt = (i + 1) as f64 - t_mean;
        sxy += dt * (y - y_mean);
        sxx += dt * dt;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (y_mean - slope * t_mean, slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gaussian noise from a fixed-seed generator (Box–Muller over an LCG).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut uniform = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
            })
            .collect()
    }

    /// A series drawn from the model itself.
    fn simulate(p: Params, init: State, sd: f64, n: usize, seed: u64) -> Vec<f64> {
        let (mut l, mut b) = (init.level, init.slope);
        noise(n, seed)
            .into_iter()
            .map(|z| {
                let e = sd * z;
                let y = l + p.phi * b + e;
                l = l + p.phi * b + p.alpha * e;
                b = p.phi * b + p.beta * e;
                y
            })
            .collect()
    }

    #[test]
    fn the_least_squares_line_is_exact_on_a_line() {
        let v: Vec<f64> = (1..=10).map(|t| 3.0 + 0.5 * t as f64).collect();
        let (l, b) = line(&v);
        assert!(
            (l - 3.0).abs() < 1e-12 && (b - 0.5).abs() < 1e-12,
            "{l} {b}"
        );
    }

    #[test]
    fn simple_smoothing_recovers_alpha_and_the_error_variance() {
        let truth = Params {
            alpha: 0.6,
            beta: 0.0,
            phi: 1.0,
        };
        let init = State {
            level: 9.0,
            slope: 0.0,
        };
        let y = simulate(truth, init, 0.02, 2_000, 7);
        let f = fit(&y, Trend::None).expect("fit");
        assert!((f.params.alpha - 0.6).abs() < 0.05, "{:?}", f.params);
        assert!((f.sigma2().sqrt() - 0.02).abs() < 0.002, "{}", f.sigma2());
    }

    #[test]
    fn the_fit_is_at_least_as_good_as_the_true_parameters() {
        let truth = Params {
            alpha: 0.4,
            beta: 0.05,
            phi: 0.9,
        };
        let init = State {
            level: 10.0,
            slope: 0.01,
        };
        let y = simulate(truth, init, 0.01, 300, 11);
        let f = fit(&y, Trend::Damped).expect("fit");
        let (sse_truth, _) = filter(&y, truth, init);
        // Maximum likelihood over the same family cannot do worse than the generating values
        // (up to the optimiser's tolerance on n·ln(SSE)).
        assert!(
            f.sse <= sse_truth * (1.0 + 1e-3),
            "{} vs {sse_truth}",
            f.sse
        );
        assert!((1e-4..=0.19006).contains(&f.params.beta), "{:?}", f.params);
        assert!((0.8..=0.98).contains(&f.params.phi));
    }

    #[test]
    fn more_parameters_never_fit_worse_than_nested_models_by_much() {
        let y = simulate(
            Params {
                alpha: 0.9,
                beta: 0.0,
                phi: 1.0,
            },
            State {
                level: 10.0,
                slope: 0.0,
            },
            0.02,
            250,
            3,
        );
        let ann = fit(&y, Trend::None).expect("ANN");
        let aan = fit(&y, Trend::Additive).expect("AAN");
        assert!(aan.sse <= ann.sse * 1.01, "{} vs {}", aan.sse, ann.sse);
        assert_eq!(ann.n_params(), 2);
        assert_eq!(aan.n_params(), 4);
    }

    #[test]
    fn too_short_a_series_is_refused_with_what_it_needs() {
        let e = fit(&[1.0, 2.0, 3.0], Trend::Damped).expect_err("short");
        assert!(e.to_string().contains("9"), "{e}");
    }
}
