//! AutoETS on log closes: nine quantile prices per step ahead, from a model that needs no
//! downloaded weights.
//!
//! The search covers the additive-error models without seasonality (`ANN`, `AAN`, `AAdN`:
//! no, additive and damped trend), each fitted by maximum likelihood ([`fit`]) and the one with
//! the smallest AICc kept, as R's `forecast::ets` and statsforecast's `AutoETS` do for
//! `model = "AZN"`. On the log scale the forecast of step h is normal with the model's mean and
//! variance ([`model`]), so quantile k/10 of the price is `exp(mean_h + z_k · sd_h)`.
//!
//! krxflow's own implementation (it replaced augurs-ets 0.10.3, which computed a
//! multiplicative-error likelihood term at every step of every fit and pulled nalgebra into the
//! build): one allocation-free recursion per likelihood evaluation. `pipelines/benches/ets.rs`
//! times it against augurs on the same series and checks that both reach the same fits.

pub mod fit;
pub mod model;
pub mod nelder_mead;
mod pair;

use thiserror::Error;

use crate::error::{ModelError, ModelResult};
pub use model::{Params, State, Trend};
use model::{forecast_mean, variance_multipliers};

/// Standard normal quantiles of 0.1, 0.2, …, 0.9.
pub const Z: [f64; 9] = [
    -1.281_551_565_544_600_4,
    -0.841_621_233_572_914_3,
    -0.524_400_512_708_040_7,
    -0.253_347_103_135_799_7,
    0.0,
    0.253_347_103_135_799_7,
    0.524_400_512_708_040_7,
    0.841_621_233_572_914_3,
    1.281_551_565_544_600_4,
];

/// Why a series could not be fitted.
#[derive(Debug, Error, PartialEq)]
pub enum EtsError {
    #[error("not enough data: {have} observations, the model needs at least {need}")]
    NotEnoughData { have: usize, need: usize },
    #[error("{0} did not converge to a finite likelihood")]
    NoFit(&'static str),
}

/// The forecast of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct EtsForecast {
    /// The selected model (error, trend, season), e.g. `AAdN`.
    pub model: String,
    /// Per step 1..=steps: the price quantiles q10..q90.
    pub quantiles: Vec<[f64; 9]>,
}

/// Fits every candidate to `y` and keeps the one with the smallest AICc. Candidates the series
/// is too short for are left out; if none is left, the first candidate's error is returned.
pub fn select(y: &[f64]) -> Result<fit::Fitted, EtsError> {
    choose(Trend::ALL.map(|trend| (trend, fit::fit(y, trend))))
}

/// [`select`] for each of `ys`, with the same results: every candidate of every series fitted
/// by [`fit::fit_many`].
pub fn select_many(ys: &[&[f64]]) -> Vec<Result<fit::Fitted, EtsError>> {
    let jobs: Vec<(&[f64], Trend)> = ys
        .iter()
        .flat_map(|y| Trend::ALL.map(|trend| (*y, trend)))
        .collect();
    let mut fits = fit::fit_many(&jobs).into_iter();
    ys.iter()
        .map(|_| {
            choose(Trend::ALL.map(|trend| {
                let fitted = fits
                    .next()
                    .unwrap_or(Err(EtsError::NoFit(trend.model_name())));
                (trend, fitted)
            }))
        })
        .collect()
}

/// The candidate with the smallest finite AICc (the first of equals, in [`Trend::ALL`]'s
/// order), or the first candidate's error.
fn choose(
    candidates: [(Trend, Result<fit::Fitted, EtsError>); 3],
) -> Result<fit::Fitted, EtsError> {
    let mut best: Option<fit::Fitted> = None;
    let mut first_error = None;
    for (trend, fitted) in candidates {
        match fitted {
            Ok(f) if f.aicc().is_finite() => {
                if best.as_ref().is_none_or(|b| f.aicc() < b.aicc()) {
                    best = Some(f);
                }
            }
            Ok(_) => {
                first_error.get_or_insert(EtsError::NoFit(trend.model_name()));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_error.unwrap_or(EtsError::NoFit("AZN")))
}

/// A selected model as a forecast needs it, and as `ets.fit` stores it between runs: the
/// parameters, the state after the last close it has seen, and the one-step variance σ².
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub trend: Trend,
    pub params: Params,
    pub state: State,
    pub sigma2: f64,
}

/// Log closes, refusing any close that is not positive and finite.
fn log_closes(closes: &[f64]) -> ModelResult<Vec<f64>> {
    if let Some(bad) = closes.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
        return Err(ModelError::Inference(format!(
            "ETS needs positive finite closes, got {bad}"
        )));
    }
    Ok(closes.iter().map(|c| c.ln()).collect())
}

impl Model {
    /// Fits AutoETS to `ln(closes)` ([`select`]). Closes must be finite and positive; too
    /// short a series is `ModelError::Ets(NotEnoughData)`.
    pub fn fit(closes: &[f64]) -> ModelResult<Model> {
        let fitted = select(&log_closes(closes)?).map_err(ModelError::Ets)?;
        Ok(Model::from_fit(&fitted))
    }

    /// [`Model::fit`] for each of `series`, the same models, fitted several at a time
    /// ([`select_many`]): 1.6-1.9x faster on one core (`pipelines/benches/ets.rs`).
    pub fn fit_many(series: &[&[f64]]) -> Vec<ModelResult<Model>> {
        let logs: Vec<ModelResult<Vec<f64>>> = series.iter().map(|c| log_closes(c)).collect();
        let ok: Vec<&[f64]> = logs
            .iter()
            .filter_map(|l| l.as_ref().ok().map(Vec::as_slice))
            .collect();
        let mut fits = select_many(&ok).into_iter();
        logs.into_iter()
            .map(|l| {
                l?;
                let fitted = fits
                    .next()
                    .unwrap_or(Err(EtsError::NoFit("AZN")))
                    .map_err(ModelError::Ets)?;
                Ok(Model::from_fit(&fitted))
            })
            .collect()
    }

    fn from_fit(fitted: &fit::Fitted) -> Model {
        Model {
            trend: fitted.trend,
            params: fitted.params,
            state: fitted.last,
            sigma2: fitted.sigma2(),
        }
    }

    /// The model after the closes that followed the ones it has seen: the same parameters and
    /// σ², the state carried through the recursion (what a refit would do with its parameters
    /// held, without the search).
    pub fn update(&self, closes: &[f64]) -> ModelResult<Model> {
        let (_, state) = model::filter(&log_closes(closes)?, self.params, self.state);
        Ok(Model { state, ..*self })
    }

    /// The price quantiles q10..q90 of steps 1..=steps.
    pub fn forecast(&self, steps: usize) -> ModelResult<EtsForecast> {
        let means = forecast_mean(self.params, self.state, steps);
        let multipliers = variance_multipliers(self.params, steps);
        let mut quantiles = Vec::with_capacity(steps);
        for (h, (mean, v)) in means.into_iter().zip(multipliers).enumerate() {
            let sd = (self.sigma2 * v).max(0.0).sqrt();
            if !(mean.is_finite() && sd.is_finite()) {
                return Err(ModelError::Inference(format!(
                    "ETS step {} is not finite (mean {mean}, sd {sd})",
                    h + 1
                )));
            }
            let mut q = [0.0; 9];
            for (k, z) in Z.iter().enumerate() {
                q[k] = (mean + z * sd).exp();
            }
            quantiles.push(q);
        }
        Ok(EtsForecast {
            model: self.trend.model_name().to_string(),
            quantiles,
        })
    }
}

/// Fits AutoETS to `ln(closes)` and forecasts `steps` steps ahead ([`Model::fit`], then
/// [`Model::forecast`]).
pub fn forecast(closes: &[f64], steps: usize) -> ModelResult<EtsForecast> {
    Model::fit(closes)?.forecast(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic random walk with drift on the log scale.
    fn walk(n: usize, drift: f64, vol: f64) -> Vec<f64> {
        let mut state = 42u64;
        let mut x = 10_000f64.ln();
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                x += drift + vol * u;
                x.exp()
            })
            .collect()
    }

    #[test]
    fn quantiles_are_ordered_and_widen_with_the_horizon() {
        let closes = walk(250, 0.0, 0.02);
        let f = forecast(&closes, 5).expect("forecast");
        assert_eq!(f.quantiles.len(), 5);
        assert!(
            f.model.starts_with('A') && f.model.ends_with('N'),
            "{}",
            f.model
        );
        for q in &f.quantiles {
            assert!(q.windows(2).all(|w| w[0] < w[1]), "{q:?}");
        }
        let width = |q: &[f64; 9]| q[8] - q[0];
        assert!(width(&f.quantiles[4]) > width(&f.quantiles[0]));
        // The median starts near the last close.
        let last = closes[249];
        assert!((f.quantiles[0][4] / last - 1.0).abs() < 0.05);
    }

    #[test]
    fn a_steady_uptrend_forecasts_up() {
        let closes: Vec<f64> = (0..120).map(|i| 100.0 * (0.004 * i as f64).exp()).collect();
        let f = forecast(&closes, 3).expect("forecast");
        assert!(f.quantiles[2][4] > closes[119], "{:?}", f.quantiles[2]);
    }

    #[test]
    fn bad_or_short_input_is_an_error_not_a_panic() {
        assert!(forecast(&[100.0, -1.0, 101.0], 1).is_err());
        assert!(forecast(&[100.0, f64::NAN], 1).is_err());
        assert!(forecast(&[100.0], 1).is_err());
    }

    #[test]
    fn a_bad_series_among_many_is_its_own_error_and_the_others_fit_as_alone() {
        let walk: Vec<f64> = log_walk(120, 3, 0.001, 0.02)
            .iter()
            .map(|l| 100.0 * l.exp())
            .collect();
        let flat = [12_300.0; 80];
        let series: [&[f64]; 5] = [&walk, &[100.0, -1.0, 101.0], &flat, &[100.0], &walk[..60]];
        let many = Model::fit_many(&series);
        assert_eq!(many.len(), series.len());
        for (got, closes) in many.iter().zip(series) {
            match (got, Model::fit(closes)) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{a:?} against {b:?} alone"),
            }
        }
        assert!(many[1].is_err() && many[3].is_err());
        assert!(many[0].is_ok() && many[2].is_ok() && many[4].is_ok());
    }

    #[test]
    fn a_halted_stock_with_one_price_forecasts_that_price() {
        // Zero error everywhere: the likelihood is at its floor, not -inf or NaN.
        let f = forecast(&[12_300.0; 80], 5).expect("a flat series fits");
        for q in &f.quantiles {
            assert!(q.iter().all(|p| (p / 12_300.0 - 1.0).abs() < 1e-9), "{q:?}");
        }
        // Just long enough for simple smoothing, too short for a trend: ANN is chosen.
        let short = [100.0, 101.0, 99.5, 100.5, 102.0, 101.0];
        assert_eq!(forecast(&short, 1).expect("six closes").model, "ANN");
    }

    /// Log prices: a walk with drift and volatility from a seeded LCG (Box–Muller).
    fn log_walk(n: usize, seed: u64, drift: f64, vol: f64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut x = 10.0;
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                x += drift + vol * z;
                x
            })
            .collect()
    }

    #[test]
    fn an_update_day_by_day_is_one_update_and_stays_close_to_a_refit() {
        for seed in 3..13 {
            let closes: Vec<f64> = log_walk(255, seed, 0.001, 0.015)
                .iter()
                .map(|x| x.exp())
                .collect();
            let (seen, later) = closes.split_at(250);
            let m = Model::fit(seen).expect("fit");
            let at_once = m.update(later).expect("update");
            assert_eq!((at_once.params, at_once.sigma2), (m.params, m.sigma2));
            let daily = later
                .iter()
                .try_fold(m, |m, c| m.update(std::slice::from_ref(c)))
                .expect("daily updates");
            // The same recursion, rounded in another order (the filter's last step is unrolled).
            assert_eq!((daily.trend, daily.params), (at_once.trend, at_once.params));
            let (d, o) = (daily.state, at_once.state);
            assert!((d.level - o.level).abs() < 1e-12 && (d.slope - o.slope).abs() < 1e-12);
            // The updated one-step forecast differs from a full refit on the last 250 closes
            // by a small part of the one-step sd.
            let refit = Model::fit(&closes[5..]).expect("refit");
            let median = |m: &Model| m.forecast(1).expect("forecast").quantiles[0][4].ln();
            let gap = (median(&at_once) - median(&refit)).abs();
            assert!(gap < 0.25 * refit.sigma2.sqrt(), "seed {seed}: {gap}");
        }
        let m = Model::fit(&[100.0, 101.0, 99.5, 100.5, 102.0, 101.0]).expect("fit");
        assert_eq!(m.update(&[]).expect("nothing new"), m);
        assert!(m.update(&[100.0, -1.0]).is_err(), "a bad close is refused");
    }

    #[test]
    fn a_strong_trend_selects_a_trend_model_and_noise_selects_none() {
        let trend: Vec<f64> = log_walk(250, 1, 0.0, 0.001)
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.01 * i as f64)
            .collect();
        let f = select(&trend).expect("fit");
        assert_ne!(f.trend, Trend::None, "{f:?}");
        // White noise around a level: simple smoothing with a small alpha.
        let level: Vec<f64> = log_walk(250, 2, 0.0, 0.01)
            .windows(2)
            .map(|w| 10.0 + (w[1] - w[0]))
            .collect();
        let f = select(&level).expect("fit");
        assert_eq!(f.trend, Trend::None, "{f:?}");
        assert!(f.params.alpha < 0.2, "{f:?}");
    }

    #[test]
    fn the_80_percent_interval_covers_about_80_percent_of_next_steps() {
        // 300 random walks: fit on 200 log prices, check steps 1 and 5 against what came.
        let (mut hit1, mut hit5, n) = (0, 0, 300);
        for seed in 0..n {
            let y = log_walk(205, seed, 0.0005, 0.02);
            let closes: Vec<f64> = y[..200].iter().map(|v| v.exp()).collect();
            let f = forecast(&closes, 5).expect("forecast");
            let inside = |q: &[f64; 9], x: f64| q[0] <= x.exp() && x.exp() <= q[8];
            hit1 += usize::from(inside(&f.quantiles[0], y[200]));
            hit5 += usize::from(inside(&f.quantiles[4], y[204]));
        }
        // Binomial sd at 80% over 300 draws is 2.3 points: 0.72..0.88 is > 3 sd.
        for (h, hits) in [(1, hit1), (5, hit5)] {
            let rate = hits as f64 / n as f64;
            assert!((0.72..=0.88).contains(&rate), "step {h}: {rate}");
        }
    }

    /// augurs-ets 0.10.3 (the implementation this one replaced; a port of statsforecast's
    /// AutoETS) on the same series: for the model class it selects, the fit here is at least as
    /// likely, the same class is selected, and the forecasts and σ agree.
    #[test]
    fn fits_are_at_least_as_likely_as_the_augurs_reference_and_forecasts_agree() {
        use augurs_core::{Fit, Predict};
        use augurs_ets::model::TrendComponent;
        let mut same_class = 0;
        let mut worst_mean_gap: f64 = 0.0;
        let mut classes = [0; 3];
        let mut worst_sd_gap: f64 = 0.0;
        let cases = 60;
        for seed in 0..cases {
            let drift = [0.0, 0.001, -0.002, 0.004][seed as usize % 4];
            let vol = [0.01, 0.02, 0.035][seed as usize % 3];
            let y = log_walk(250, seed, drift, vol);
            let reference = augurs_ets::AutoETS::new(1, "AZN")
                .expect("spec")
                .fit(&y)
                .expect("augurs fit");
            let m = reference.model();
            let class = match (m.model_type().trend, m.damped()) {
                (TrendComponent::None, _) => Trend::None,
                (_, false) => Trend::Additive,
                (_, true) => Trend::Damped,
            };
            // augurs' likelihood is −n/2 · ln(SSE).
            let n = y.len() as f64;
            let reference_sse = (-2.0 * m.log_likelihood() / n).exp();
            let ours = fit::fit(&y, class).expect("fit");
            assert!(
                ours.sse <= reference_sse * (1.0 + 1e-4),
                "seed {seed} {class:?}: SSE {} vs augurs {reference_sse}",
                ours.sse
            );
            let selected = select(&y).expect("select");
            same_class += usize::from(selected.trend == class);
            let predicted = reference.predict(5, 0.8).expect("predict");
            let means = forecast_mean(selected.params, selected.last, 5);
            // Damped trends: augurs adds φ + φ + φ² + … from step 2 on (a quirk it shares with
            // statsforecast); this module adds φ + φ² + φ³ + … (Hyndman et al. 2008, eq. 2.18),
            // so only step 1 is compared there.
            let steps = if class == Trend::Damped { 1 } else { 5 };
            for (ours, theirs) in means.iter().zip(&predicted.point).take(steps) {
                worst_mean_gap = worst_mean_gap.max((ours - theirs).abs());
            }
            // σ²: SSE / (n − k) here (k parameters and states); augurs divides by n − k − 2.
            if let Some(iv) = predicted.intervals.filter(|_| selected.trend == class) {
                let z80 = Z[8];
                let theirs = (iv.upper[0] - iv.lower[0]) / (2.0 * z80);
                let k = selected.n_params() as f64;
                let want = theirs * ((n - k - 2.0) / (n - k)).sqrt();
                worst_sd_gap = worst_sd_gap.max((selected.sigma2().sqrt() - want).abs() / want);
            }
            classes[Trend::ALL.iter().position(|t| *t == class).unwrap_or(0)] += 1;
        }
        eprintln!(
            "classes (ANN, AAN, AAdN) {classes:?}; same class {same_class}/{cases}; \
             worst mean gap {worst_mean_gap:.1e}, worst sd gap {worst_sd_gap:.1e}"
        );
        assert!(
            classes.iter().all(|c| *c > 0),
            "every class is exercised: {classes:?}"
        );
        assert!(worst_sd_gap < 1e-6, "{worst_sd_gap}");
        // Both run the same algorithm from the same start, so they reach the same optimum up to
        // rounding: the same model wins (a near-tie in AICc may rarely flip) and forecasts agree
        // far below a price tick (1e-6 in log price is 0.0001%).
        assert!(
            same_class * 20 >= cases as usize * 19,
            "{same_class}/{cases}"
        );
        assert!(worst_mean_gap < 1e-6, "{worst_mean_gap}");
    }
}
