//! Scheduling: trading calendars by name (`krx`, `weekdays`) and, built on them, the logical
//! dates a DAG runs for.

pub mod krx;
pub mod ticks;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use krxflow_core::{Calendar, WeekdayCalendar};

pub use krx::{Holiday, KrxCalendar};
pub use ticks::{Catchup, Tick, Ticker};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unknown calendar `{0}` (known: krx, weekdays, daily)")]
    UnknownCalendar(String),
    #[error("{source_name}: `{value}` is not a date (want YYYY-MM-DD)")]
    BadHoliday { source_name: String, value: String },
}

/// Names accepted by [`calendar_by_name`].
pub const CALENDARS: &[&str] = &["krx", "weekdays", "daily"];

/// The calendar called `name`, with `extra` closures added to its table.
pub fn calendar_by_name(
    name: &str,
    extra: &BTreeSet<NaiveDate>,
) -> Result<Arc<dyn Calendar>, ScheduleError> {
    match name {
        "krx" => Ok(Arc::new(
            KrxCalendar::new().with_extra(extra.iter().copied()),
        )),
        "weekdays" => Ok(Arc::new(WeekdayCalendar {
            holidays: extra.clone(),
        })),
        "daily" => Ok(Arc::new(DailyCalendar {
            closed: extra.clone(),
        })),
        other => Err(ScheduleError::UnknownCalendar(other.to_string())),
    }
}

/// Every day is a trading day except `closed` ones: for DAGs that are not tied to the market
/// (a Sunday retrain, housekeeping).
#[derive(Debug, Clone, Default)]
pub struct DailyCalendar {
    pub closed: BTreeSet<NaiveDate>,
}

impl Calendar for DailyCalendar {
    fn name(&self) -> &str {
        "daily"
    }
    fn is_trading_day(&self, d: NaiveDate) -> bool {
        !self.closed.contains(&d)
    }
}

/// Parses a comma/space separated list of `YYYY-MM-DD` dates (e.g. `KRXFLOW_EXTRA_HOLIDAYS`).
/// `source_name` names where the text came from, for the error.
pub fn parse_date_list(
    text: &str,
    source_name: &str,
) -> Result<BTreeSet<NaiveDate>, ScheduleError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| ScheduleError::BadHoliday {
                source_name: source_name.to_string(),
                value: s.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_calendar_names_are_errors_naming_the_known_ones() {
        let err = calendar_by_name("nyse", &BTreeSet::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown calendar `nyse` (known: krx, weekdays, daily)"
        );
    }

    #[test]
    fn extra_holiday_lists_parse_and_bad_dates_name_the_source() {
        let set = parse_date_list("2027-06-03, 2027-06-04\n", "KRXFLOW_EXTRA_HOLIDAYS").unwrap();
        assert_eq!(set.len(), 2);
        let err = parse_date_list("2027-13-01", "KRXFLOW_EXTRA_HOLIDAYS").unwrap_err();
        assert!(err.to_string().contains("KRXFLOW_EXTRA_HOLIDAYS"));
        assert!(err.to_string().contains("2027-13-01"));
    }

    #[test]
    fn extra_holidays_close_the_market_in_both_calendars() {
        let extra = parse_date_list("2027-06-03", "test").unwrap();
        for name in CALENDARS {
            let cal = calendar_by_name(name, &extra).unwrap();
            assert!(!cal.is_trading_day(NaiveDate::from_ymd_opt(2027, 6, 3).unwrap()));
            assert!(cal.is_trading_day(NaiveDate::from_ymd_opt(2027, 6, 2).unwrap()));
        }
    }
}
