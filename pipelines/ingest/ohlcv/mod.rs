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

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::{
    Calendar, ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator,
    OutputBatches, OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::dates::days;
use crate::common::rejects::{Reason, Reject, observe_rejects, rejects_batch};
use crate::ingest::decode::decode_text;
use crate::tables;

mod checks;
#[cfg(test)]
mod corpus_tests;
mod csv;
pub mod kis;
pub mod kis_page;
#[cfg(test)]
mod kis_server;
mod kis_types;
mod parquet_panel;

pub use self::csv::{Collector, Columns, ParsedCsv, Window, parse_csv, read_csv, route_csv};
pub use checks::{Bar, Checked, RawRow, check_row};
use parquet_panel::read_parquet;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CsvDir,
    Panel,
    Kis,
}

/// `kis:` params: the KIS Open API daily chart (see [`kis`]).
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
    kis::KisConfig::default().base_url
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

/// The code a per-ticker file stands for: its name without `.csv` or `.csv.gz` (any case);
/// `None` for any other file.
fn csv_stem(f: &Path) -> Option<String> {
    let name = f.file_name()?.to_str()?;
    let lower = name.to_ascii_lowercase();
    let stem_len = [".csv", ".csv.gz"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map(|ext| name.len() - ext.len())?;
    (stem_len > 0).then(|| name[..stem_len].to_string())
}

/// A `.gz` file's decompressed bytes (a truncated or corrupt one is an error naming why);
/// other files as they are.
fn gunzip_if_gz(f: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if !f.extension().is_some_and(|x| x.eq_ignore_ascii_case("gz")) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut out,
    )
    .map_err(|e| format!("gzip: {e} (after {} decompressed bytes)", out.len()))?;
    Ok(out)
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
                Source::Kis => format!("kis:{}", kis::TR_DAILY_CHART),
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

    fn ingest(
        &self,
        ds: NaiveDate,
        from: Option<NaiveDate>,
        calendar: &dyn Calendar,
    ) -> OpResult<Collector> {
        let p = &self.p;
        let codes: Option<HashSet<String>> = p.codes.as_ref().map(|c| c.iter().cloned().collect());
        let provisional: HashSet<NaiveDate> = p.provisional_dates.iter().copied().collect();
        let w = Window {
            ds,
            from,
            codes: codes.as_ref(),
            provisional: &provisional,
            calendar,
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
                let mut files: Vec<(PathBuf, String)> = Vec::new();
                for entry in std::fs::read_dir(&p.path).map_err(|e| {
                    OpError::permanent(format!("cannot read folder {}: {e}", p.path))
                })? {
                    let f = entry
                        .map_err(|e| OpError::transient(format!("list {}: {e}", p.path)))?
                        .path();
                    if let Some(code) = csv_stem(&f) {
                        files.push((f, code));
                    } else if f.is_file() {
                        out.count("files_skipped.not_csv");
                    }
                }
                files.sort();
                if files.is_empty() {
                    return Err(OpError::permanent(format!(
                        "no *.csv or *.csv.gz files in {}",
                        p.path
                    )));
                }
                for (f, code) in files {
                    if codes.as_ref().is_some_and(|c| !c.contains(&code)) {
                        continue;
                    }
                    // Parsed once per process while the file is unchanged (a backfill,
                    // `serve`); each run routes the records through its own window. A file
                    // that cannot be decoded or parsed is quarantined with its reason and the
                    // other files go on; one that cannot be opened is a transient error.
                    let parsed =
                        super::cache::parsed(&f.to_string_lossy(), &format!("{cols:?}"), || {
                            let bytes = std::fs::read(&f).map_err(|e| {
                                OpError::transient(format!("open {}: {e}", f.display()))
                            })?;
                            let unreadable =
                                |e: String| OpError::permanent(format!("{}: {e}", f.display()));
                            let bytes = gunzip_if_gz(&f, bytes).map_err(unreadable)?;
                            if bytes.is_empty() {
                                return Err(unreadable("empty file (no header)".into()));
                            }
                            let (text, _) = decode_text(&bytes).map_err(unreadable)?;
                            parse_csv(text.as_bytes(), &cols, true).map_err(unreadable)
                        });
                    match parsed {
                        Ok((parsed, hit)) => {
                            if hit {
                                out.count("source_cache_hits");
                            }
                            route_csv(&parsed, Some(&code), &w, &mut out);
                        }
                        Err(OpError::Permanent(why)) => {
                            out.count("files_quarantined");
                            out.reject(Reject {
                                code: code.clone(),
                                date: None,
                                reason: Reason::UnreadableFile,
                                detail: why,
                                raw: f.display().to_string(),
                            });
                        }
                        Err(e) => return Err(e),
                    }
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
                let cfg = kis::KisConfig {
                    base_url: k.base_url.clone(),
                    app_key_env: k.app_key_env.clone(),
                    app_secret_env: k.app_secret_env.clone(),
                    token_cache: k.token_cache.as_ref().map(PathBuf::from),
                    adjusted: k.adjusted,
                    max_retries: k.max_retries,
                    ..kis::KisConfig::default()
                };
                let kis_err = |e: kis::KisError| {
                    if e.is_transient() {
                        OpError::transient(e.to_string())
                    } else {
                        OpError::permanent(e.to_string())
                    }
                };
                let mut client = kis::KisClient::new(cfg).map_err(kis_err)?;
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

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let ds = ctx.ds;
        let this = Configured { p: self.p.clone() };
        let from = self.window_start(ds, ctx.watermarks.get("bars").copied());
        if self.p.incremental && ctx.watermarks.contains_key("bars") {
            ctx.counters.add("incremental_runs", 1);
        }
        let calendar = ctx.calendar.clone();
        let collected = tokio::task::spawn_blocking(move || this.ingest(ds, from, &*calendar))
            .await
            .map_err(|e| OpError::permanent(format!("ingest worker: {e}")))??;
        for (k, v) in &collected.counters {
            ctx.counters.add(k, *v);
        }
        observe_rejects(
            ctx,
            "rejects",
            collected.rejects.iter().map(|r| r.reason.code()),
        );
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
    use krxflow_core::WeekdayCalendar;

    use super::*;

    /// The operator over a folder of per-ticker CSV files.
    fn csv_dir(dir: &std::path::Path) -> Configured {
        Configured {
            p: parse_params(&serde_json::json!({
                "source": "csv_dir",
                "path": dir.to_str().unwrap(),
            }))
            .unwrap(),
        }
    }

    #[test]
    fn kis_source_validates_every_row_and_starts_from_the_watermark() {
        use super::kis_server::{days_desc, rows_json, server};
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
        let out = op.ingest(ds, from, &WeekdayCalendar::default()).unwrap();
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
    fn utf16_and_cp949_files_are_decoded_and_an_unreadable_one_is_quarantined_alone() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "Date,Open,High,Low,Close,Volume,Change\n\
                   2024-12-12,100,110,90,105,1000,0.01\n\
                   2024-12-13,105,112,101,110,1200,0.047\n";
        let utf16 = crate::testutil::utf16le_with_bom(csv);
        // A CP949 export with a Korean column the ingest does not read.
        let korean = csv
            .replace("Change\n", "Change,비고\n")
            .replace("0.01\n", "0.01,상승\n");
        let (cp949, _, _) = encoding_rs::EUC_KR.encode(&korean);
        let noise = crate::testutil::noise(2048);
        std::fs::write(dir.path().join("000001.csv"), csv).unwrap();
        std::fs::write(dir.path().join("000002.csv"), utf16).unwrap();
        std::fs::write(dir.path().join("000003.csv"), cp949.as_ref()).unwrap();
        std::fs::write(dir.path().join("000004.csv"), noise).unwrap();
        let op = csv_dir(dir.path());
        let out = op
            .ingest(
                crate::testutil::d("2024-12-13"),
                None,
                &WeekdayCalendar::default(),
            )
            .unwrap();
        assert_eq!(
            out.counters["accepted"], 6,
            "two bars from each readable file"
        );
        assert_eq!(out.counters["files_quarantined"], 1);
        assert_eq!(out.counters["rejected.unreadable_file"], 1);
        let bad = &out.rejects[0];
        assert_eq!(
            (bad.code.as_str(), bad.reason),
            ("000004", Reason::UnreadableFile)
        );
        assert!(
            bad.raw.ends_with("000004.csv") && bad.detail.contains("CP949"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_bad_row_found_again_by_the_next_days_overlap_is_the_same_reject_row() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "Date,Open,High,Low,Close,Volume,Change\n\
                   2024-12-11,100,110,90,105,1000,0.01\n\
                   2024-12-12,105,112,101,110,0,0.047\n\
                   2024-12-13,110,115,108,112,1300,0.02\n";
        std::fs::write(dir.path().join("000001.csv"), csv).unwrap();
        let op = csv_dir(dir.path());
        let day = |ds: &str| {
            let ds = crate::testutil::d(ds);
            let out = op.ingest(ds, None, &WeekdayCalendar::default()).unwrap();
            rejects_batch(&out.rejects, &op.label(), ds).unwrap()
        };
        let (first, next) = (day("2024-12-12"), day("2024-12-13"));
        assert_eq!(first.num_rows(), 1, "the zero-volume bar");
        // Dated by its bar, not by the run: the merge finds it unchanged.
        assert_eq!(first, next);
        let ds = crate::cols::date_col(&next, "ds").unwrap();
        assert_eq!(
            ds.value(0),
            crate::common::dates::days(crate::testutil::d("2024-12-12"))
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
