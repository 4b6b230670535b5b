//! The KRX (Korea Exchange) trading calendar: weekends plus the market closures in
//! `data/krx_holidays.csv`, embedded at compile time.
//!
//! The table covers 2000-01-01..2027-12-31: lunar new year (Seollal) and Chuseok with their
//! substitute days, Buddha's Birthday, the fixed public holidays, Labour Day (1 May), election
//! days, temporary holidays and the year-end closing day (31 Dec, or the last weekday before it).
//! Dates 2000-08-25..2024-12-16 are checked against the trading days of the real price files
//! in `../shared/data`, 2024-12-17..2026-05-04 against the KOSPI index file (tests below).
//! Later dates are announced public holidays; closures KRX adds later go in `extra_holidays`
//! (`KRXFLOW_EXTRA_HOLIDAYS`). Outside the table's years only weekends are closed.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use krxflow_core::Calendar;

const TABLE: &str = include_str!("../data/krx_holidays.csv");

/// First and last year the embedded table covers.
pub const FIRST_YEAR: i32 = 2000;
pub const LAST_YEAR: i32 = 2027;

/// One market closure on a weekday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
}

/// Parses the embedded table. Lines: `YYYY-MM-DD,name`; `#` comments and the header skipped.
fn embedded() -> BTreeMap<NaiveDate, String> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("date,") && !l.trim().is_empty())
        .filter_map(|l| {
            let (d, name) = l.split_once(',')?;
            let date = NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok()?;
            Some((date, name.trim().to_string()))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct KrxCalendar {
    closures: BTreeMap<NaiveDate, String>,
}

impl Default for KrxCalendar {
    fn default() -> Self {
        Self::new()
    }
}

impl KrxCalendar {
    pub fn new() -> Self {
        Self {
            closures: embedded(),
        }
    }

    /// Adds closures (from configuration) on top of the embedded table.
    pub fn with_extra(mut self, extra: impl IntoIterator<Item = NaiveDate>) -> Self {
        for d in extra {
            self.closures
                .entry(d)
                .or_insert_with(|| "extra holiday (config)".to_string());
        }
        self
    }

    /// Why the market is closed on `d` (a weekday closure), if it is.
    pub fn holiday_name(&self, d: NaiveDate) -> Option<&str> {
        self.closures.get(&d).map(String::as_str)
    }

    /// Weekday closures in `[from, to]`.
    pub fn holidays(&self, from: NaiveDate, to: NaiveDate) -> Vec<Holiday> {
        self.closures
            .range(from..=to)
            .map(|(d, n)| Holiday {
                date: *d,
                name: n.clone(),
            })
            .collect()
    }

    /// Whether `d` lies in the years the embedded table covers.
    pub fn covers(d: NaiveDate) -> bool {
        (FIRST_YEAR..=LAST_YEAR).contains(&d.year())
    }
}

impl Calendar for KrxCalendar {
    fn name(&self) -> &str {
        "krx"
    }
    fn is_trading_day(&self, d: NaiveDate) -> bool {
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !self.closures.contains_key(&d)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn embedded_table_parses_every_line_and_has_only_weekdays() {
        let data_lines = TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("date,") && !l.trim().is_empty())
            .count();
        let table = embedded();
        assert_eq!(
            table.len(),
            data_lines,
            "a line of krx_holidays.csv did not parse"
        );
        for date in table.keys() {
            assert!(
                !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
                "{date}"
            );
            assert!(KrxCalendar::covers(*date), "{date}");
        }
        for y in FIRST_YEAR..=LAST_YEAR {
            let n = table.keys().filter(|k| k.year() == y).count();
            assert!((5..=20).contains(&n), "{y} has {n} closures");
        }
    }

    #[test]
    fn lunar_holidays_substitutes_and_year_end_close_the_market() {
        let cal = KrxCalendar::new();
        for closed in [
            "2024-02-09", // Seollal
            "2024-02-12", // Seollal substitute
            "2024-09-17", // Chuseok
            "2024-10-01", // temporary holiday
            "2024-12-31", // year-end closing
            "2023-12-29", // year-end closing on the last weekday (31st is a Sunday)
            "2025-06-03", // presidential election
            "2025-10-08", // Chuseok substitute
            "2027-12-27", // Christmas substitute
        ] {
            assert!(!cal.is_trading_day(d(closed)), "{closed} should be closed");
            assert!(cal.holiday_name(d(closed)).is_some());
        }
        assert_eq!(cal.next_trading_day(d("2024-12-27")), d("2024-12-30"));
        assert_eq!(cal.next_trading_day(d("2024-12-30")), d("2025-01-02"));
        assert_eq!(cal.add_trading_days(d("2024-09-13"), 1), d("2024-09-19"));
        assert_eq!(cal.add_trading_days(d("2024-09-19"), -1), d("2024-09-13"));
        assert_eq!(cal.prev_trading_day(d("2025-01-02")), d("2024-12-30"));
        assert_eq!(
            cal.trading_days(d("2025-01-27"), d("2025-01-31")),
            vec![d("2025-01-31")]
        );
    }

    /// `../shared/data` beside the repository (or `KRXFLOW_DATA`), if present.
    fn data_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("KRXFLOW_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
            });
        if dir.join("ohlcv").is_dir() {
            Some(dir)
        } else {
            krxflow_core::skip::real_data_absent(&dir);
            None
        }
    }

    /// Dates in the first column of a CSV, in the given format; rows whose close is `null`
    /// (Yahoo's holiday rows) are left out.
    fn dates_in(path: &std::path::Path, fmt: &str) -> BTreeSet<NaiveDate> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .skip(1)
            .filter(|l| !l.contains("null"))
            .filter_map(|l| NaiveDate::parse_from_str(l.split(',').next()?, fmt).ok())
            .collect()
    }

    /// Compares the calendar's trading days in [from, to] with the dates in a file and names
    /// every disagreement.
    fn disagreements(file: &BTreeSet<NaiveDate>, from: NaiveDate, to: NaiveDate) -> Vec<String> {
        let cal = KrxCalendar::new();
        let ours: BTreeSet<NaiveDate> = cal.trading_days(from, to).into_iter().collect();
        let in_range: BTreeSet<NaiveDate> = file.range(from..=to).copied().collect();
        let mut out: Vec<String> = ours
            .difference(&in_range)
            .map(|x| format!("{x}: calendar says trading, file has no row"))
            .collect();
        out.extend(in_range.difference(&ours).map(|x| {
            format!(
                "{x}: file has a row, calendar says closed ({:?})",
                cal.holiday_name(*x)
            )
        }));
        out
    }

    #[test]
    fn calendar_agrees_with_every_samsung_trading_day_2000_to_2024() {
        let Some(dir) = data_dir() else { return };
        let file = dates_in(&dir.join("ohlcv/krx_daily_30/005930.csv"), "%Y-%m-%d");
        assert_eq!(file.len(), 6000);
        let (first, last) = (*file.first().unwrap(), *file.last().unwrap());
        let bad = disagreements(&file, first, last);
        assert!(
            bad.is_empty(),
            "{} disagreements:\n{}",
            bad.len(),
            bad.join("\n")
        );
        let bad = disagreements(&file, d("2011-01-01"), d("2024-12-16"));
        assert!(bad.is_empty());
    }

    #[test]
    fn calendar_agrees_with_the_kospi_index_2023_to_2026() {
        let Some(dir) = data_dir() else { return };
        let file = dates_in(
            &dir.join("ohlcv/kospi_index/KOSPI_onekindalpha_2023-2026.csv"),
            "%Y%m%d",
        );
        assert_eq!(file.len(), 813);
        let (first, last) = (*file.first().unwrap(), *file.last().unwrap());
        let bad = disagreements(&file, first, last);
        assert!(
            bad.is_empty(),
            "{} disagreements:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }

    #[test]
    fn yahoo_null_rows_in_2000_fall_on_krx_holidays() {
        let Some(dir) = data_dir() else { return };
        let file = dates_in(
            &dir.join("ohlcv/kospi_index/KS11_yahoo_espark11.csv"),
            "%Y-%m-%d",
        );
        let bad = disagreements(&file, d("2000-01-01"), d("2000-08-24"));
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
