//! Per-row validation of a daily bar: [`check_row`] parses and checks one row's raw fields and
//! says [`Checked`] (accepted, maybe repaired, or rejected with a reason).

use chrono::NaiveDate;

use crate::common::dates::parse_date;
use crate::common::rejects::{MAX_QUOTED, Reason, Reject, clip, is_null};

/// A validated bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub code: String,
    pub date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// Raw fields of one row, by role.
#[derive(Debug, Clone, Default)]
pub struct RawRow<'a> {
    pub code: &'a str,
    pub date: &'a str,
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
}

/// Outcome of validating one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Accepted { bar: Bar, repaired: bool },
    Rejected(Reject),
}

/// The largest volume kept exactly (2^53: every integer up to it is an exact f64).
const MAX_VOLUME: f64 = 9_007_199_254_740_992.0;

/// Validates one row (without the duplicate/provisional checks, which need context).
pub fn check_row(row: &RawRow<'_>, raw: &str, tol_abs: f64, tol_rel: f64) -> Checked {
    let code = row.code.trim().to_string();
    let reject = |date: Option<NaiveDate>, reason: Reason, detail: String| {
        Checked::Rejected(Reject {
            code: code.clone(),
            date,
            reason,
            detail,
            raw: raw.to_string(),
        })
    };
    if code.is_empty() || code.len() > 12 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return reject(
            None,
            Reason::BadCode,
            format!("code `{}`", clip(&code, MAX_QUOTED)),
        );
    }
    let Some(date) = parse_date(row.date) else {
        let date = clip(row.date, MAX_QUOTED);
        return reject(None, Reason::Unparsable, format!("date `{date}`"));
    };
    let fields = [
        ("open", row.open),
        ("high", row.high),
        ("low", row.low),
        ("close", row.close),
        ("volume", row.volume),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, v)| is_null(v)) {
        return reject(Some(date), Reason::NullValue, format!("{name} is null"));
    }
    let mut nums = [0f64; 5];
    for (i, (name, v)) in fields.iter().enumerate() {
        match v.trim().replace(',', "").parse::<f64>() {
            Ok(x) if x.is_finite() => nums[i] = x,
            Ok(x) => {
                return reject(Some(date), Reason::NonFinite, format!("{name} is {x}"));
            }
            Err(_) => {
                let v = clip(v, MAX_QUOTED);
                return reject(Some(date), Reason::Unparsable, format!("{name} `{v}`"));
            }
        }
    }
    let [open, mut high, mut low, close, volume] = nums;
    // A whole number of shares that an i64 holds exactly (a fractional volume would round,
    // 0.4 to an accepted bar with volume 0: found by fuzzing).
    if volume.fract() != 0.0 || volume.abs() > MAX_VOLUME {
        return reject(
            Some(date),
            Reason::Unparsable,
            format!("volume {volume} is not a whole number of shares"),
        );
    }
    if volume < 0.0 {
        return reject(
            Some(date),
            Reason::NegativeVolume,
            format!("volume {volume}"),
        );
    }
    if volume == 0.0 && (open == 0.0 || high == 0.0 || low == 0.0) {
        return reject(
            Some(date),
            Reason::TradingHalt,
            format!("open/high/low {open}/{high}/{low} with zero volume"),
        );
    }
    if open <= 0.0 || high <= 0.0 || low <= 0.0 || close <= 0.0 {
        return reject(
            Some(date),
            Reason::NonPositivePrice,
            format!("ohlc {open}/{high}/{low}/{close}"),
        );
    }
    let top = open.max(close);
    let bottom = open.min(close);
    let tol = |p: f64| tol_abs.max(p * tol_rel);
    if high + tol(top) < top || low - tol(bottom) > bottom || high < low {
        return reject(
            Some(date),
            Reason::InconsistentHighLow,
            format!("ohlc {open}/{high}/{low}/{close}"),
        );
    }
    let repaired = high < top || low > bottom;
    high = high.max(top);
    low = low.min(bottom);
    if volume == 0.0 {
        return reject(
            Some(date),
            Reason::ZeroVolume,
            "volume 0 on a traded day".into(),
        );
    }
    Checked::Accepted {
        bar: Bar {
            code,
            date,
            open,
            high,
            low,
            close,
            volume: volume.round() as i64,
        },
        repaired,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row<'a>(
        d: &'a str,
        o: &'a str,
        h: &'a str,
        l: &'a str,
        c: &'a str,
        v: &'a str,
    ) -> RawRow<'a> {
        RawRow {
            code: "005930",
            date: d,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
        }
    }

    fn reason(c: Checked) -> Option<&'static str> {
        match c {
            Checked::Rejected(r) => Some(r.reason.code()),
            Checked::Accepted { .. } => None,
        }
    }

    #[test]
    fn split_halt_rows_are_rejected_as_trading_halt() {
        let c = check_row(
            &row("2018-04-30", "0", "0", "0", "53000", "0"),
            "",
            2.0,
            0.001,
        );
        assert_eq!(reason(c), Some("trading_halt"));
    }

    #[test]
    fn yahoo_null_rows_are_rejected_as_null_value() {
        let c = check_row(
            &row("2000-01-03", "null", "null", "null", "null", "null"),
            "",
            2.0,
            0.001,
        );
        assert_eq!(reason(c), Some("null_value"));
    }

    #[test]
    fn zero_volume_on_a_priced_day_is_rejected() {
        let c = check_row(
            &row("2005-01-03", "100", "110", "90", "100", "0"),
            "",
            2.0,
            0.001,
        );
        assert_eq!(reason(c), Some("zero_volume"));
    }

    #[test]
    fn rounding_of_adjusted_prices_is_repaired_within_tolerance() {
        match check_row(
            &row("2010-01-04", "1000", "1005", "999", "1006", "10"),
            "",
            2.0,
            0.001,
        ) {
            Checked::Accepted { bar, repaired } => {
                assert!(repaired);
                assert_eq!(bar.high, 1006.0);
            }
            other => panic!("{other:?}"),
        }
        let far = check_row(
            &row("2010-01-04", "1000", "1005", "990", "1100", "10"),
            "",
            2.0,
            0.001,
        );
        assert_eq!(reason(far), Some("inconsistent_high_low"));
    }

    #[test]
    fn infinities_fractional_volumes_nan_and_a_huge_field_are_each_rejected_precisely() {
        let r = |o: &str| check_row(&row("2010-01-04", o, "1", "1", "1", "1"), "", 2.0, 0.001);
        assert_eq!(reason(r("inf")), Some("non_finite"));
        assert_eq!(reason(r("-Infinity")), Some("non_finite"));
        assert_eq!(reason(r("NaN")), Some("null_value"));
        let v = |v: &str| check_row(&row("2010-01-04", "1", "1", "1", "1", v), "", 2.0, 0.001);
        assert_eq!(reason(v("0.4")), Some("unparsable"));
        assert_eq!(reason(v("1e30")), Some("unparsable"));
        assert_eq!(reason(v("1,200.0")), None);
        let huge = "9x".repeat(1_000_000);
        let Checked::Rejected(rej) = r(&huge) else {
            panic!("a 2 MB field accepted")
        };
        assert_eq!(rej.reason, Reason::Unparsable);
        assert!(rej.detail.len() < 200, "{}", rej.detail.len());
        assert!(
            rej.detail.contains("[2000000 bytes in all]"),
            "{}",
            rej.detail
        );
    }

    #[test]
    fn unparsable_fields_and_negative_prices_are_rejected() {
        assert_eq!(
            reason(check_row(
                &row("2010-13-45", "1", "1", "1", "1", "1"),
                "",
                2.0,
                0.001
            )),
            Some("unparsable")
        );
        assert_eq!(
            reason(check_row(
                &row("2010-01-04", "abc", "1", "1", "1", "1"),
                "",
                2.0,
                0.001
            )),
            Some("unparsable")
        );
        assert_eq!(
            reason(check_row(
                &row("2010-01-04", "-5", "1", "-6", "1", "1"),
                "",
                2.0,
                0.001
            )),
            Some("non_positive_price")
        );
    }
}
