//! How one forecast is scored against the close that came: direction with the ±0.3% band,
//! absolute and percentage error, interval hit and pinball losses.

use crate::common::direction::Direction;

/// A forecast of one close: point, q10, q90 and the direction it called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    pub base_close: f64,
    pub point: f64,
    pub q10: f64,
    pub q90: f64,
    pub direction: Direction,
}

/// The score of a [`Forecast`] against `actual`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub actual_return: f64,
    pub actual_direction: Direction,
    pub direction_hit: bool,
    pub abs_error: f64,
    pub abs_pct_error: f64,
    pub inside_interval: bool,
    /// Pinball losses at τ = 0.1, 0.5 (the point), 0.9, in return units (prices divided by
    /// the base close), so they compare across codes.
    pub pinball: [f64; 3],
}

/// The pinball (quantile) loss of quantile forecast `q` at level `tau` for outcome `y`.
pub fn pinball(q: f64, tau: f64, y: f64) -> f64 {
    let d = y - q;
    (tau * d).max((tau - 1.0) * d)
}

pub fn score(f: &Forecast, actual: f64) -> Score {
    let actual_return = actual / f.base_close - 1.0;
    let actual_direction = Direction::of_return(actual_return);
    let abs_error = (f.point - actual).abs();
    let r = |x: f64| x / f.base_close;
    Score {
        actual_return,
        actual_direction,
        direction_hit: f.direction == actual_direction,
        abs_error,
        abs_pct_error: abs_error / actual,
        inside_interval: f.q10 <= actual && actual <= f.q90,
        pinball: [
            pinball(r(f.q10), 0.1, r(actual)),
            pinball(r(f.point), 0.5, r(actual)),
            pinball(r(f.q90), 0.9, r(actual)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecast(direction: Direction) -> Forecast {
        Forecast {
            base_close: 100.0,
            point: 101.0,
            q10: 98.0,
            q90: 104.0,
            direction,
        }
    }

    #[test]
    fn the_flat_band_edges_are_flat_exactly() {
        // +0.3% and −0.3% exactly are flat; a tick beyond is not.
        for (actual, want) in [
            (100.3, Direction::Flat),
            (99.7, Direction::Flat),
            (100.0, Direction::Flat),
            (100.31, Direction::Up),
            (99.69, Direction::Down),
        ] {
            let s = score(&forecast(Direction::Flat), actual);
            assert_eq!(s.actual_direction, want, "{actual}");
            assert_eq!(s.direction_hit, want == Direction::Flat, "{actual}");
        }
    }

    #[test]
    fn errors_interval_and_pinball_are_hand_computed() {
        let s = score(&forecast(Direction::Up), 105.0);
        assert!(s.direction_hit);
        assert!((s.abs_error - 4.0).abs() < 1e-12);
        assert!((s.abs_pct_error - 4.0 / 105.0).abs() < 1e-12);
        assert!(!s.inside_interval);
        // In return units: q10 0.98, point 1.01, q90 1.04, outcome 1.05.
        assert!((s.pinball[0] - 0.1 * 0.07).abs() < 1e-12);
        assert!((s.pinball[1] - 0.5 * 0.04).abs() < 1e-12);
        assert!((s.pinball[2] - 0.9 * 0.01).abs() < 1e-12);
        let s = score(&forecast(Direction::Up), 97.0);
        assert!(!s.direction_hit && s.actual_direction == Direction::Down);
        // Below q90 the loss is (1 − 0.9)·(q90 − y).
        assert!((s.pinball[2] - 0.1 * 0.07).abs() < 1e-12);
        assert!(score(&forecast(Direction::Up), 98.0).inside_interval);
        assert!(score(&forecast(Direction::Up), 104.0).inside_interval);
    }
}
