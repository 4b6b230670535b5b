//! `ingest.news`: dated headlines from CSV or JSONL files into `news`, unusable rows into
//! `news_rejects`.
//!
//! * Columns are mapped by name (`columns:`), e.g. Naver Finance crawls `title,press,date,link`.
//! * Ticker: the `code` column when mapped, else `code=NNNNNN` in the link, else the longest
//!   company name (from the `universe` input or the `names` param) found in the title. No
//!   ticker → rejected `no_ticker`.
//! * `format: rss` reads RSS/Atom feeds (feed-rs) from a file, a folder of `*.xml`, or an
//!   `http(s)://` URL: title, first link, summary, and the published (else updated) time.
//! * Time: `published_at` is KST. A date without a time of day (`2022.06.01`) is taken as
//!   23:59:59 KST that day — the conservative choice: such an article is only known after the
//!   close, so `sentiment.daily` counts it for the next trading day, never earlier.
//! * id = SHA-256 of (source, code, canonical url) — for Naver links the `article_id`/
//!   `office_id` pair, so the same article crawled from several list pages is one row — or of
//!   (source, code, title, published_at) when there is no url. The code is part of the id: an
//!   article listed under two tickers is one row per ticker. Repeats are counted
//!   `deduplicated`, and re-ingest merges on id, so nothing is duplicated.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, StringArray};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::rejects::observe_rejects;
use crate::tables;

mod collect;
mod formats;
mod ticker;

pub use collect::{Article, NewsCollector, NewsReject, NewsWindow, news_batch, news_rejects_batch};
use formats::parse_file;
pub use formats::{
    Format, NewsColumns, ParsedNews, RawNews, parse_published, read_csv, read_feed, read_jsonl,
};
pub use ticker::{Resolver, canonical_url, code_from_url, mentions};

/// One news source: files, their format and column mapping, and the source name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsSource {
    /// A file, or a folder whose `*.csv` / `*.jsonl` files are all read.
    pub path: String,
    #[serde(default = "default_format")]
    pub format: Format,
    /// Value of the `source` column; also selects the source weight downstream.
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default)]
    pub columns: NewsColumns,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsParams {
    /// A file, or a folder whose `*.csv` / `*.jsonl` files are all read.
    pub path: String,
    #[serde(default = "default_format")]
    pub format: Format,
    /// Value of the `source` column; also selects the source weight downstream.
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default)]
    pub columns: NewsColumns,
    /// More sources written to the same table (a table has one writer per DAG).
    #[serde(default)]
    pub extra_sources: Vec<NewsSource>,
    /// Company name -> code, used when no code is given (in addition to the `universe` input).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Only these codes (default: all).
    #[serde(default)]
    pub codes: Option<Vec<String>>,
    /// Only take articles dated after what `news` already holds on or before ds, minus
    /// `overlap_days` (late articles), so a daily run resolves and writes a few days of news,
    /// not all history. Off = every run re-reads all history.
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
    7
}

fn default_format() -> Format {
    Format::Csv
}
fn default_source() -> String {
    "naver_finance".into()
}

pub struct IngestNews;

struct Configured {
    p: NewsParams,
}

#[async_trait]
impl Operator for IngestNews {
    fn kind(&self) -> &'static str {
        "ingest.news"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "Dated headlines from CSV/JSONL/RSS/Atom with ticker resolution and stable ids; bad rows to news_rejects"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("path", "string", "a file, or a folder of *.csv / *.jsonl"),
            ParamSpec::optional(
                "format",
                "csv|jsonl|rss",
                "csv",
                "file format (rss: RSS/Atom file, folder of *.xml, or http(s) URL)",
            ),
            ParamSpec::optional(
                "source",
                "string",
                "naver_finance",
                "value of the `source` column",
            ),
            ParamSpec::optional(
                "columns",
                "map",
                "title,date,link,press",
                "field names: title, date, time, url, body, code, press",
            ),
            ParamSpec::optional(
                "names",
                "map<name, code>",
                "{}",
                "company names for ticker resolution",
            ),
            ParamSpec::optional(
                "extra_sources",
                "list<{path, format, source, columns}>",
                "[]",
                "more sources written to the same table (one writer per table)",
            ),
            ParamSpec::optional("codes", "list<string>", "all", "only these codes"),
            ParamSpec::optional(
                "incremental",
                "bool",
                "true",
                "only articles newer than the table's watermark (minus overlap_days)",
            ),
            ParamSpec::optional(
                "overlap_days",
                "int",
                "7",
                "calendar days re-read before the watermark (late articles)",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![
            InputPort::new(
                "universe",
                tables::universe().schema,
                "company names for ticker resolution",
            )
            .optional()
            .all_rows(),
        ]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::news(), "news", WriteMode::Merge)
                .doc("accepted articles")
                .with_watermark(),
            OutputPort::for_table(&tables::news_rejects(), "rejects", WriteMode::Merge)
                .doc("rejected records with reasons"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        let p: NewsParams = parse_params(params)?;
        if p.source.trim().is_empty() {
            return Err(ConfigError::new("source", "must not be empty"));
        }
        Ok(Box::new(Configured { p }))
    }
}

fn files_of(path: &str, format: Format) -> OpResult<Vec<PathBuf>> {
    let p = Path::new(path);
    if p.is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let ext = match format {
        Format::Csv => "csv",
        Format::Jsonl => "jsonl",
        Format::Rss => "xml",
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| OpError::permanent(format!("cannot read {path}: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case(ext)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(OpError::permanent(format!("no *.{ext} files in {path}")));
    }
    Ok(files)
}

/// GETs a feed; network and 5xx failures are transient (the task's retries apply).
fn fetch_url(url: &str) -> OpResult<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| OpError::transient(format!("GET {url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| OpError::transient(format!("GET {url}: {e}")))?;
    match status {
        200..=299 => Ok(body),
        500.. => Err(OpError::transient(format!("GET {url}: HTTP {status}"))),
        _ => Err(OpError::permanent(format!("GET {url}: HTTP {status}"))),
    }
}

impl NewsParams {
    /// The main source followed by `extra_sources`.
    fn sources(&self) -> Vec<NewsSource> {
        let mut v = vec![NewsSource {
            path: self.path.clone(),
            format: self.format,
            source: self.source.clone(),
            columns: self.columns.clone(),
        }];
        v.extend(self.extra_sources.iter().cloned());
        v
    }
}

/// Reads every source; one collector per source (ids include the source, so sources never
/// deduplicate each other).
fn ingest(
    p: &NewsParams,
    w: NewsWindow,
    resolver: &Resolver,
) -> OpResult<Vec<(String, NewsCollector)>> {
    let codes: Option<HashSet<String>> = p.codes.as_ref().map(|c| c.iter().cloned().collect());
    let mut all = Vec::new();
    for src in p.sources() {
        let mut out = NewsCollector::default();
        if src.format == Format::Rss
            && (src.path.starts_with("http://") || src.path.starts_with("https://"))
        {
            let body = fetch_url(&src.path)?;
            read_feed(body.as_bytes(), |rec: RawNews, raw: &str| {
                out.push(rec, raw, &src.source, w, resolver, codes.as_ref());
            })
            .map_err(|e| OpError::permanent(format!("{}: {e}", src.path)))?;
            all.push((src.source, out));
            continue;
        }
        // Files are parsed once per process while unchanged (a backfill, `serve`); each run
        // routes the parsed records through its own window.
        let settings = format!("{:?} {:?}", src.format, src.columns);
        for f in files_of(&src.path, src.format)? {
            // A file that cannot be decoded or parsed is quarantined with its reason and the
            // other files go on; one that cannot be opened is a transient error.
            let parsed = super::cache::parsed(&f.to_string_lossy(), &settings, || {
                parse_file(&f, src.format, &src.columns)
            });
            let (records, hit) = match parsed {
                Ok(ok) => ok,
                Err(OpError::Permanent(why)) => {
                    out.count("files_quarantined");
                    out.reject("unreadable_file", why, &f.display().to_string(), None);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if hit {
                out.count("source_cache_hits");
            }
            for r in records.iter() {
                out.push_parsed(
                    &r.rec,
                    r.at,
                    &r.raw,
                    &src.source,
                    w,
                    resolver,
                    codes.as_ref(),
                );
            }
        }
        all.push((src.source, out));
    }
    Ok(all)
}

fn names_from_universe(inputs: &InputBatches) -> OpResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    if !inputs.has("universe") {
        return Ok(out);
    }
    for b in inputs.batches("universe")? {
        let (Some(code), Some(name)) = (b.column_by_name("code"), b.column_by_name("name")) else {
            continue;
        };
        let (Some(code), Some(name)) = (
            code.as_any().downcast_ref::<StringArray>(),
            name.as_any().downcast_ref::<StringArray>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if !code.is_null(i) && !name.is_null(i) {
                out.push((name.value(i).to_string(), code.value(i).to_string()));
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let mut names = names_from_universe(&inputs)?;
        names.extend(self.p.names.iter().map(|(n, c)| (n.clone(), c.clone())));
        let resolver = Resolver::new(names);
        let p = self.p.clone();
        let ds = ctx.ds;
        let watermark = ctx
            .watermarks
            .get("news")
            .copied()
            .filter(|_| p.incremental);
        if watermark.is_some() {
            ctx.counters.add("incremental_runs", 1);
        }
        let w = NewsWindow {
            ds,
            from: watermark.map(|m| m - chrono::Duration::days(i64::from(p.overlap_days))),
        };
        let collected = tokio::task::spawn_blocking(move || ingest(&p, w, &resolver))
            .await
            .map_err(|e| OpError::permanent(format!("news worker: {e}")))??;
        let mut news = Vec::new();
        let mut rejects = Vec::new();
        let mut codes = HashSet::new();
        for (source, c) in &collected {
            for (k, v) in &c.counters {
                ctx.counters.add(k, *v);
            }
            observe_rejects(ctx, "rejects", c.rejects.iter().map(|r| r.reason));
            codes.extend(c.articles.iter().map(|a| a.code.as_str()));
            news.push(news_batch(&c.articles, source)?);
            rejects.push(news_rejects_batch(&c.rejects, source, ds)?);
        }
        ctx.counters.add("codes", codes.len() as i64);
        Ok(OutputBatches::new()
            .with("news", news)
            .with("rejects", rejects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utf16_news_file_is_read_and_an_unreadable_one_is_quarantined_alone() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "title,date,link,press\n\
                   삼성전자 분기 실적 발표,2024-12-13,https://example.com/a,연합\n";
        let utf16 = crate::testutil::utf16le_with_bom(csv);
        let noise = crate::testutil::noise(2048);
        std::fs::write(dir.path().join("a.csv"), utf16).unwrap();
        std::fs::write(dir.path().join("b.csv"), noise).unwrap();
        let p: NewsParams = parse_params(&serde_json::json!({
            "path": dir.path().to_str().unwrap(),
        }))
        .unwrap();
        let resolver = Resolver::new([("삼성전자".to_string(), "005930".to_string())]);
        let w = NewsWindow::upto(chrono::NaiveDate::from_ymd_opt(2024, 12, 16).unwrap());
        let all = ingest(&p, w, &resolver).unwrap();
        let (_, out) = &all[0];
        assert_eq!(out.articles.len(), 1, "the UTF-16 file's article");
        assert_eq!(out.counters["files_quarantined"], 1);
        assert_eq!(out.rejects.len(), 1);
        assert_eq!(out.rejects[0].reason, "unreadable_file");
        assert!(
            out.rejects[0].raw.ends_with("b.csv"),
            "{:?}",
            out.rejects[0]
        );
    }
}
