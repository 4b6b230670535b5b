//! The additive-error, non-seasonal ETS models (Hyndman, Koehler, Ord & Snyder 2008, ch. 2):
//! one error-correction recursion covers all three.
//!
//! ```text
//! forecast  ŷ_t = l_{t-1} + φ b_{t-1}
//! error     e_t = y_t − ŷ_t
//! level     l_t = ŷ_t + α e_t
//! slope     b_t = φ b_{t-1} + β e_t
//! ```
//!
//! `ANN` is β = 0, b = 0 (simple exponential smoothing), `AAN` is φ = 1 (Holt's linear trend),
//! `AAdN` has 0 < φ < 1 (damped trend).

use super::pair::Pair;

/// The trend component of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    None,
    Additive,
    Damped,
}

impl Trend {
    pub const ALL: [Trend; 3] = [Trend::None, Trend::Additive, Trend::Damped];

    /// The model's name in the ETS taxonomy (error, trend, season).
    pub fn model_name(self) -> &'static str {
        match self {
            Self::None => "ANN",
            Self::Additive => "AAN",
            Self::Damped => "AAdN",
        }
    }

    /// The trend of a model name ([`Trend::model_name`]).
    pub fn from_model_name(name: &str) -> Option<Trend> {
        Self::ALL.into_iter().find(|t| t.model_name() == name)
    }

    /// Initial states: the level, plus the slope when there is a trend.
    pub fn n_states(self) -> usize {
        match self {
            Self::None => 1,
            _ => 2,
        }
    }

    /// Smoothing parameters estimated: α, plus β with a trend, plus φ when damped.
    pub fn n_smoothing(self) -> usize {
        match self {
            Self::None => 1,
            Self::Additive => 2,
            Self::Damped => 3,
        }
    }
}

/// Smoothing parameters; β = 0 without a trend, φ = 1 unless damped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub alpha: f64,
    pub beta: f64,
    pub phi: f64,
}

/// Level and slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub level: f64,
    pub slope: f64,
}

/// Runs the recursion over `y` from `init`: the sum of squared one-step errors and the state
/// after the last observation.
///
/// This is the likelihood's inner loop (a few hundred passes per fit), so it carries the
/// one-step forecast ŷ instead of the level: substituting the level update into the next
/// forecast gives ŷ_{t+1} = (1 − α − φβ) ŷ_t + (α + φβ) y_t + φ² b_{t−1}, whose dependency
/// chain is one multiply-add per step instead of three.
pub fn filter(y: &[f64], p: Params, init: State) -> (f64, State) {
    let Some((&last, head)) = y.split_last() else {
        return (0.0, init);
    };
    let mut r = Recursion::start(p, init);
    for &obs in head {
        r.step(obs);
    }
    r.finish(last)
}

/// [`filter`] over `L` series at once, each with its own parameters: the same arithmetic per
/// series, so each result is bit for bit `filter`'s. One series' recursion is a chain of
/// dependent multiply-adds that leaves most of the core idle; `L` independent chains
/// interleaved in one loop take about the time of one.
pub fn filter_lanes<const L: usize>(
    ys: [&[f64]; L],
    p: [Params; L],
    init: [State; L],
) -> [(f64, State); L] {
    let Some(common) = ys.iter().map(|y| y.len().checked_sub(1)).min().flatten() else {
        // An empty series: nothing to interleave.
        return std::array::from_fn(|l| filter(ys[l], p[l], init[l]));
    };
    let r: [Recursion; L] = std::array::from_fn(|l| Recursion::start(p[l], init[l]));
    let heads: [&[f64]; L] = std::array::from_fn(|l| &ys[l][..common]);
    // Lanes 2k and 2k+1 as one pair per quantity, so that each operation of a step is one
    // instruction for two lanes ([`Pair`]: the same bits as `Recursion::step`); an odd last
    // lane steps alone. (Only the first L/2 slots of each array are used.)
    let pairs = L / 2;
    let two = |f: fn(&Recursion) -> f64| -> [Pair; L] {
        std::array::from_fn(|k| match k < pairs {
            true => Pair::new(f(&r[2 * k]), f(&r[2 * k + 1])),
            false => Pair::zero(),
        })
    };
    let (keep, gain, phi2) = (two(|r| r.keep), two(|r| r.gain), two(|r| r.phi2));
    let (phi, beta) = (two(|r| r.p.phi), two(|r| r.p.beta));
    let (mut fitted, mut b, mut sse) = (two(|r| r.fitted), two(|r| r.b), two(|r| r.sse));
    let mut odd = (L % 2 == 1).then(|| r[L - 1]);
    // `t` indexes every lane's series (clippy sees one array of them).
    #[allow(clippy::needless_range_loop)]
    for t in 0..common {
        for k in 0..pairs {
            let obs = Pair::new(heads[2 * k][t], heads[2 * k + 1][t]);
            let e = obs.sub(fitted[k]);
            sse[k] = sse[k].add(e.mul(e));
            let next = keep[k]
                .mul(fitted[k])
                .add(gain[k].mul(obs).add(phi2[k].mul(b[k])));
            b[k] = phi[k].mul(b[k]).add(beta[k].mul(e));
            fitted[k] = next;
        }
        if let Some(r) = odd.as_mut() {
            r.step(heads[L - 1][t]);
        }
    }
    std::array::from_fn(|l| {
        let mut r = match (l / 2 < pairs, odd) {
            (true, _) => Recursion {
                fitted: fitted[l / 2].lane(l % 2),
                b: b[l / 2].lane(l % 2),
                sse: sse[l / 2].lane(l % 2),
                ..r[l]
            },
            (false, Some(odd)) => odd,
            (false, None) => r[l],
        };
        let (head, last) = (&ys[l][common..ys[l].len() - 1], ys[l][ys[l].len() - 1]);
        for &obs in head {
            r.step(obs);
        }
        r.finish(last)
    })
}

/// The recursion's state between observations (see [`filter`]).
#[derive(Debug, Clone, Copy)]
struct Recursion {
    p: Params,
    keep: f64,
    gain: f64,
    phi2: f64,
    fitted: f64,
    b: f64,
    sse: f64,
}

impl Recursion {
    fn start(p: Params, init: State) -> Self {
        Self {
            p,
            keep: 1.0 - p.alpha - p.phi * p.beta,
            gain: p.alpha + p.phi * p.beta,
            phi2: p.phi * p.phi,
            fitted: init.level + p.phi * init.slope,
            b: init.slope,
            sse: 0.0,
        }
    }

    #[inline(always)]
    fn step(&mut self, obs: f64) {
        let e = obs - self.fitted;
        self.sse += e * e;
        let next = self.keep * self.fitted + (self.gain * obs + self.phi2 * self.b);
        self.b = self.p.phi * self.b + self.p.beta * e;
        self.fitted = next;
    }

    /// The last observation: its error and the state after it.
    fn finish(self, last: f64) -> (f64, State) {
        let e = last - self.fitted;
        let state = State {
            level: self.fitted + self.p.alpha * e,
            slope: self.p.phi * self.b + self.p.beta * e,
        };
        (self.sse + e * e, state)
    }
}

/// Point forecasts for steps 1..=steps from state `s`: l + (φ + φ² + … + φ^h) b.
pub fn forecast_mean(p: Params, s: State, steps: usize) -> Vec<f64> {
    let mut damp_sum = 0.0;
    let mut phi_j = 1.0;
    (0..steps)
        .map(|_| {
            phi_j *= p.phi;
            damp_sum += phi_j;
            s.level + damp_sum * s.slope
        })
        .collect()
}

/// Forecast variance of steps 1..=steps as multiples of the one-step variance σ²:
/// v_h = 1 + Σ_{j=1}^{h−1} c_j², c_j = α + β (φ + … + φ^j) (the linear models' closed form,
/// Hyndman et al. 2008, eq. 6.1; it equals their Table 6.1 for ANN, AAN and AAdN).
pub fn variance_multipliers(p: Params, steps: usize) -> Vec<f64> {
    let (mut v, mut damp_sum, mut phi_j) = (1.0, 0.0, 1.0);
    let mut out = Vec::with_capacity(steps);
    for h in 1..=steps {
        out.push(v);
        if h < steps {
            phi_j *= p.phi;
            damp_sum += phi_j;
            let c = p.alpha + p.beta * damp_sum;
            v += c * c;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Params = Params {
        alpha: 0.3,
        beta: 0.1,
        phi: 0.9,
    };

    #[test]
    fn the_recursion_is_hand_computed_for_two_steps() {
        let init = State {
            level: 10.0,
            slope: 1.0,
        };
        // ŷ1 = 10 + 0.9 = 10.9, e1 = 1.1, l1 = 11.23, b1 = 0.9 + 0.11 = 1.01
        // ŷ2 = 11.23 + 0.909 = 12.139, e2 = −0.139
        let (sse, s) = filter(&[12.0, 12.0], P, init);
        assert!(
            (sse - (1.1f64.powi(2) + 0.139f64.powi(2))).abs() < 1e-12,
            "{sse}"
        );
        assert!((s.level - (12.139 - 0.3 * 0.139)).abs() < 1e-12, "{s:?}");
        assert!(
            (s.slope - (0.9 * 1.01 - 0.1 * 0.139)).abs() < 1e-12,
            "{s:?}"
        );
    }

    #[test]
    fn damped_forecasts_add_powers_of_phi_and_holt_adds_whole_slopes() {
        let s = State {
            level: 5.0,
            slope: 2.0,
        };
        let damped = forecast_mean(P, s, 3);
        let want = [
            5.0 + 0.9 * 2.0,
            5.0 + (0.9 + 0.81) * 2.0,
            5.0 + (0.9 + 0.81 + 0.729) * 2.0,
        ];
        for (g, w) in damped.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{damped:?}");
        }
        let holt = forecast_mean(Params { phi: 1.0, ..P }, s, 3);
        assert_eq!(holt, vec![7.0, 9.0, 11.0]);
    }

    #[test]
    fn variances_match_the_closed_forms_of_table_6_1() {
        let h = 6;
        // ANN: 1 + (h−1) α².
        let ann = variance_multipliers(
            Params {
                beta: 0.0,
                phi: 1.0,
                ..P
            },
            h,
        );
        // AAN: 1 + (h−1)[α² + αβh + β²h(2h−1)/6].
        let aan = variance_multipliers(Params { phi: 1.0, ..P }, h);
        let aadn = variance_multipliers(P, h);
        let (a, b, f) = (P.alpha, P.beta, P.phi);
        for step in 1..=h {
            let s = step as f64;
            assert!((ann[step - 1] - (1.0 + (s - 1.0) * a * a)).abs() < 1e-12);
            let closed = 1.0 + (s - 1.0) * (a * a + a * b * s + b * b * s * (2.0 * s - 1.0) / 6.0);
            assert!((aan[step - 1] - closed).abs() < 1e-12, "{step}");
            let fs = f.powi(step as i32);
            let closed = 1.0
                + a * a * (s - 1.0)
                + b * f * s / (1.0 - f).powi(2) * (2.0 * a * (1.0 - f) + b * f)
                - b * f * (1.0 - fs) / ((1.0 - f).powi(2) * (1.0 - f * f))
                    * (2.0 * a * (1.0 - f * f) + b * f * (1.0 + 2.0 * f - fs));
            assert!((aadn[step - 1] - closed).abs() < 1e-9, "{step}");
        }
    }
}
