//! Retry policies: how many times a failed task is retried and how long to wait in between.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the delay grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// `base * 2^(retry-1)`.
    Exponential,
    /// `base` every time.
    Fixed,
    /// `base * retry`.
    Linear,
}

/// Randomisation of the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in `[0, capped delay]` ("full jitter").
    Full,
    /// The capped delay itself.
    None,
}

/// A task's retry policy (`retries:` in YAML; task fields override `defaults.retries` one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max + 1` attempts).
    pub max: u32,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Delay of the first retry before jitter.
    pub base: Duration,
    /// Cap on the delay before jitter.
    pub max_delay: Duration,
    /// Randomisation.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// `{max: 0, backoff: exponential, base: 1s, max_delay: 5m, jitter: full}`.
    fn default() -> Self {
        Self {
            max: 0,
            backoff: Backoff::Exponential,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): exponential = `base*2^(retry-1)`,
    /// linear = `base*retry`, fixed = `base`; capped at `max_delay`; with full jitter a uniform
    /// draw in `[0, capped]` taken from `unit` in `[0, 1)` supplied by the caller.
    /// Retry 0 (no retry) has no delay.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let cap = self.max_delay_for(retry);
        match self.jitter {
            Jitter::None => cap,
            Jitter::Full => {
                let unit = if unit.is_finite() {
                    unit.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                cap.mul_f64(unit).min(cap)
            }
        }
    }

    /// The delay before retry `retry` (1-based) before jitter: the upper bound of
    /// [`RetryPolicy::delay`]. Zero for retry 0.
    pub fn max_delay_for(&self, retry: u32) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let raw = match self.backoff {
            Backoff::Fixed => Some(self.base),
            Backoff::Linear => self.base.checked_mul(retry),
            Backoff::Exponential => 2u32
                .checked_pow(retry - 1)
                .and_then(|factor| self.base.checked_mul(factor)),
        };
        raw.map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max: 5,
            backoff,
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn exponential_doubles_and_is_capped() {
        let p = policy(Backoff::Exponential, Jitter::None);
        let secs: Vec<u64> = (1..=5).map(|r| p.delay(r, 0.5).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 60, 60]);
    }

    #[test]
    fn linear_and_fixed_growth() {
        let l = policy(Backoff::Linear, Jitter::None);
        assert_eq!(l.delay(3, 0.0), Duration::from_secs(30));
        assert_eq!(l.delay(9, 0.0), Duration::from_secs(60));
        let f = policy(Backoff::Fixed, Jitter::None);
        assert_eq!(f.delay(1, 0.9), Duration::from_secs(10));
        assert_eq!(f.delay(7, 0.9), Duration::from_secs(10));
    }

    #[test]
    fn full_jitter_draws_within_the_cap() {
        let p = policy(Backoff::Exponential, Jitter::Full);
        assert_eq!(p.delay(2, 0.0), Duration::ZERO);
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(10));
        assert!(p.delay(2, 0.999_999) <= p.max_delay_for(2));
        assert!(
            p.delay(2, 7.0) <= p.max_delay_for(2),
            "out-of-range unit is clamped"
        );
        assert_eq!(p.delay(2, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn huge_retry_numbers_saturate_at_max_delay() {
        let p = policy(Backoff::Exponential, Jitter::None);
        assert_eq!(p.max_delay_for(200), Duration::from_secs(60));
        let l = policy(Backoff::Linear, Jitter::None);
        assert_eq!(l.max_delay_for(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn retry_zero_has_no_delay() {
        assert_eq!(RetryPolicy::default().max_delay_for(0), Duration::ZERO);
    }
}
