//! Date32 conversions (days since 1970-01-01) shared by reads, writes and merges.

use chrono::NaiveDate;

pub(crate) fn date32(d: NaiveDate) -> i32 {
    // Days since 1970-01-01; every NaiveDate in range fits in i32.
    (d - NaiveDate::default()).num_days() as i32
}

pub(crate) fn from_date32(d: i32) -> Option<NaiveDate> {
    NaiveDate::default().checked_add_signed(chrono::Duration::days(i64::from(d)))
}
