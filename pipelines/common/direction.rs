//! Up, flat or down: the ±0.3% band every forecaster, feature target and outcome uses.

/// ±0.3%: a move inside the band (inclusive) is `flat`.
pub const FLAT_BAND: f64 = 0.003;

/// The direction of a return, with the class order models use (down = 0, flat = 1, up = 2:
/// `krxflow_models::lgbm::DIRECTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Down,
    Flat,
    Up,
}

impl Direction {
    /// Every direction, in class order.
    pub const ALL: [Direction; 3] = [Direction::Down, Direction::Flat, Direction::Up];

    /// `ret` > band is up, < −band is down, anything in [−band, band] is flat — edges
    /// included up to floating-point error (`krxflow_models::lgbm::BAND_EDGE_TOLERANCE`: a
    /// 0.3% move computed from two prices is flat).
    pub fn classify(ret: f64, band: f64) -> Self {
        let tol = krxflow_models::lgbm::BAND_EDGE_TOLERANCE;
        if ret > band + tol {
            Self::Up
        } else if ret < -band - tol {
            Self::Down
        } else {
            Self::Flat
        }
    }
    /// [`Direction::classify`] with the standard [`FLAT_BAND`].
    pub fn of_return(ret: f64) -> Self {
        Self::classify(ret, FLAT_BAND)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Flat => "flat",
            Self::Up => "up",
        }
    }
    /// The class index (down 0, flat 1, up 2).
    pub fn class(self) -> u8 {
        self as u8
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
    /// The most probable direction of (down, flat, up) probabilities; ties go to flat, then
    /// to down (the cautious reading).
    pub fn argmax(prob_down: f64, prob_flat: f64, prob_up: f64) -> Self {
        if prob_flat >= prob_down && prob_flat >= prob_up {
            Self::Flat
        } else if prob_down >= prob_up {
            Self::Down
        } else {
            Self::Up
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_edges_are_flat_and_just_outside_is_not() {
        assert_eq!(Direction::of_return(0.003), Direction::Flat);
        assert_eq!(Direction::of_return(-0.003), Direction::Flat);
        assert_eq!(Direction::of_return(0.0), Direction::Flat);
        assert_eq!(
            Direction::of_return(10_030.0 / 10_000.0 - 1.0),
            Direction::Flat
        );
        assert_eq!(
            Direction::of_return(9_970.0 / 10_000.0 - 1.0),
            Direction::Flat
        );
        assert_eq!(Direction::of_return(0.003 + 1e-8), Direction::Up);
        assert_eq!(Direction::of_return(-0.003 - 1e-8), Direction::Down);
    }

    #[test]
    fn class_order_matches_the_models_crate() {
        for d in Direction::ALL {
            assert_eq!(
                krxflow_models::lgbm::DIRECTIONS[usize::from(d.class())],
                d.as_str()
            );
        }
        for r in [-0.01, -0.003, 0.0, 0.003, 0.0031, 0.05] {
            assert_eq!(
                krxflow_models::lgbm::direction_class(r, FLAT_BAND),
                Direction::of_return(r).class(),
                "{r}"
            );
        }
    }

    #[test]
    fn argmax_breaks_ties_toward_flat_then_down() {
        assert_eq!(Direction::argmax(0.2, 0.3, 0.5), Direction::Up);
        assert_eq!(Direction::argmax(0.5, 0.3, 0.2), Direction::Down);
        assert_eq!(Direction::argmax(0.4, 0.4, 0.2), Direction::Flat);
        assert_eq!(Direction::argmax(0.4, 0.2, 0.4), Direction::Down);
        assert_eq!(Direction::parse("up"), Some(Direction::Up));
        assert_eq!(Direction::parse("sideways"), None);
    }
}
