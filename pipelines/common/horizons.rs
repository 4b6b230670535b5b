//! Forecast horizons (trading days ahead) and the target date each one lands on.

use chrono::NaiveDate;
use krxflow_core::{Calendar, ConfigError};

/// The horizons every forecasting operator defaults to, and the targets `features_daily` has.
pub const HORIZONS: [u32; 3] = [1, 3, 5];

/// [`HORIZONS`] as a `Vec` (serde's `default = ...`).
pub fn default_horizons() -> Vec<u32> {
    HORIZONS.to_vec()
}

/// A DAG's `horizons` list: not empty, each within 1..=60 trading days.
pub fn check(horizons: &[u32]) -> Result<(), ConfigError> {
    if horizons.is_empty() || horizons.iter().any(|h| !(1..=60).contains(h)) {
        return Err(ConfigError::new(
            "horizons",
            "must list horizons within 1..=60 trading days",
        ));
    }
    Ok(())
}

/// The trading day `horizon` trading days after `base` on `calendar` (holidays skipped).
pub fn target_date(calendar: &dyn Calendar, base: NaiveDate, horizon: u32) -> NaiveDate {
    calendar.add_trading_days(base, i64::from(horizon))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_skip_weekends_and_the_chuseok_holidays_of_2024() {
        let krx = weekdays_and_chuseok_2024();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // Chuseok 2024: Mon 16 – Wed 18 September closed.
        assert_eq!(target_date(&krx, d("2024-09-13"), 1), d("2024-09-19"));
        assert_eq!(target_date(&krx, d("2024-09-12"), 3), d("2024-09-20"));
        assert_eq!(target_date(&krx, d("2024-09-13"), 5), d("2024-09-25"));
    }

    /// A calendar closed on weekends and on Chuseok 2024 only (the KRX calendar lives in
    /// krxflow-schedule, which this crate does not depend on).
    fn weekdays_and_chuseok_2024() -> impl Calendar {
        #[derive(Debug)]
        struct Chuseok;
        impl Calendar for Chuseok {
            fn name(&self) -> &str {
                "weekdays-and-chuseok-2024"
            }
            fn is_trading_day(&self, d: NaiveDate) -> bool {
                use chrono::Datelike;
                let holiday = d.year() == 2024 && d.month() == 9 && (16..=18).contains(&d.day());
                d.weekday().number_from_monday() <= 5 && !holiday
            }
        }
        Chuseok
    }
}
