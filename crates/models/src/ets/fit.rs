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
use super::model::{Params, State, Trend, filter, filter_lanes};
use super::nelder_mead::{self, Minimum, Options, Search};

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
    let (x0, lower, upper) = prepare(y, trend)?;
    let f = |x: &[f64]| {
        let (p, s) = unpack(x, trend);
        let (sse, _) = filter(y, p, s);
        objective(y, sse)
    };
    let best = nelder_mead::minimise(f, &x0, &lower, &upper, Options::default());
    finish(y, trend, best)
}

/// Fits run together by [`fit_many`].
const LANES: usize = 4;

/// [`fit`] for every (series, trend) of `jobs`, in order, with the same results bit for bit:
/// [`LANES`] searches advance in lockstep, their likelihoods evaluated together by
/// [`filter_lanes`] (each search takes exactly the steps it takes alone), and a lane whose
/// search has finished takes the next job.
pub fn fit_many(jobs: &[(&[f64], Trend)]) -> Vec<Result<Fitted, EtsError>> {
    struct Lane {
        job: usize,
        search: Search,
    }
    let mut out: Vec<Option<Result<Fitted, EtsError>>> = jobs.iter().map(|_| None).collect();
    let mut lanes: Vec<Lane> = Vec::with_capacity(LANES);
    let mut next = 0;
    loop {
        while lanes.len() < LANES && next < jobs.len() {
            let (y, trend) = jobs[next];
            match prepare(y, trend) {
                Ok((x0, lower, upper)) => lanes.push(Lane {
                    job: next,
                    search: Search::new(&x0, &lower, &upper, Options::default()),
                }),
                Err(e) => out[next] = Some(Err(e)),
            }
            next += 1;
        }
        if lanes.is_empty() {
            break;
        }
        // Every lane's point (lanes beyond the jobs left repeat the last one: a chain the
        // loop runs alongside for free, its result unused).
        let mut ys = [jobs[lanes[0].job].0; LANES];
        let mut params = [Params {
            alpha: 0.0,
            beta: 0.0,
            phi: 1.0,
        }; LANES];
        let mut init = [State {
            level: 0.0,
            slope: 0.0,
        }; LANES];
        for l in 0..LANES {
            let lane = &lanes[l.min(lanes.len() - 1)];
            let (y, trend) = jobs[lane.job];
            if let Some(x) = lane.search.point() {
                ys[l] = y;
                (params[l], init[l]) = unpack(x, trend);
            }
        }
        let values = filter_lanes(ys, params, init);
        for (lane, (sse, _)) in lanes.iter_mut().zip(values) {
            let y = jobs[lane.job].0;
            lane.search.tell(objective(y, sse));
        }
        let mut l = 0;
        while l < lanes.len() {
            if lanes[l].search.done() {
                let lane = lanes.swap_remove(l);
                let (y, trend) = jobs[lane.job];
                out[lane.job] = Some(finish(y, trend, lane.search.minimum()));
            } else {
                l += 1;
            }
        }
    }
    out.into_iter()
        .zip(jobs)
        .map(|(r, (_, trend))| r.unwrap_or(Err(EtsError::NoFit(trend.model_name()))))
        .collect()
}

/// n·ln(SSE): the negative log-likelihood up to constants (see the module's note).
fn objective(y: &[f64], sse: f64) -> f64 {
    y.len() as f64 * sse.max(f64::MIN_POSITIVE).ln()
}

/// The search's start and box for `trend` on `y`, or why `y` is too short.
type Start = (Vec<f64>, Vec<f64>, Vec<f64>);
fn prepare(y: &[f64], trend: Trend) -> Result<Start, EtsError> {
    let need = trend.n_states() + trend.n_smoothing() + 4;
    if y.len() < need {
        return Err(EtsError::NotEnoughData {
            have: y.len(),
            need,
        });
    }
    Ok(start(y, trend))
}

/// The fit at the search's best point, unless it is not finite.
fn finish(y: &[f64], trend: Trend, best: Minimum) -> Result<Fitted, EtsError> {
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

    #[test]
    fn fits_run_together_are_bit_for_bit_the_fits_run_alone() {
        // More jobs than lanes, of uneven lengths (a lane finishes its series' tail alone),
        // every trend, one series too short and one that never moves.
        let mut series: Vec<Vec<f64>> = (0..7u64)
            .map(|k| {
                let p = Params {
                    alpha: 0.2 + 0.1 * k as f64,
                    beta: 0.02,
                    phi: 0.9,
                };
                let init = State {
                    level: 10.0 + k as f64,
                    slope: 0.01,
                };
                simulate(p, init, 0.01, 40 + 30 * k as usize, 100 + k)
            })
            .collect();
        series.push(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        series.push(vec![4.2; 50]);
        let jobs: Vec<(&[f64], Trend)> = series
            .iter()
            .flat_map(|y| Trend::ALL.map(|t| (y.as_slice(), t)))
            .collect();
        let together = fit_many(&jobs);
        assert_eq!(together.len(), jobs.len());
        for ((y, trend), got) in jobs.iter().zip(&together) {
            let alone = fit(y, *trend);
            assert_eq!(got, &alone, "{trend:?} on {} points", y.len());
            // PartialEq on f64 says -0.0 == 0.0: compare the bits as well.
            if let (Ok(a), Ok(b)) = (got, &alone) {
                let bits = |f: &Fitted| {
                    [
                        f.params.alpha,
                        f.params.beta,
                        f.params.phi,
                        f.last.level,
                        f.last.slope,
                        f.sse,
                    ]
                    .map(f64::to_bits)
                };
                assert_eq!(bits(a), bits(b));
            }
        }
        assert!(
            together.iter().any(|r| r.is_err()),
            "the short series is refused"
        );
        assert_eq!(fit_many(&[]), Vec::new());
    }

    #[test]
    fn the_recursion_run_in_lanes_is_bit_for_bit_the_recursion_run_alone() {
        let y = noise(300, 5);
        let ys: [&[f64]; 4] = [&y, &y[..120], &y[7..], &y[..1]];
        let p = |a: f64| Params {
            alpha: a,
            beta: 0.01,
            phi: 0.95,
        };
        let params = [p(0.1), p(0.3), p(0.5), p(0.7)];
        let init = State {
            level: 0.1,
            slope: -0.02,
        };
        let lanes = filter_lanes(ys, params, [init; 4]);
        for l in 0..4 {
            let (sse, s) = filter(ys[l], params[l], init);
            assert_eq!(lanes[l].0.to_bits(), sse.to_bits(), "lane {l}");
            assert_eq!(lanes[l].1, s, "lane {l}");
        }
        // Steps in lockstep (the shortest series has 119 before its last), in pairs and with
        // an odd lane alone.
        let long: [&[f64]; 4] = [&y, &y[..120], &y[7..], &y[50..250]];
        let lanes = filter_lanes(long, params, [init; 4]);
        let three = filter_lanes(
            [long[0], long[1], long[2]],
            [params[0], params[1], params[2]],
            [init; 3],
        );
        for l in 0..4 {
            let (sse, s) = filter(long[l], params[l], init);
            assert_eq!(lanes[l].0.to_bits(), sse.to_bits(), "lane {l} of 4");
            assert_eq!(lanes[l].1, s, "lane {l} of 4");
            if l < 3 {
                assert_eq!(three[l].0.to_bits(), sse.to_bits(), "lane {l} of 3");
                assert_eq!(three[l].1, s, "lane {l} of 3");
            }
        }
        // An empty series: its lane returns the initial state, the others are unaffected.
        let out = filter_lanes([&y[..], &[]], [params[0], params[1]], [init; 2]);
        assert_eq!(out[1], (0.0, init));
        assert_eq!(out[0].0.to_bits(), filter(&y, params[0], init).0.to_bits());
    }
}
