//! AutoETS (augurs-ets, a port of statsforecast's) on log closes: nine quantile prices per
//! step ahead, from a model that needs no downloaded weights.
//!
//! The search covers additive-error models without seasonality (`AZN`: no trend, additive
//! trend, damped trend), chosen by AICc. On the log scale the forecast distribution of step h
//! is normal with the model's mean and variance, so quantile k/10 of the price is
//! `exp(mean_h + z_k · sd_h)`, with `sd_h` read from the model's 80% interval.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;

use crate::error::{ModelError, ModelResult};

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

/// The forecast of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct EtsForecast {
    /// The selected model (error, trend, season), e.g. `AAdN`.
    pub model: String,
    /// Per step 1..=steps: the price quantiles q10..q90.
    pub quantiles: Vec<[f64; 9]>,
}

/// Fits AutoETS to `ln(closes)` and forecasts `steps` steps ahead.
///
/// Closes must be finite and positive; too short a series is `ModelError::Ets(NotEnoughData)`.
pub fn forecast(closes: &[f64], steps: usize) -> ModelResult<EtsForecast> {
    if let Some(bad) = closes.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
        return Err(ModelError::Inference(format!(
            "ETS needs positive finite closes, got {bad}"
        )));
    }
    let y: Vec<f64> = closes.iter().map(|c| c.ln()).collect();
    let search = AutoETS::new(1, "AZN").map_err(ModelError::Ets)?;
    let fitted = search.fit(&y).map_err(ModelError::Ets)?;
    let f = fitted.predict(steps, 0.8).map_err(ModelError::Ets)?;
    let intervals = f
        .intervals
        .ok_or_else(|| ModelError::Inference("ETS returned no prediction interval".into()))?;
    let mut quantiles = Vec::with_capacity(steps);
    for h in 0..steps {
        let (mean, lo, hi) = (f.point[h], intervals.lower[h], intervals.upper[h]);
        let sd = ((hi - lo) / (2.0 * Z[8])).max(0.0);
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
        model: fitted.model().model_type().to_string(),
        quantiles,
    })
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
}
