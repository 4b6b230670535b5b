//! Dates as Arrow stores them (`Date32`: days since 1970-01-01) and as input files write them.

use chrono::NaiveDate;

/// `d` as a `Date32` value (days since the Unix epoch).
pub fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::default()).num_days() as i32
}

/// The date of a `Date32` value.
pub fn date_of(days: i32) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(i64::from(days))
}

/// A date as input files write it: `YYYY-MM-DD` (optionally followed by a time),
/// `YYYYMMDD`, `YYYY.MM.DD` or `YYYY/MM/DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let s = s
        .get(..10)
        .filter(|p| p.len() == 10 && s.len() >= 10)
        .unwrap_or(s);
    if let Some(d) = parse_iso_date(s) {
        return Some(d);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y%m%d"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y.%m.%d"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y/%m/%d"))
        .ok()
}

/// `YYYY-MM-DD` exactly (the common case, without chrono's format interpreter).
fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_date_of_are_inverse_around_the_epoch() {
        for s in ["1969-12-31", "1970-01-01", "2024-09-18", "2099-12-31"] {
            let d = parse_date(s).expect("valid date");
            assert_eq!(date_of(days(d)), d);
        }
        assert_eq!(days(NaiveDate::default()), 0);
    }

    #[test]
    fn input_date_formats_parse_and_garbage_does_not() {
        let want = NaiveDate::from_ymd_opt(2024, 9, 18);
        for s in [
            "2024-09-18",
            "20240918",
            "2024.09.18",
            "2024/09/18",
            " 2024-09-18 15:30:00",
        ] {
            assert_eq!(parse_date(s), want, "{s}");
        }
        for s in ["", "2024-13-01", "2024-02-30", "yesterday", "2024-9-1x"] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }
}
