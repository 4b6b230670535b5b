//! Trading calendars. The engine only needs the trait; market calendars (KRX) implement it.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

pub trait Calendar: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn is_trading_day(&self, d: NaiveDate) -> bool;

    fn next_trading_day(&self, d: NaiveDate) -> NaiveDate {
        let mut x = d + Duration::days(1);
        while !self.is_trading_day(x) {
            x += Duration::days(1);
        }
        x
    }
    fn prev_trading_day(&self, d: NaiveDate) -> NaiveDate {
        let mut x = d - Duration::days(1);
        while !self.is_trading_day(x) {
            x -= Duration::days(1);
        }
        x
    }
    /// The latest trading day on or before `d`.
    fn trading_day_on_or_before(&self, d: NaiveDate) -> NaiveDate {
        if self.is_trading_day(d) {
            d
        } else {
            self.prev_trading_day(d)
        }
    }
    /// Moves `h` trading days forward (negative: backward) from `d`.
    fn add_trading_days(&self, d: NaiveDate, h: i64) -> NaiveDate {
        let mut x = d;
        for _ in 0..h.unsigned_abs() {
            x = if h >= 0 {
                self.next_trading_day(x)
            } else {
                self.prev_trading_day(x)
            };
        }
        x
    }
    /// Trading days in `[from, to]`, ascending.
    fn trading_days(&self, from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut x = from;
        while x <= to {
            if self.is_trading_day(x) {
                out.push(x);
            }
            x += Duration::days(1);
        }
        out
    }
}

/// Monday to Friday, plus an optional list of closures.
#[derive(Debug, Clone, Default)]
pub struct WeekdayCalendar {
    pub holidays: std::collections::BTreeSet<NaiveDate>,
}

impl Calendar for WeekdayCalendar {
    fn name(&self) -> &str {
        "weekdays"
    }
    fn is_trading_day(&self, d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weekday_calendar_skips_weekends_and_holidays() {
        let mut cal = WeekdayCalendar::default();
        cal.holidays.insert(d("2024-12-25"));
        assert_eq!(cal.next_trading_day(d("2024-12-20")), d("2024-12-23"));
        assert_eq!(cal.next_trading_day(d("2024-12-24")), d("2024-12-26"));
        assert_eq!(cal.add_trading_days(d("2024-12-23"), 3), d("2024-12-27"));
        assert_eq!(cal.add_trading_days(d("2024-12-27"), -3), d("2024-12-23"));
        assert_eq!(cal.trading_days(d("2024-12-21"), d("2024-12-27")).len(), 4);
        assert_eq!(
            cal.trading_day_on_or_before(d("2024-12-22")),
            d("2024-12-20")
        );
    }
}
