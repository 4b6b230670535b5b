//! Rejected input rows: why ([`Reason`]), the row ([`Reject`]), stable ids and the batch every
//! input-rejects table (`ohlcv_rejects`, `index_rejects`, `universe_rejects`) stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use krxflow_core::{Observation, TaskContext};
use sha2::{Digest, Sha256};

use super::dates::days;

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Unparsable,
    /// A record with fewer fields than the columns the reader needs (not a null value).
    ShortRow,
    NullValue,
    /// `inf` / `-inf` where a number is needed.
    NonFinite,
    TradingHalt,
    NonPositivePrice,
    InconsistentHighLow,
    ZeroVolume,
    NegativeVolume,
    DuplicateDate,
    /// Dated on a weekend or market holiday of the run's calendar.
    NonTradingDay,
    Provisional,
    BadCode,
    /// A whole source file that could not be decoded or parsed (quarantined; the others go on).
    UnreadableFile,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::ShortRow => "short_row",
            Self::NullValue => "null_value",
            Self::NonFinite => "non_finite",
            Self::TradingHalt => "trading_halt",
            Self::NonPositivePrice => "non_positive_price",
            Self::InconsistentHighLow => "inconsistent_high_low",
            Self::ZeroVolume => "zero_volume",
            Self::NegativeVolume => "negative_volume",
            Self::DuplicateDate => "duplicate_date",
            Self::NonTradingDay => "non_trading_day",
            Self::Provisional => "provisional",
            Self::BadCode => "bad_code",
            Self::UnreadableFile => "unreadable_file",
        }
    }
}

/// A rejected row.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub code: String,
    pub date: Option<NaiveDate>,
    pub reason: Reason,
    pub detail: String,
    pub raw: String,
}

/// A raw field that stands for "no value" (`null_value` when a value is required).
pub fn is_null(s: &str) -> bool {
    let t = s.trim();
    t.is_empty()
        || t.eq_ignore_ascii_case("null")
        || t.eq_ignore_ascii_case("nan")
        || t.eq_ignore_ascii_case("none")
        || t == "-"
}

/// At most `max` bytes of `s` (cut at a character boundary), with the full length noted when
/// cut: a 2 MB field must not become a 2 MB reason or a 2 MB cell in a rejects table.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes in all]", &s[..end], s.len()).into()
}

/// Longest `detail` and `raw` kept in a rejects table (the id hashes the whole row).
pub const MAX_DETAIL: usize = 512;
pub const MAX_RAW: usize = 4096;
/// Longest field value quoted in a reason's detail.
pub const MAX_QUOTED: usize = 64;

/// Stable id of a reject: re-ingesting the same bad row does not duplicate it.
pub fn reject_id(source: &str, r: &Reject) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0x1f]);
    h.update(r.code.as_bytes());
    h.update([0x1f]);
    h.update(r.raw.as_bytes());
    h.update([0x1f]);
    h.update(r.reason.code().as_bytes());
    h.update([0x1f]);
    h.update(r.detail.as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes content-hash ids unique within one batch: the n-th repeat of an identical record
/// (e.g. a row listed five times in a panel) gets `<id>-n`, so each repeat is kept as its own
/// reject and re-ingest still produces the same ids.
pub fn unique_ids(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    ids.map(|id| {
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 { id } else { format!("{id}-{n}") }
    })
    .collect()
}

/// Records one [`Observation::Rejected`] per reason for the rows an operator writes to its
/// output port `port` (the metrics count them on the table bound to it). Collectors count
/// `rejected.<reason>` themselves and operators forward those counters as they are, so this adds
/// no counter (unlike [`TaskContext::rejected`]).
pub fn observe_rejects<'a>(
    ctx: &TaskContext,
    port: &str,
    reasons: impl IntoIterator<Item = &'a str>,
) {
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for r in reasons {
        *by_reason.entry(r).or_default() += 1;
    }
    for (reason, n) in by_reason {
        ctx.observe(Observation::Rejected {
            port: port.to_string(),
            reason: reason.to_string(),
            n,
        });
    }
}

/// The schema of every input-rejects table.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("ds", DataType::Date32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// `rejects` found by the run for `ds`, as a batch of [`schema`]. A reject is dated (`ds`) by
/// its row's own date, the run's day only when it has none: a source re-read over an overlap
/// of days (late revisions) finds the same bad rows again, and they must come back unchanged
/// rather than re-dated, or every run would rewrite them (a Delta merge of every repeat).
pub fn rejects_batch(
    rejects: &[Reject],
    source: &str,
    ds: NaiveDate,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(unique_ids(
                rejects.iter().map(|r| reject_id(source, r)),
            ))) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(
                rejects.iter().map(|r| days(r.date.unwrap_or(ds))),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|_| source),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| clip(&r.code, MAX_QUOTED)),
            )),
            Arc::new(Date32Array::from(
                rejects.iter().map(|r| r.date.map(days)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.reason.code()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| clip(&r.detail, MAX_DETAIL)),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| clip(&r.raw, MAX_RAW)),
            )),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(raw: &str) -> Reject {
        Reject {
            code: "005930".into(),
            date: None,
            reason: Reason::NullValue,
            detail: "close is null".into(),
            raw: raw.into(),
        }
    }

    #[test]
    fn clip_cuts_long_text_at_a_char_boundary_and_says_how_long_it_was() {
        assert_eq!(clip("short", 8), "short");
        let long = "가".repeat(1000); // 3 bytes each
        let c = clip(&long, 64);
        assert!(
            c.starts_with(&"가".repeat(21)) && c.ends_with("… [3000 bytes in all]"),
            "{c}"
        );
        let big = reject(&"x".repeat(2_000_000));
        let b = rejects_batch(&[big], "csv", NaiveDate::default()).expect("batch");
        let raw = b
            .column(7)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8");
        assert!(raw.value(0).len() < MAX_RAW + 64, "{}", raw.value(0).len());
    }

    #[test]
    fn repeated_identical_rejects_get_distinct_stable_ids() {
        let rs = [reject("a"), reject("a"), reject("b")];
        let b1 = rejects_batch(&rs, "csv", NaiveDate::default()).expect("batch");
        let b2 = rejects_batch(&rs, "csv", NaiveDate::default()).expect("batch");
        let ids = |b: &RecordBatch| -> Vec<String> {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8 ids");
            a.iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect()
        };
        let (i1, i2) = (ids(&b1), ids(&b2));
        assert_eq!(i1, i2);
        assert_eq!(i1[1], format!("{}-2", i1[0]));
        assert_ne!(i1[0], i1[2]);
    }

    #[test]
    fn null_spellings_count_as_missing() {
        for s in ["", " ", "null", "NaN", "None", "-"] {
            assert!(is_null(s), "{s:?}");
        }
        assert!(!is_null("0"));
    }
}
