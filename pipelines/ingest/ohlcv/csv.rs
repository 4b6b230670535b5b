//! Bars from CSV streams: the column mapping ([`Columns`]) and layout, parsing (also for the
//! per-process cache) and routing every record through the run's [`Window`] into a
//! [`Collector`].

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use chrono::NaiveDate;
use krxflow_core::Calendar;
use serde::Deserialize;

use super::checks::{Bar, Checked, RawRow, check_row};
use crate::common::dates::parse_date;
use crate::common::rejects::{Reason, Reject};

/// Input column names (matched case-insensitively).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub code: String,
    pub date: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            code: "code".into(),
            date: "date".into(),
            open: "open".into(),
            high: "high".into(),
            low: "low".into(),
            close: "close".into(),
            volume: "volume".into(),
        }
    }
}

/// Accumulates accepted bars and rejects, with counters.
#[derive(Debug, Default)]
pub struct Collector {
    pub bars: Vec<Bar>,
    pub rejects: Vec<Reject>,
    pub counters: BTreeMap<String, i64>,
    seen: HashSet<(String, NaiveDate)>,
}

/// Where a row falls against the window, before any validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    In,
    OtherCode,
    AfterDs,
    BeforeWindow,
}

impl Scope {
    fn of(code: &str, date: Option<NaiveDate>, w: &Window<'_>) -> Scope {
        if w.codes.is_some_and(|codes| !codes.contains(code.trim())) {
            return Scope::OtherCode;
        }
        match date {
            Some(d) if d > w.ds => Scope::AfterDs,
            Some(d) if w.from.is_some_and(|f| d < f) => Scope::BeforeWindow,
            _ => Scope::In,
        }
    }

    /// The counter of a row outside the window.
    fn counter(self) -> Option<&'static str> {
        match self {
            Scope::In => None,
            Scope::OtherCode => Some("out_of_scope.code"),
            Scope::AfterDs => Some("out_of_scope.after_ds"),
            Scope::BeforeWindow => Some("out_of_scope.before_window"),
        }
    }
}

/// Filters applied before validation.
pub struct Window<'a> {
    pub ds: NaiveDate,
    pub from: Option<NaiveDate>,
    pub codes: Option<&'a HashSet<String>>,
    pub provisional: &'a HashSet<NaiveDate>,
    /// The run's trading calendar: a bar dated on a day it closes is `non_trading_day`.
    pub calendar: &'a dyn Calendar,
    pub tol_abs: f64,
    pub tol_rel: f64,
}

impl Collector {
    pub(super) fn count(&mut self, key: &str) {
        match self.counters.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                self.counters.insert(key.to_string(), 1);
            }
        }
    }

    /// Routes one raw row.
    pub fn push(&mut self, row: &RawRow<'_>, raw: &str, w: &Window<'_>) {
        if self.in_scope(row, w) {
            self.check(row, raw, w);
        }
    }

    /// Counts the row as read; a row outside the window (another code, after ds, before the
    /// window's start) is counted as such and `false` returned: it needs no validation (nor
    /// its raw line).
    pub fn in_scope(&mut self, row: &RawRow<'_>, w: &Window<'_>) -> bool {
        self.in_scope_on(row.code, parse_date(row.date), w)
    }

    /// [`Collector::in_scope`] for a row whose date is already parsed.
    fn in_scope_on(&mut self, code: &str, date: Option<NaiveDate>, w: &Window<'_>) -> bool {
        self.count("rows_read");
        let scope = Scope::of(code, date, w);
        if let Some(key) = scope.counter() {
            self.count(key);
        }
        scope == Scope::In
    }

    /// Adds `n` to counter `key` (nothing when `n` is 0: a counter exists once counted).
    fn add(&mut self, key: &str, n: i64) {
        if n > 0 {
            *self.counters.entry(key.to_string()).or_default() += n;
        }
    }

    /// Validates an in-scope row: accepted (maybe repaired) or rejected with a reason.
    pub fn check(&mut self, row: &RawRow<'_>, raw: &str, w: &Window<'_>) {
        match check_row(row, raw, w.tol_abs, w.tol_rel) {
            Checked::Accepted { bar, repaired } => {
                if !w.calendar.is_trading_day(bar.date) {
                    self.reject(Reject {
                        detail: format!(
                            "{} is not a trading day on calendar `{}`",
                            bar.date,
                            w.calendar.name()
                        ),
                        code: bar.code,
                        date: Some(bar.date),
                        reason: Reason::NonTradingDay,
                        raw: raw.to_string(),
                    });
                    return;
                }
                if w.provisional.contains(&bar.date) {
                    self.reject(Reject {
                        code: bar.code,
                        date: Some(bar.date),
                        reason: Reason::Provisional,
                        detail: "provisional (not a final close)".into(),
                        raw: raw.to_string(),
                    });
                    return;
                }
                if !self.seen.insert((bar.code.clone(), bar.date)) {
                    self.reject(Reject {
                        code: bar.code,
                        date: Some(bar.date),
                        reason: Reason::DuplicateDate,
                        detail: "second row for the same code and date".into(),
                        raw: raw.to_string(),
                    });
                    return;
                }
                if repaired {
                    self.count("repaired.high_low_rounding");
                }
                self.count("accepted");
                self.bars.push(bar);
            }
            Checked::Rejected(r) => self.reject(r),
        }
    }

    pub(crate) fn reject(&mut self, r: Reject) {
        self.count(&format!("rejected.{}", r.reason.code()));
        self.rejects.push(r);
    }
}

pub(super) fn header_index(headers: &[String], want: &str) -> Option<usize> {
    headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(want))
}

/// Where the columns are in a CSV stream (resolved from its header once).
#[derive(Debug, Clone, Copy)]
struct CsvLayout {
    code: Option<usize>,
    /// date, open, high, low, close, volume
    fields: [usize; 6],
    /// Fields a record needs to hold every column read.
    needed: usize,
    /// Fields in the header.
    header: usize,
}

/// One record of a CSV stream: its date parsed, or the CSV error.
type CsvRecord = Result<(Option<NaiveDate>, csv::StringRecord), String>;

/// A CSV stream as parsed: the columns resolved and every record with its date. What the
/// per-process cache keeps for a `csv_dir` file, so later runs only route records.
#[derive(Debug)]
pub struct ParsedCsv {
    layout: CsvLayout,
    records: Vec<CsvRecord>,
}

/// A CSV reader over `reader` and its column layout; `per_file_code` when the code comes from
/// the file name.
fn open_csv<R: Read>(
    reader: R,
    cols: &Columns,
    per_file_code: bool,
) -> Result<(csv::Reader<R>, CsvLayout), String> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let idx = |name: &str| {
        header_index(&headers, name)
            .ok_or_else(|| format!("column `{name}` not found (have: {})", headers.join(",")))
    };
    let code = if per_file_code {
        None
    } else {
        Some(idx(&cols.code)?)
    };
    let fields = [
        idx(&cols.date)?,
        idx(&cols.open)?,
        idx(&cols.high)?,
        idx(&cols.low)?,
        idx(&cols.close)?,
        idx(&cols.volume)?,
    ];
    let needed = fields.iter().chain(code.iter()).max().map_or(0, |i| i + 1);
    let header = headers.len();
    Ok((
        rdr,
        CsvLayout {
            code,
            fields,
            needed,
            header,
        },
    ))
}

fn dated(layout: CsvLayout, r: csv::Result<csv::StringRecord>) -> CsvRecord {
    match r {
        Ok(rec) => Ok((parse_date(rec.get(layout.fields[0]).unwrap_or("")), rec)),
        Err(e) => Err(format!("csv: {e}")),
    }
}

/// Parses a whole CSV stream with a header (for the cache); `per_file_code` when the code
/// comes from the file name.
pub fn parse_csv<R: Read>(
    reader: R,
    cols: &Columns,
    per_file_code: bool,
) -> Result<ParsedCsv, String> {
    let (mut rdr, layout) = open_csv(reader, cols, per_file_code)?;
    let records = rdr.records().map(|r| dated(layout, r)).collect();
    Ok(ParsedCsv { layout, records })
}

/// Routes every record of a parsed CSV into the collector. `fixed_code` is used for per-ticker
/// files (the code comes from the file name).
///
/// A cached file is routed whole on every run (25 years of records for one day's window), so
/// the records outside the window are tallied here and counted once at the end instead of two
/// string-keyed counter updates each; the counters come out the same.
pub fn route_csv(p: &ParsedCsv, fixed_code: Option<&str>, w: &Window<'_>, out: &mut Collector) {
    let mut outside: Vec<(Scope, i64)> = Vec::new();
    for r in &p.records {
        match r {
            Ok((date, record)) => {
                let code = fixed_code
                    .unwrap_or_else(|| p.layout.code.and_then(|i| record.get(i)).unwrap_or(""));
                match Scope::of(code, *date, w) {
                    Scope::In => {
                        out.count("rows_read");
                        check_record(p.layout, *date, record, code, w, out);
                    }
                    scope => match outside.iter_mut().find(|(s, _)| *s == scope) {
                        Some((_, n)) => *n += 1,
                        None => outside.push((scope, 1)),
                    },
                }
            }
            Err(e) => unparsable(e.clone(), fixed_code, true, out),
        }
    }
    for (scope, n) in outside {
        out.add("rows_read", n);
        if let Some(key) = scope.counter() {
            out.add(key, n);
        }
    }
}

/// A record the CSV reader could not read or decode: one `unparsable` reject, counted as read
/// unless the caller already did.
fn unparsable(detail: String, fixed_code: Option<&str>, count_read: bool, out: &mut Collector) {
    if count_read {
        out.count("rows_read");
    }
    out.reject(Reject {
        code: fixed_code.unwrap_or("").to_string(),
        date: None,
        reason: Reason::Unparsable,
        detail,
        raw: String::new(),
    });
}

/// Validates an in-scope record (its date parsed, its code read).
fn check_record(
    layout: CsvLayout,
    date: Option<NaiveDate>,
    record: &csv::StringRecord,
    code: &str,
    w: &Window<'_>,
    out: &mut Collector,
) {
    let [di, oi, hi, li, ci, vi] = layout.fields;
    let get = |i: usize| record.get(i).unwrap_or("");
    let raw = || record.iter().collect::<Vec<_>>().join(",");
    if record.len() < layout.needed {
        out.reject(Reject {
            code: code.to_string(),
            date,
            reason: Reason::ShortRow,
            detail: format!(
                "{} fields where the header has {} (line {})",
                record.len(),
                layout.header,
                record.position().map_or(0, |p| p.line())
            ),
            raw: raw(),
        });
        return;
    }
    let row = RawRow {
        code,
        date: get(di),
        open: get(oi),
        high: get(hi),
        low: get(li),
        close: get(ci),
        volume: get(vi),
    };
    out.check(&row, &raw(), w);
}

/// Reads a CSV stream with a header into the collector, record by record (nothing kept).
/// `fixed_code` is used for per-ticker files (the code comes from the file name).
///
/// Records are read as bytes: a record outside the window (another code, a day after `ds` or
/// before the window, read from its code and date fields alone) is counted and skipped without
/// the rest of it being decoded; the others are decoded as UTF-8 and validated, and one that is
/// not UTF-8 is an `unparsable` reject, as is one whose code or date field is not.
pub fn read_csv<R: Read>(
    reader: R,
    cols: &Columns,
    fixed_code: Option<&str>,
    w: &Window<'_>,
    out: &mut Collector,
) -> Result<(), String> {
    let (mut rdr, layout) = open_csv(reader, cols, fixed_code.is_some())?;
    let mut rec = csv::ByteRecord::new();
    let mut records = 0usize;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                records += 1;
                let field = |i: usize| std::str::from_utf8(rec.get(i).unwrap_or(b"")).ok();
                let code = match (fixed_code, layout.code) {
                    (Some(c), _) => Some(c),
                    (None, Some(i)) => field(i),
                    (None, None) => Some(""),
                };
                let date = field(layout.fields[0]).map(parse_date);
                // Skipped undecoded when its code and date fields say so. When one of them is
                // not UTF-8, the record cannot decode and is counted as read below.
                let scoped = match (code, date) {
                    (Some(code), Some(date)) => {
                        if !out.in_scope_on(code, date, w) {
                            continue;
                        }
                        true
                    }
                    _ => false,
                };
                match csv::StringRecord::from_byte_record(rec.clone()) {
                    Ok(record) => {
                        let code = fixed_code.unwrap_or_else(|| {
                            layout.code.and_then(|i| record.get(i)).unwrap_or("")
                        });
                        check_record(layout, date.flatten(), &record, code, w, out);
                    }
                    Err(e) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        let detail = format!(
                            "csv: invalid UTF-8 in field {} at line {line}: {}",
                            e.utf8_error().field() + 1,
                            e.utf8_error()
                        );
                        // A scoped record was counted as read by the scope check.
                        unparsable(detail, fixed_code, !scoped, out);
                    }
                }
            }
            Err(e) => {
                // The stream itself failed (a truncated gzip): the records before it stand,
                // the rest of the file is one reject that says where it stopped. A reader
                // that keeps failing would otherwise be asked again forever.
                if e.is_io_error() {
                    out.count("files_truncated");
                    out.reject(Reject {
                        code: fixed_code.unwrap_or("").to_string(),
                        date: None,
                        reason: Reason::UnreadableFile,
                        detail: format!("stream failed after {records} records: {e}"),
                        raw: String::new(),
                    });
                    break;
                }
                records += 1;
                unparsable(format!("csv: {e}"), fixed_code, true, out);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::checks::tests::row;
    use super::*;

    #[test]
    fn duplicates_future_rows_and_provisional_days_are_routed_not_dropped() {
        let ds = NaiveDate::from_ymd_opt(2019, 9, 18).unwrap();
        let prov: HashSet<NaiveDate> = [ds].into_iter().collect();
        let w = Window {
            ds,
            from: None,
            codes: None,
            provisional: &prov,
            calendar: &krxflow_core::WeekdayCalendar::default(),
            tol_abs: 2.0,
            tol_rel: 0.001,
        };
        let mut c = Collector::default();
        let good = row("2019-09-17", "10", "11", "9", "10", "5");
        c.push(&good, "a", &w);
        c.push(&good, "a", &w);
        c.push(&row("2019-09-18", "10", "11", "9", "10", "5"), "b", &w);
        c.push(&row("2019-09-19", "10", "11", "9", "10", "5"), "c", &w);
        assert_eq!(c.bars.len(), 1);
        let reasons: Vec<_> = c.rejects.iter().map(|r| r.reason.code()).collect();
        assert_eq!(reasons, ["duplicate_date", "provisional"]);
        assert_eq!(c.counters["out_of_scope.after_ds"], 1);
        assert_eq!(c.counters["rows_read"], 4);
    }

    #[test]
    fn a_streamed_record_out_of_the_window_is_skipped_undecoded_and_a_bad_one_in_it_rejected() {
        let ds = NaiveDate::from_ymd_opt(2019, 9, 17).unwrap();
        let none = HashSet::new();
        let w = Window {
            ds,
            from: NaiveDate::from_ymd_opt(2019, 9, 16),
            codes: None,
            provisional: &none,
            calendar: &krxflow_core::WeekdayCalendar::default(),
            tol_abs: 2.0,
            tol_rel: 0.001,
        };
        let mut csv: Vec<u8> = b"code,date,open,high,low,close,volume,name\n".to_vec();
        // Before the window, with a name that is not UTF-8: skipped, never decoded.
        csv.extend(b"000001,2019-09-13,10,11,9,10,5,\xff\xfe\n");
        // In the window: one good row, one whose name is not UTF-8.
        csv.extend(b"000001,2019-09-16,10,11,9,10,5,ok\n");
        csv.extend(b"000002,2019-09-16,10,11,9,10,5,\xc3\x28\n");
        // A date that is not UTF-8: nothing says it is out of the window.
        csv.extend(b"000003,2019-09-1\xff,10,11,9,10,5,ok\n");
        let mut out = Collector::default();
        read_csv(csv.as_slice(), &Columns::default(), None, &w, &mut out).unwrap();
        assert_eq!(out.bars.len(), 1);
        assert_eq!(out.counters["rows_read"], 4);
        assert_eq!(out.counters["out_of_scope.before_window"], 1);
        let details: Vec<(&str, &str)> = out
            .rejects
            .iter()
            .map(|r| (r.reason.code(), r.detail.as_str()))
            .collect();
        assert_eq!(details.len(), 2, "{details:?}");
        assert!(details.iter().all(|(reason, _)| *reason == "unparsable"));
        assert!(details[0].1.contains("field 8 at line 4"), "{details:?}");
        assert!(details[1].1.contains("field 2 at line 5"), "{details:?}");
    }

    #[test]
    fn a_cached_file_routes_to_the_same_bars_rejects_and_counters_as_a_streamed_one() {
        let ds = NaiveDate::from_ymd_opt(2019, 9, 17).unwrap();
        let none = HashSet::new();
        let codes: HashSet<String> = ["000001".to_string(), "000002".to_string()].into();
        let w = Window {
            ds,
            from: NaiveDate::from_ymd_opt(2019, 9, 16),
            codes: Some(&codes),
            provisional: &none,
            calendar: &krxflow_core::WeekdayCalendar::default(),
            tol_abs: 2.0,
            tol_rel: 0.001,
        };
        let csv = "code,date,open,high,low,close,volume\n\
            000001,2019-09-12,10,11,9,10,5\n\
            000001,2019-09-13,10,11,9,10,5\n\
            000001,2019-09-16,10,11,9,10,5\n\
            000001,2019-09-17,10,11,9,10,0\n\
            000001,2019-09-18,10,11,9,10,5\n\
            000002,2019-09-17,10,11,9,10,5\n\
            000009,2019-09-17,10,11,9,10,5\n\
            000002,not a date,10,11,9,10,5\n";
        let mut streamed = Collector::default();
        read_csv(csv.as_bytes(), &Columns::default(), None, &w, &mut streamed).unwrap();
        let parsed = parse_csv(csv.as_bytes(), &Columns::default(), false).unwrap();
        let mut routed = Collector::default();
        route_csv(&parsed, None, &w, &mut routed);
        assert_eq!(routed.counters, streamed.counters);
        assert_eq!(routed.counters["rows_read"], 8);
        assert_eq!(routed.counters["out_of_scope.before_window"], 2);
        assert_eq!(routed.counters["out_of_scope.after_ds"], 1);
        assert_eq!(routed.counters["out_of_scope.code"], 1);
        assert_eq!(format!("{:?}", routed.bars), format!("{:?}", streamed.bars));
        assert_eq!(
            format!("{:?}", routed.rejects),
            format!("{:?}", streamed.rejects)
        );
        assert_eq!(routed.bars.len(), 2);
    }
}
