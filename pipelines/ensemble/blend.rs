//! The ensemble's arithmetic for one (code, horizon): validating a member's row, weighting
//! (learned, else prior; renormalised over the members present) and the weighted point,
//! interval and probabilities. See [`super::combine`] for the operator.

use std::collections::BTreeMap;

use crate::common::direction::Direction;

/// One member's forecast for one (code, horizon), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberForecast {
    pub model: String,
    pub base_close: f64,
    pub point: f64,
    pub q10: f64,
    pub q90: f64,
    pub prob_up: f64,
    pub prob_flat: f64,
    pub prob_down: f64,
    /// `model` (its own interval) or `fallback` (±fallback_band).
    pub interval_source: &'static str,
}

/// A member's weight in one row and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub member: MemberForecast,
    pub weight: f64,
    /// `learned` (from ensemble_weights) or `prior`.
    pub source: &'static str,
}

/// The combined forecast of one (code, horizon).
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    pub base_close: f64,
    pub point: f64,
    pub q10: f64,
    pub q90: f64,
    pub prob_up: f64,
    pub prob_flat: f64,
    pub prob_down: f64,
    pub direction: Direction,
    pub members: Vec<Weighted>,
}

impl Combined {
    pub fn expected_return(&self) -> f64 {
        self.point / self.base_close - 1.0
    }
    pub fn sources(&self) -> String {
        let names: Vec<&str> = self
            .members
            .iter()
            .map(|m| m.member.model.as_str())
            .collect();
        names.join(",")
    }
}

/// Validates a raw member row; `Err` is the reason it is dropped.
#[allow(clippy::too_many_arguments)]
pub fn member_forecast(
    model: &str,
    base_close: f64,
    point: f64,
    q10: f64,
    q90: f64,
    probs: [f64; 3],
    fallback_band: f64,
) -> Result<MemberForecast, &'static str> {
    let price = |x: f64| x.is_finite() && x > 0.0;
    if !price(base_close) {
        return Err("bad_base_close");
    }
    if !price(point) {
        return Err("bad_point");
    }
    let [up, flat, down] = probs;
    if probs.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return Err("bad_probabilities");
    }
    let sum = up + flat + down;
    if (sum - 1.0).abs() > 0.01 {
        return Err("probabilities_do_not_sum_to_1");
    }
    let (q10, q90, interval_source) = if price(q10) && price(q90) && q10 <= q90 {
        (q10, q90, "model")
    } else if q10.is_nan() || q90.is_nan() || q10 < 0.0 || q90 < 0.0 {
        return Err("bad_interval");
    } else {
        (
            point * (1.0 - fallback_band),
            point * (1.0 + fallback_band),
            "fallback",
        )
    };
    Ok(MemberForecast {
        model: model.to_string(),
        base_close,
        point,
        q10,
        q90,
        prob_up: up / sum,
        prob_flat: flat / sum,
        prob_down: down / sum,
        interval_source,
    })
}

/// Combines the members present for one row. `learned`: the learned weight set for the
/// row's (code, horizon), if any; `priors`: every member's prior. `None` when no member is
/// present.
pub fn combine(
    members: Vec<MemberForecast>,
    learned: Option<&BTreeMap<String, f64>>,
    priors: &BTreeMap<String, f64>,
) -> Option<Combined> {
    if members.is_empty() {
        return None;
    }
    let raw: Vec<(f64, &'static str)> = members
        .iter()
        .map(|m| match learned.and_then(|l| l.get(&m.model)) {
            Some(w) => (*w, "learned"),
            None => (priors.get(&m.model).copied().unwrap_or(0.0), "prior"),
        })
        .collect();
    let total: f64 = raw.iter().map(|r| r.0).sum();
    let n = members.len() as f64;
    let weighted: Vec<Weighted> = members
        .into_iter()
        .zip(raw)
        .map(|(member, (w, source))| Weighted {
            member,
            weight: if total > 0.0 { w / total } else { 1.0 / n },
            source,
        })
        .collect();
    let sum = |f: fn(&MemberForecast) -> f64| -> f64 {
        weighted.iter().map(|w| w.weight * f(&w.member)).sum()
    };
    let (up, flat, down) = (
        sum(|m| m.prob_up),
        sum(|m| m.prob_flat),
        sum(|m| m.prob_down),
    );
    let p = up + flat + down;
    Some(Combined {
        base_close: weighted[0].member.base_close,
        point: sum(|m| m.point),
        q10: sum(|m| m.q10),
        q90: sum(|m| m.q90),
        prob_up: up / p,
        prob_flat: flat / p,
        prob_down: down / p,
        direction: Direction::argmax(down / p, flat / p, up / p),
        members: weighted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(model: &str, point: f64, q10: f64, q90: f64, probs: [f64; 3]) -> MemberForecast {
        member_forecast(model, 100.0, point, q10, q90, probs, 0.03).expect("valid member")
    }

    fn priors() -> BTreeMap<String, f64> {
        [("chronos", 0.6), ("lgbm", 0.4), ("ets", 0.3)]
            .into_iter()
            .map(|(m, w)| (m.to_string(), w))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn priors_weight_the_point_interval_and_probabilities() {
        // Chronos 0.6 / LightGBM 0.4, hand-computed.
        let c = combine(
            vec![
                member("chronos", 102.0, 98.0, 106.0, [0.5, 0.2, 0.3]),
                member("lgbm", 99.0, 96.0, 103.0, [0.2, 0.3, 0.5]),
            ],
            None,
            &priors(),
        )
        .expect("combined");
        assert!(close(c.point, 0.6 * 102.0 + 0.4 * 99.0)); // 100.8
        assert!(close(c.q10, 0.6 * 98.0 + 0.4 * 96.0)); // 97.2
        assert!(close(c.q90, 0.6 * 106.0 + 0.4 * 103.0)); // 104.8
        assert!(close(c.prob_up, 0.38) && close(c.prob_flat, 0.24) && close(c.prob_down, 0.38));
        // A tie between up and down goes to down (the cautious reading).
        assert_eq!(c.direction, Direction::Down);
        assert!(close(c.expected_return(), 0.008));
        assert_eq!(c.sources(), "chronos,lgbm");
        assert!(c.members.iter().all(|m| m.source == "prior"));
    }

    #[test]
    fn a_missing_member_gives_its_weight_to_the_others() {
        // Only LightGBM and ETS: 0.4 and 0.3 renormalised to 4/7 and 3/7.
        let c = combine(
            vec![
                member("lgbm", 110.0, 100.0, 120.0, [1.0, 0.0, 0.0]),
                member("ets", 103.0, 99.0, 107.0, [0.0, 0.0, 1.0]),
            ],
            None,
            &priors(),
        )
        .expect("combined");
        assert!(close(c.members[0].weight, 4.0 / 7.0) && close(c.members[1].weight, 3.0 / 7.0));
        assert!(close(c.point, (4.0 * 110.0 + 3.0 * 103.0) / 7.0));
        assert_eq!(c.direction, Direction::Up);
        // Cold start: a lone member carries the row.
        let c = combine(
            vec![member("ets", 101.0, 99.0, 103.0, [0.3, 0.3, 0.4])],
            None,
            &priors(),
        )
        .expect("combined");
        assert_eq!(c.members[0].weight, 1.0);
        assert_eq!(c.point, 101.0);
        assert!(combine(vec![], None, &priors()).is_none());
    }

    #[test]
    fn learned_weights_override_priors_and_are_renormalised_over_members_present() {
        let learned: BTreeMap<String, f64> = [
            ("lgbm".to_string(), 0.2),
            ("ets".to_string(), 0.5),
            ("chronos".to_string(), 0.3),
        ]
        .into();
        let c = combine(
            vec![
                member("lgbm", 100.0, 99.0, 101.0, [0.4, 0.2, 0.4]),
                member("ets", 107.0, 100.0, 114.0, [0.4, 0.2, 0.4]),
            ],
            Some(&learned),
            &priors(),
        )
        .expect("combined");
        assert!(close(c.members[0].weight, 0.2 / 0.7) && c.members[0].source == "learned");
        assert!(close(c.point, (0.2 * 100.0 + 0.5 * 107.0) / 0.7));
    }

    #[test]
    fn bad_member_rows_are_dropped_with_a_reason_and_unusable_intervals_fall_back() {
        let ok = [0.3, 0.3, 0.4];
        assert_eq!(
            member_forecast("lgbm", 100.0, f64::NAN, 99.0, 101.0, ok, 0.03),
            Err("bad_point")
        );
        assert_eq!(
            member_forecast("lgbm", -5.0, 100.0, 99.0, 101.0, ok, 0.03),
            Err("bad_base_close")
        );
        assert_eq!(
            member_forecast("lgbm", 100.0, -100.0, 99.0, 101.0, ok, 0.03),
            Err("bad_point")
        );
        assert_eq!(
            member_forecast("lgbm", 100.0, 100.0, 99.0, 101.0, [0.9, 0.9, 0.9], 0.03),
            Err("probabilities_do_not_sum_to_1")
        );
        assert_eq!(
            member_forecast("lgbm", 100.0, 100.0, f64::NAN, 101.0, ok, 0.03),
            Err("bad_interval")
        );
        // Inverted interval: ±3% of the member's point.
        let m = member_forecast("lgbm", 100.0, 200.0, 210.0, 190.0, ok, 0.03).expect("kept");
        assert_eq!(m.interval_source, "fallback");
        assert!(close(m.q10, 194.0) && close(m.q90, 206.0));
    }
}
