//! `ingest.ohlcv`: daily bars from files into `ohlcv_daily`, bad rows into `ohlcv_rejects`.
//!
//! Sources (param `source`):
//! * `csv_dir`: one CSV per ticker named `<code>.csv` in the FinanceDataReader layout
//!   (`Date,Open,High,Low,Close,Volume[,Change]`);
//! * `panel`: one long-format CSV, CSV.gz or Parquet file with a column mapping.
//!
//! Every input row ends up in exactly one place: accepted into `bars` (possibly repaired, e.g.
//! a High one tick below the close from rounding of adjusted prices), rejected into `rejects`
//! with a reason code and the raw line, or counted as out of range (after `ds`, before the
//! lookback window, or a code not asked for). Counters are reported per outcome and reason.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::dates::{days, parse_date};
use crate::common::rejects::{Reason, Reject, is_null, rejects_batch};
use crate::tables;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CsvDir,
    Panel,
    Kis,
}

/// `kis:` params: the KIS Open API daily chart (see [`super::kis`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KisParams {
    #[serde(default = "kis_base")]
    pub base_url: String,
    #[serde(default = "kis_key_env")]
    pub app_key_env: String,
    #[serde(default = "kis_secret_env")]
    pub app_secret_env: String,
    /// File where the OAuth token is cached between runs (mode 0600).
    #[serde(default)]
    pub token_cache: Option<String>,
    #[serde(default = "default_true")]
    pub adjusted: bool,
    /// First date fetched when the table is empty and no `lookback_days` is given.
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    #[serde(default = "kis_retries")]
    pub max_retries: u32,
}

fn kis_base() -> String {
    super::kis::KisConfig::default().base_url
}
fn kis_key_env() -> String {
    "KIS_APP_KEY".into()
}
fn kis_secret_env() -> String {
    "KIS_APP_SECRET".into()
}
fn kis_retries() -> u32 {
    5
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OhlcvParams {
    pub source: Source,
    /// Folder (`csv_dir`) or file (`panel`); unused by `kis`.
    #[serde(default)]
    pub path: String,
    /// Settings of `source: kis`.
    #[serde(default)]
    pub kis: Option<KisParams>,
    /// Only these codes (default: all).
    #[serde(default)]
    pub codes: Option<Vec<String>>,
    /// Only rows dated within this many calendar days before `ds` (default: all history).
    #[serde(default)]
    pub lookback_days: Option<u32>,
    #[serde(default)]
    pub columns: Columns,
    /// Absolute tolerance (KRW) for High/Low outside Open/Close before a row is rejected;
    /// within it the row is repaired (High/Low widened) and counted.
    #[serde(default = "default_tol_abs")]
    pub tolerance_abs: f64,
    /// Relative tolerance, whichever of the two is larger applies.
    #[serde(default = "default_tol_rel")]
    pub tolerance_rel: f64,
    /// Dates whose rows are provisional (e.g. an intraday snapshot, not a close): rejected with
    /// reason `provisional`.
    #[serde(default)]
    pub provisional_dates: Vec<NaiveDate>,
    /// Label stored in the `source` column (default: the source kind and file/folder name).
    #[serde(default)]
    pub label: Option<String>,
    /// Only take rows newer than what `ohlcv_daily` already holds on or before ds, minus
    /// `overlap_days` (to pick up corrections). Off = every run re-reads all history.
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// Calendar days re-read before the table's watermark when incremental.
    #[serde(default = "default_overlap")]
    pub overlap_days: u32,
}

fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    10
}

fn default_tol_abs() -> f64 {
    2.0
}
fn default_tol_rel() -> f64 {
    0.001
}

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
        return reject(None, Reason::BadCode, format!("code `{code}`"));
    }
    let Some(date) = parse_date(row.date) else {
        return reject(None, Reason::Unparsable, format!("date `{}`", row.date));
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
            Ok(_) => {
                return reject(
                    Some(date),
                    Reason::NullValue,
                    format!("{name} is not finite"),
                );
            }
            Err(_) => return reject(Some(date), Reason::Unparsable, format!("{name} `{v}`")),
        }
    }
    let [open, mut high, mut low, close, volume] = nums;
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

/// Accumulates accepted bars and rejects, with counters.
#[derive(Debug, Default)]
pub struct Collector {
    pub bars: Vec<Bar>,
    pub rejects: Vec<Reject>,
    pub counters: BTreeMap<String, i64>,
    seen: HashSet<(String, NaiveDate)>,
}

/// Filters applied before validation.
pub struct Window<'a> {
    pub ds: NaiveDate,
    pub from: Option<NaiveDate>,
    pub codes: Option<&'a HashSet<String>>,
    pub provisional: &'a HashSet<NaiveDate>,
    pub tol_abs: f64,
    pub tol_rel: f64,
}

impl Collector {
    fn count(&mut self, key: &str) {
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
        if let Some(codes) = w.codes
            && !codes.contains(code.trim())
        {
            self.count("out_of_scope.code");
            return false;
        }
        if let Some(d) = date {
            if d > w.ds {
                self.count("out_of_scope.after_ds");
                return false;
            }
            if w.from.is_some_and(|f| d < f) {
                self.count("out_of_scope.before_window");
                return false;
            }
        }
        true
    }

    /// Validates an in-scope row: accepted (maybe repaired) or rejected with a reason.
    pub fn check(&mut self, row: &RawRow<'_>, raw: &str, w: &Window<'_>) {
        match check_row(row, raw, w.tol_abs, w.tol_rel) {
            Checked::Accepted { bar, repaired } => {
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

    fn reject(&mut self, r: Reject) {
        self.count(&format!("rejected.{}", r.reason.code()));
        self.rejects.push(r);
    }
}

fn header_index(headers: &[String], want: &str) -> Option<usize> {
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
    Ok((rdr, CsvLayout { code, fields }))
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
pub fn route_csv(p: &ParsedCsv, fixed_code: Option<&str>, w: &Window<'_>, out: &mut Collector) {
    for r in &p.records {
        route_record(p.layout, r, fixed_code, w, out);
    }
}

fn route_record(
    layout: CsvLayout,
    r: &CsvRecord,
    fixed_code: Option<&str>,
    w: &Window<'_>,
    out: &mut Collector,
) {
    let [di, oi, hi, li, ci, vi] = layout.fields;
    match r {
        Ok((date, record)) => {
            let get = |i: usize| record.get(i).unwrap_or("");
            let code = fixed_code.unwrap_or_else(|| layout.code.map(get).unwrap_or(""));
            if !out.in_scope_on(code, *date, w) {
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
            let raw = record.iter().collect::<Vec<_>>().join(",");
            out.check(&row, &raw, w);
        }
        Err(e) => {
            out.count("rows_read");
            out.reject(Reject {
                code: fixed_code.unwrap_or("").to_string(),
                date: None,
                reason: Reason::Unparsable,
                detail: e.clone(),
                raw: String::new(),
            });
        }
    }
}

/// Reads a CSV stream with a header into the collector, record by record (nothing kept).
/// `fixed_code` is used for per-ticker files (the code comes from the file name).
pub fn read_csv<R: Read>(
    reader: R,
    cols: &Columns,
    fixed_code: Option<&str>,
    w: &Window<'_>,
    out: &mut Collector,
) -> Result<(), String> {
    let (mut rdr, layout) = open_csv(reader, cols, fixed_code.is_some())?;
    for r in rdr.records() {
        route_record(layout, &dated(layout, r), fixed_code, w, out);
    }
    Ok(())
}

pub fn bars_batch(bars: &[Bar], source: &str) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        tables::ohlcv_daily().schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                bars.iter().map(|b| b.code.as_str()),
            )) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(
                bars.iter().map(|b| days(b.date)),
            )),
            Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.open))),
            Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.high))),
            Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.low))),
            Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.close))),
            Arc::new(Int64Array::from_iter_values(bars.iter().map(|b| b.volume))),
            Arc::new(StringArray::from_iter_values(bars.iter().map(|_| source))),
        ],
    )
}

pub struct IngestOhlcv;

struct Configured {
    p: OhlcvParams,
}

#[async_trait]
impl Operator for IngestOhlcv {
    fn kind(&self) -> &'static str {
        "ingest.ohlcv"
    }
    fn version(&self) -> u32 {
        2
    }
    fn description(&self) -> &'static str {
        "Daily OHLCV from per-ticker CSVs, a long panel (CSV/CSV.gz/Parquet) or the KIS Open API, incremental; bad rows to ohlcv_rejects"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("source", "csv_dir|panel|kis", "where the bars come from"),
            ParamSpec::optional(
                "path",
                "string",
                "none",
                "folder of <code>.csv (csv_dir) or the panel file",
            ),
            ParamSpec::optional(
                "kis",
                "map",
                "base_url, KIS_APP_KEY/KIS_APP_SECRET env",
                "KIS Open API: base_url, app_key_env, app_secret_env, token_cache, adjusted, start_date, max_retries",
            ),
            ParamSpec::optional("codes", "list<string>", "all", "only these codes"),
            ParamSpec::optional(
                "lookback_days",
                "u32",
                "all history",
                "only rows within this many calendar days before ds",
            ),
            ParamSpec::optional(
                "columns",
                "map",
                "code,date,open,high,low,close,volume",
                "input column names (case-insensitive)",
            ),
            ParamSpec::optional(
                "tolerance_abs",
                "f64",
                "2.0",
                "KRW a High/Low may sit outside Open/Close and be repaired",
            ),
            ParamSpec::optional(
                "tolerance_rel",
                "f64",
                "0.001",
                "relative form of the same tolerance (the larger applies)",
            ),
            ParamSpec::optional(
                "provisional_dates",
                "list<date>",
                "[]",
                "dates whose rows are not final closes (rejected as provisional)",
            ),
            ParamSpec::optional(
                "label",
                "string",
                "<source>:<name>",
                "value of the `source` column",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "only rows newer than the table's watermark (minus overlap_days)",
            ),
            ParamSpec::optional(
                "overlap_days",
                "u32",
                "10",
                "calendar days re-read before the watermark to pick up corrections",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::ohlcv_daily(), "bars", WriteMode::Merge)
                .doc("accepted daily bars")
                .with_watermark(),
            OutputPort::for_table(&tables::ohlcv_rejects(), "rejects", WriteMode::Merge)
                .doc("rejected rows with reasons"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: OhlcvParams = parse_params(params)?;
        match p.source {
            Source::CsvDir | Source::Panel if p.path.trim().is_empty() => {
                return Err(ConfigError::new("path", "required for csv_dir and panel"));
            }
            Source::Kis => {
                if p.codes.as_ref().is_none_or(Vec::is_empty) {
                    return Err(ConfigError::new(
                        "codes",
                        "source kis needs the list of codes",
                    ));
                }
                let start = p.kis.as_ref().and_then(|k| k.start_date);
                if start.is_none() && p.lookback_days.is_none() {
                    return Err(ConfigError::new(
                        "kis",
                        "source kis needs kis.start_date or lookback_days for the first fetch",
                    ));
                }
            }
            _ => {}
        }
        if p.tolerance_abs < 0.0 || p.tolerance_rel < 0.0 {
            return Err(ConfigError::new("tolerance_abs", "tolerances must be >= 0"));
        }
        Ok(Box::new(Configured { p }))
    }
}

impl Configured {
    fn label(&self) -> String {
        self.p.label.clone().unwrap_or_else(|| {
            let name = Path::new(&self.p.path)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            match self.p.source {
                Source::CsvDir => format!("csv_dir:{name}"),
                Source::Panel => format!("panel:{name}"),
                Source::Kis => format!("kis:{}", super::kis::TR_DAILY_CHART),
            }
        })
    }

    /// First date to take: the lookback window and, when incremental, the watermark minus
    /// the overlap, whichever is later.
    fn window_start(&self, ds: NaiveDate, watermark: Option<NaiveDate>) -> Option<NaiveDate> {
        let p = &self.p;
        let lookback = p
            .lookback_days
            .map(|d| ds - chrono::Duration::days(i64::from(d)));
        let incremental = watermark
            .filter(|_| p.incremental)
            .map(|w| w - chrono::Duration::days(i64::from(p.overlap_days)));
        lookback.max(incremental)
    }

    fn ingest(&self, ds: NaiveDate, from: Option<NaiveDate>) -> OpResult<Collector> {
        let p = &self.p;
        let codes: Option<HashSet<String>> = p.codes.as_ref().map(|c| c.iter().cloned().collect());
        let provisional: HashSet<NaiveDate> = p.provisional_dates.iter().copied().collect();
        let w = Window {
            ds,
            from,
            codes: codes.as_ref(),
            provisional: &provisional,
            tol_abs: p.tolerance_abs,
            tol_rel: p.tolerance_rel,
        };
        let mut out = Collector::default();
        match p.source {
            Source::CsvDir => {
                let mut cols = p.columns.clone();
                if p.columns.date == Columns::default().date {
                    cols = Columns {
                        date: "Date".into(),
                        ..cols
                    };
                }
                let mut files: Vec<PathBuf> = std::fs::read_dir(&p.path)
                    .map_err(|e| OpError::permanent(format!("cannot read folder {}: {e}", p.path)))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(OpError::permanent(format!("no *.csv files in {}", p.path)));
                }
                for f in files {
                    let code = f
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if codes.as_ref().is_some_and(|c| !c.contains(&code)) {
                        continue;
                    }
                    // Parsed once per process while the file is unchanged (a backfill,
                    // `serve`); each run routes the records through its own window.
                    let (parsed, hit) =
                        super::cache::parsed(&f.to_string_lossy(), &format!("{cols:?}"), || {
                            let file = std::fs::File::open(&f).map_err(|e| {
                                OpError::transient(format!("open {}: {e}", f.display()))
                            })?;
                            parse_csv(file, &cols, true)
                                .map_err(|e| OpError::permanent(format!("{}: {e}", f.display())))
                        })?;
                    if hit {
                        out.count("source_cache_hits");
                    }
                    route_csv(&parsed, Some(&code), &w, &mut out);
                }
            }
            Source::Kis => {
                let k = p.kis.clone().unwrap_or(KisParams {
                    base_url: kis_base(),
                    app_key_env: kis_key_env(),
                    app_secret_env: kis_secret_env(),
                    token_cache: None,
                    adjusted: true,
                    start_date: None,
                    max_retries: kis_retries(),
                });
                let first = from.or(k.start_date).ok_or_else(|| {
                    OpError::permanent("kis: no start (kis.start_date or lookback_days)")
                })?;
                let cfg = super::kis::KisConfig {
                    base_url: k.base_url.clone(),
                    app_key_env: k.app_key_env.clone(),
                    app_secret_env: k.app_secret_env.clone(),
                    token_cache: k.token_cache.as_ref().map(PathBuf::from),
                    adjusted: k.adjusted,
                    max_retries: k.max_retries,
                    ..super::kis::KisConfig::default()
                };
                let kis_err = |e: super::kis::KisError| {
                    if e.is_transient() {
                        OpError::transient(e.to_string())
                    } else {
                        OpError::permanent(e.to_string())
                    }
                };
                let mut client = super::kis::KisClient::new(cfg).map_err(kis_err)?;
                let mut all_codes: Vec<&String> = p.codes.iter().flatten().collect();
                all_codes.sort();
                for code in all_codes {
                    for r in client.daily_bars(code, first, ds).map_err(kis_err)? {
                        let row = RawRow {
                            code,
                            date: &r.date,
                            open: &r.open,
                            high: &r.high,
                            low: &r.low,
                            close: &r.close,
                            volume: &r.volume,
                        };
                        out.push(&row, &r.raw, &w);
                    }
                }
                out.counters
                    .insert("kis.http_calls".into(), i64::from(client.stats.http_calls));
                out.counters
                    .insert("kis.retries".into(), i64::from(client.stats.retries));
            }
            Source::Panel => {
                let path = Path::new(&p.path);
                let file = std::fs::File::open(path)
                    .map_err(|e| OpError::permanent(format!("open {}: {e}", p.path)))?;
                let name = p.path.to_ascii_lowercase();
                if name.ends_with(".gz") {
                    read_csv(
                        flate2::read::GzDecoder::new(file),
                        &p.columns,
                        None,
                        &w,
                        &mut out,
                    )
                } else if name.ends_with(".parquet") {
                    read_parquet(file, &p.columns, &w, &mut out)
                } else {
                    read_csv(file, &p.columns, None, &w, &mut out)
                }
                .map_err(|e| OpError::permanent(format!("{}: {e}", p.path)))?;
            }
        }
        Ok(out)
    }
}

/// Reads a Parquet panel: every column is rendered as text and validated like a CSV row.
fn read_parquet(
    file: std::fs::File,
    cols: &Columns,
    w: &Window<'_>,
    out: &mut Collector,
) -> Result<(), String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let schema = batch.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let find = |want: &str| {
            header_index(&names, want).ok_or_else(|| format!("column `{want}` not found"))
        };
        let idx = [
            find(&cols.code)?,
            find(&cols.date)?,
            find(&cols.open)?,
            find(&cols.high)?,
            find(&cols.low)?,
            find(&cols.close)?,
            find(&cols.volume)?,
        ];
        let text: Vec<ArrayRef> = idx
            .iter()
            .map(|&i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let strs: Vec<&StringArray> = text
            .iter()
            .map(|a| {
                a.as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or("cast to text failed")
            })
            .collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let v = |k: usize| {
                if strs[k].is_null(r) {
                    ""
                } else {
                    strs[k].value(r)
                }
            };
            let raw = (0..7).map(v).collect::<Vec<_>>().join(",");
            let row = RawRow {
                code: v(0),
                date: v(1),
                open: v(2),
                high: v(3),
                low: v(4),
                close: v(5),
                volume: v(6),
            };
            out.push(&row, &raw, w);
        }
    }
    Ok(())
}

use arrow::array::Array;

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let ds = ctx.ds;
        let this = Configured { p: self.p.clone() };
        let from = self.window_start(ds, ctx.watermarks.get("bars").copied());
        if self.p.incremental && ctx.watermarks.contains_key("bars") {
            ctx.counters.add("incremental_runs", 1);
        }
        let collected = tokio::task::spawn_blocking(move || this.ingest(ds, from))
            .await
            .map_err(|e| OpError::permanent(format!("ingest worker: {e}")))??;
        for (k, v) in &collected.counters {
            ctx.counters.add(k, *v);
        }
        let label = self.label();
        let bars = bars_batch(&collected.bars, &label)?;
        let rejects = rejects_batch(&collected.rejects, &label, ds)?;
        Ok(OutputBatches::new()
            .with("bars", vec![bars])
            .with("rejects", vec![rejects]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(
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

    #[test]
    fn duplicates_future_rows_and_provisional_days_are_routed_not_dropped() {
        let ds = NaiveDate::from_ymd_opt(2019, 9, 18).unwrap();
        let prov: HashSet<NaiveDate> = [ds].into_iter().collect();
        let w = Window {
            ds,
            from: None,
            codes: None,
            provisional: &prov,
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
    fn kis_source_validates_every_row_and_starts_from_the_watermark() {
        use super::super::kis::tests::{days_desc, rows_json, server};
        let good = days_desc("2024-12-09", "2024-12-13");
        let mut body = rows_json(&good);
        // A zero-volume row and a malformed row from the API: both rejected, with the raw JSON.
        body = body.replacen("\"acml_vol\":\"1234567\"", "\"acml_vol\":\"0\"", 1);
        body = body.replacen("]}", ",{\"stck_bsop_date\":\"20241206\"}]}", 1);
        let (base, seen) = server(vec![(200, body)]);
        let params = serde_json::json!({
            "source": "kis",
            "codes": ["005930"],
            "lookback_days": 30,
            // Any variables that exist: the local server does not check credentials.
            "kis": {"base_url": base, "app_key_env": "CARGO_PKG_NAME", "app_secret_env": "CARGO_PKG_VERSION"},
        });
        let op = Configured {
            p: parse_params(&params).unwrap(),
        };
        let ds = crate::testutil::d("2024-12-13");
        let from = op.window_start(ds, Some(crate::testutil::d("2024-12-11")));
        assert_eq!(
            from,
            Some(crate::testutil::d("2024-12-01")),
            "watermark - 10 days"
        );
        let out = op.ingest(ds, from).unwrap();
        assert_eq!(out.counters["accepted"], 4);
        assert_eq!(out.counters["rejected.zero_volume"], 1);
        assert_eq!(out.counters["rejected.null_value"], 1);
        assert!(out.rejects.iter().any(|r| r.raw.contains("20241206")));
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[1].query("FID_INPUT_DATE_1").as_deref(),
            Some("20241201")
        );
    }

    #[test]
    fn kis_source_needs_codes_and_a_start() {
        let no_codes = serde_json::json!({"source": "kis", "lookback_days": 30});
        assert!(IngestOhlcv.configure(&no_codes).is_err());
        let no_start = serde_json::json!({"source": "kis", "codes": ["005930"]});
        let err = IngestOhlcv.configure(&no_start).err().unwrap();
        assert!(err.to_string().contains("start_date"), "{err}");
        let no_path = serde_json::json!({"source": "csv_dir"});
        assert!(IngestOhlcv.configure(&no_path).is_err());
    }
}
