//! `ingest.index`: market index bars (KOSPI, KOSDAQ) from CSV files into `index_daily`, bad rows
//! into `index_rejects`.
//!
//! Several files may feed one index code (e.g. a Yahoo `KS11` history up to 2023 followed by a
//! 2023–2026 file): they are read in the order given. A date already taken from an earlier file
//! is counted `overlap.identical` when the closes agree (within 1e-6 relative) and otherwise
//! rejected as `duplicate_date` with both closes in the detail, so a conflicting splice is never
//! silent. Column names are matched case-insensitively (`Date`/`date`, `Close`/`close`, …);
//! dates may be `YYYY-MM-DD` or `YYYYMMDD`. Rows whose values are `null` (Yahoo's holiday
//! rows) are rejected as `null_value`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::dates::{days, parse_date};
use crate::common::rejects::{Reason, Reject, is_null, observe_rejects, rejects_batch};
use crate::ingest::decode::decode_text;
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    /// Index code stored in `index_daily.code`, e.g. `KS11`.
    pub code: String,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    pub files: Vec<IndexFile>,
    /// Relative tolerance for High/Low outside Open/Close before a row is rejected.
    #[serde(default = "default_tol")]
    pub tolerance_rel: f64,
    /// Only take rows dated after what `index_daily` already holds on or before ds, minus
    /// `overlap_days`. Off = every run re-reads all history.
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// Calendar days re-read before the table's watermark when incremental.
    #[serde(default = "default_overlap")]
    pub overlap_days: u32,
}

fn default_tol() -> f64 {
    0.001
}
fn default_true() -> bool {
    true
}
fn default_overlap() -> u32 {
    10
}

/// One validated index bar.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexBar {
    pub code: String,
    pub date: NaiveDate,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: f64,
    pub source: String,
}

/// Accepted bars by (code, date), rejects, counters.
#[derive(Debug, Default)]
pub struct IndexCollector {
    pub bars: BTreeMap<(String, NaiveDate), IndexBar>,
    pub rejects: Vec<(String, Reject)>,
    pub counters: BTreeMap<String, i64>,
}

impl IndexCollector {
    fn count(&mut self, k: &str) {
        *self.counters.entry(k.to_string()).or_default() += 1;
    }
    fn reject(&mut self, source: &str, r: Reject) {
        self.count(&format!("rejected.{}", r.reason.code()));
        self.rejects.push((source.to_string(), r));
    }
}

fn num(s: &str) -> Result<Option<f64>, String> {
    if is_null(s) {
        return Ok(None);
    }
    match s.trim().replace(',', "").parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Some(x)),
        _ => Err(format!("`{s}`")),
    }
}

/// Validates one row. `fields` = (date, open, high, low, close); open/high/low may be absent
/// from the file (`None`), but a present field must not be null.
fn check(
    code: &str,
    raw: &str,
    fields: [Option<&str>; 5],
    tol_rel: f64,
    source: &str,
) -> Result<IndexBar, Reject> {
    let reject = |date, reason, detail: String| Reject {
        code: code.to_string(),
        date,
        reason,
        detail,
        raw: raw.to_string(),
    };
    let [d, o, h, l, c] = fields;
    let Some(date) = parse_date(d.unwrap_or("")) else {
        return Err(reject(
            None,
            Reason::Unparsable,
            format!("date `{}`", d.unwrap_or("")),
        ));
    };
    let mut vals = [None; 4];
    for (i, (name, v)) in [("open", o), ("high", h), ("low", l), ("close", c)]
        .into_iter()
        .enumerate()
    {
        let Some(v) = v else { continue };
        match num(v) {
            Ok(Some(x)) => vals[i] = Some(x),
            Ok(None) => {
                return Err(reject(
                    Some(date),
                    Reason::NullValue,
                    format!("{name} is null"),
                ));
            }
            Err(e) => {
                return Err(reject(
                    Some(date),
                    Reason::Unparsable,
                    format!("{name} {e}"),
                ));
            }
        }
    }
    let [open, high, low, close] = vals;
    let Some(close) = close else {
        return Err(reject(Some(date), Reason::NullValue, "no close".into()));
    };
    if [open, high, low, Some(close)]
        .iter()
        .flatten()
        .any(|x| *x <= 0.0)
    {
        return Err(reject(
            Some(date),
            Reason::NonPositivePrice,
            format!("ohlc {open:?}/{high:?}/{low:?}/{close}"),
        ));
    }
    if let (Some(o), Some(h), Some(l)) = (open, high, low) {
        let top = o.max(close);
        let bottom = o.min(close);
        if h < top * (1.0 - tol_rel) || l > bottom * (1.0 + tol_rel) || h < l {
            return Err(reject(
                Some(date),
                Reason::InconsistentHighLow,
                format!("ohlc {o}/{h}/{l}/{close}"),
            ));
        }
    }
    Ok(IndexBar {
        code: code.to_string(),
        date,
        open,
        high,
        low,
        close,
        source: source.to_string(),
    })
}

/// Reads one index CSV into the collector. Rows dated after `ds`, or before `from` when given,
/// are counted, not read.
pub fn read_index_csv<R: std::io::Read>(
    reader: R,
    code: &str,
    source: &str,
    (from, ds): (Option<NaiveDate>, NaiveDate),
    tol_rel: f64,
    out: &mut IndexCollector,
) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let find = |n: &str| headers.iter().position(|h| h == n);
    let date_i = find("date").ok_or_else(|| format!("no `date` column (have {headers:?})"))?;
    let close_i = find("close").ok_or_else(|| format!("no `close` column (have {headers:?})"))?;
    let (open_i, high_i, low_i) = (find("open"), find("high"), find("low"));
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                out.count("rows_read");
                let get = |i: usize| rec.get(i).unwrap_or("");
                let raw = rec.iter().collect::<Vec<_>>().join(",");
                let date = parse_date(get(date_i));
                if date.is_some_and(|d| d > ds) {
                    out.count("out_of_scope.after_ds");
                    continue;
                }
                if date.zip(from).is_some_and(|(d, f)| d < f) {
                    out.count("out_of_scope.before_window");
                    continue;
                }
                let fields = [
                    Some(get(date_i)),
                    open_i.map(get),
                    high_i.map(get),
                    low_i.map(get),
                    Some(get(close_i)),
                ];
                match check(code, &raw, fields, tol_rel, source) {
                    Ok(bar) => {
                        let key = (bar.code.clone(), bar.date);
                        match out.bars.get(&key) {
                            None => {
                                out.count("accepted");
                                out.bars.insert(key, bar);
                            }
                            Some(prev) if (prev.close - bar.close).abs() <= 1e-6 * prev.close => {
                                out.count("overlap.identical");
                            }
                            Some(prev) => {
                                let detail = format!(
                                    "close {} conflicts with {} from {}",
                                    bar.close, prev.close, prev.source
                                );
                                out.reject(
                                    source,
                                    Reject {
                                        code: bar.code,
                                        date: Some(bar.date),
                                        reason: Reason::DuplicateDate,
                                        detail,
                                        raw,
                                    },
                                );
                            }
                        }
                    }
                    Err(r) => out.reject(source, r),
                }
            }
            Err(e) => {
                out.count("rows_read");
                out.reject(
                    source,
                    Reject {
                        code: code.to_string(),
                        date: None,
                        reason: Reason::Unparsable,
                        detail: format!("csv: {e}"),
                        raw: String::new(),
                    },
                );
            }
        }
    }
    Ok(())
}

pub fn index_batch(bars: &[&IndexBar]) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        tables::index_daily().schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                bars.iter().map(|b| b.code.as_str()),
            )) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(
                bars.iter().map(|b| days(b.date)),
            )),
            Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.open))),
            Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.high))),
            Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.low))),
            Arc::new(Float64Array::from_iter_values(bars.iter().map(|b| b.close))),
            Arc::new(StringArray::from_iter_values(
                bars.iter().map(|b| b.source.as_str()),
            )),
        ],
    )
}

pub struct IngestIndex;

struct Configured {
    p: IndexParams,
}

#[async_trait]
impl Operator for IngestIndex {
    fn kind(&self) -> &'static str {
        "ingest.index"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "Market index bars (KOSPI/KOSDAQ) from CSV files, spliced in order; bad rows to index_rejects"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required(
                "files",
                "list<{code, path}>",
                "index CSVs in splice order (earlier files win identical overlaps)",
            ),
            ParamSpec::optional(
                "tolerance_rel",
                "f64",
                "0.001",
                "relative tolerance for High/Low outside Open/Close",
            ),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "only rows newer than the table's watermark (minus overlap_days)",
            ),
            ParamSpec::optional(
                "overlap_days",
                "int",
                "10",
                "calendar days re-read before the watermark",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::index_daily(), "bars", WriteMode::Merge)
                .doc("accepted index bars")
                .with_watermark(),
            OutputPort::for_table(&tables::index_rejects(), "rejects", WriteMode::Merge)
                .doc("rejected index rows with reasons"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: IndexParams = parse_params(params)?;
        if p.files.is_empty() {
            return Err(ConfigError::new("files", "give at least one index file"));
        }
        if let Some(f) = p.files.iter().find(|f| f.code.trim().is_empty()) {
            return Err(ConfigError::new(
                "files",
                format!("empty code for {}", f.path),
            ));
        }
        Ok(Box::new(Configured { p }))
    }
}

fn ingest(p: &IndexParams, window: (Option<NaiveDate>, NaiveDate)) -> OpResult<IndexCollector> {
    let mut out = IndexCollector::default();
    for f in &p.files {
        let name = Path::new(&f.path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let source = format!("index:{name}");
        let bytes = std::fs::read(&f.path)
            .map_err(|e| OpError::permanent(format!("open {}: {e}", f.path)))?;
        // UTF-8, UTF-16 with a BOM or CP949 are decoded; a file that cannot be decoded or
        // parsed is quarantined with its reason and the other index files go on.
        let read = decode_text(&bytes).and_then(|(text, _)| {
            read_index_csv(
                text.as_bytes(),
                &f.code,
                &source,
                window,
                p.tolerance_rel,
                &mut out,
            )
        });
        if let Err(why) = read {
            out.count("files_quarantined");
            out.reject(
                &source,
                Reject {
                    code: f.code.clone(),
                    date: None,
                    reason: Reason::UnreadableFile,
                    detail: format!("{}: {why}", f.path),
                    raw: f.path.clone(),
                },
            );
        }
    }
    Ok(out)
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = self.p.clone();
        let ds = ctx.ds;
        let watermark = ctx
            .watermarks
            .get("bars")
            .copied()
            .filter(|_| p.incremental);
        if watermark.is_some() {
            ctx.counters.add("incremental_runs", 1);
        }
        let from = watermark.map(|w| w - chrono::Duration::days(i64::from(p.overlap_days)));
        let collected = tokio::task::spawn_blocking(move || ingest(&p, (from, ds)))
            .await
            .map_err(|e| OpError::permanent(format!("index worker: {e}")))??;
        for (k, v) in &collected.counters {
            ctx.counters.add(k, *v);
        }
        observe_rejects(
            ctx,
            "rejects",
            collected.rejects.iter().map(|(_, r)| r.reason.code()),
        );
        let bars: Vec<&IndexBar> = collected.bars.values().collect();
        let mut by_source: HashMap<&str, Vec<Reject>> = HashMap::new();
        for (s, r) in &collected.rejects {
            by_source.entry(s.as_str()).or_default().push(r.clone());
        }
        let mut rejects = Vec::new();
        for (source, rs) in by_source {
            rejects.push(rejects_batch(&rs, source, ds)?);
        }
        if rejects.is_empty() {
            rejects.push(RecordBatch::new_empty(tables::ohlcv_rejects().schema));
        }
        Ok(OutputBatches::new()
            .with("bars", vec![index_batch(&bars)?])
            .with("rejects", rejects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::d;

    const YAHOO: &str = "Date,Open,High,Low,Close,Adj Close,Volume
2022-12-28,2300.0,2310.0,2280.0,2280.45,2280.45,400
2022-12-29,null,null,null,null,null,null
2022-12-30,2280.0,2290.0,2236.0,2236.40,2236.40,300
2023-01-02,2249.95,2259.88,2222.37,2225.67,2225.67,0
";
    const ONEKIND: &str = "date,open,high,low,close
20230102,2249.95,2259.88,2222.37,2225.67
20230103,2230.98,2230.98,2180.67,2218.68
20230104,2205.98,2260.0,2198.0,abc
20230105,2264.0,2264.7,2250.0,2264.65
";

    fn collect(ds: &str) -> IndexCollector {
        let mut out = IndexCollector::default();
        read_index_csv(
            YAHOO.as_bytes(),
            "KS11",
            "y",
            (None, d(ds)),
            0.001,
            &mut out,
        )
        .unwrap();
        read_index_csv(
            ONEKIND.as_bytes(),
            "KS11",
            "o",
            (None, d(ds)),
            0.001,
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn two_files_splice_into_one_series_with_nulls_rejected() {
        let out = collect("2023-01-04");
        let dates: Vec<String> = out.bars.keys().map(|(_, d)| d.to_string()).collect();
        assert_eq!(
            dates,
            ["2022-12-28", "2022-12-30", "2023-01-02", "2023-01-03"]
        );
        assert_eq!(out.counters["overlap.identical"], 1);
        assert_eq!(out.counters["rejected.null_value"], 1);
        assert_eq!(out.counters["rejected.unparsable"], 1);
        assert_eq!(out.counters["out_of_scope.after_ds"], 1);
        let rows = out.counters["rows_read"];
        let routed: i64 = out
            .counters
            .iter()
            .filter(|(k, _)| k.as_str() != "rows_read")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(rows, 8);
        assert_eq!(routed, rows, "every row is counted exactly once");
    }

    #[test]
    fn a_conflicting_splice_is_rejected_not_overwritten() {
        let mut out = IndexCollector::default();
        read_index_csv(
            YAHOO.as_bytes(),
            "KS11",
            "y",
            (None, d("2023-01-02")),
            0.001,
            &mut out,
        )
        .unwrap();
        let other = "date,close\n20230102,2300.0\n";
        read_index_csv(
            other.as_bytes(),
            "KS11",
            "z",
            (None, d("2023-01-02")),
            0.001,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.counters["rejected.duplicate_date"], 1);
        let kept = &out.bars[&("KS11".to_string(), d("2023-01-02"))];
        assert_eq!(kept.close, 2225.67);
        let dup = out
            .rejects
            .iter()
            .find(|(_, r)| r.reason == Reason::DuplicateDate)
            .unwrap();
        assert!(
            dup.1.detail.contains("conflicts with 2225.67"),
            "{}",
            dup.1.detail
        );
    }

    #[test]
    fn an_incremental_window_takes_only_rows_from_its_start() {
        let mut out = IndexCollector::default();
        let w = (Some(d("2022-12-30")), d("2023-01-02"));
        read_index_csv(YAHOO.as_bytes(), "KS11", "y", w, 0.001, &mut out).unwrap();
        let dates: Vec<NaiveDate> = out.bars.keys().map(|(_, d)| *d).collect();
        assert_eq!(dates, [d("2022-12-30"), d("2023-01-02")]);
        // 12-28 and the all-null 12-29 are before the window: counted, not re-rejected.
        assert_eq!(out.counters["out_of_scope.before_window"], 2);
        assert!(out.rejects.is_empty());
    }

    #[test]
    fn close_only_files_are_accepted_without_open_high_low() {
        let mut out = IndexCollector::default();
        read_index_csv(
            "Date,Close\n2024-01-02,2669.81\n".as_bytes(),
            "KS11",
            "c",
            (None, d("2024-01-02")),
            0.001,
            &mut out,
        )
        .unwrap();
        let bar = out.bars.values().next().unwrap();
        assert_eq!((bar.open, bar.close), (None, 2669.81));
    }

    #[test]
    fn a_utf16_index_file_is_read_and_an_undecodable_one_is_quarantined_alone() {
        let dir = tempfile::tempdir().unwrap();
        let utf16 = dir.path().join("ks11.csv");
        std::fs::write(&utf16, crate::testutil::utf16le_with_bom(YAHOO)).unwrap();
        let bad = dir.path().join("kq11.csv");
        std::fs::write(&bad, crate::testutil::noise(4096)).unwrap();
        let file = |code: &str, p: &std::path::Path| IndexFile {
            code: code.into(),
            path: p.to_string_lossy().into(),
        };
        let p = IndexParams {
            files: vec![file("KQ11", &bad), file("KS11", &utf16)],
            tolerance_rel: 0.001,
            incremental: false,
            overlap_days: 10,
        };
        let out = ingest(&p, (None, d("2023-01-02"))).unwrap();
        assert_eq!(out.bars.len(), 3, "the UTF-16 file's three good rows");
        assert!(out.bars.keys().all(|(code, _)| code == "KS11"));
        assert_eq!(out.counters["files_quarantined"], 1);
        let unreadable: Vec<_> = out
            .rejects
            .iter()
            .filter(|(_, r)| r.reason == Reason::UnreadableFile)
            .collect();
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].1.code, "KQ11");
        assert!(
            unreadable[0].1.detail.contains("kq11.csv"),
            "{:?}",
            unreadable[0]
        );
    }
}
