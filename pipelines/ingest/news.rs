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
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Asia::Seoul;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::common::dates::days;
use crate::common::rejects::unique_ids;
use crate::tables;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Jsonl,
    /// RSS 0.9/1.0/2.0 or Atom (also JSON Feed), from a file or an `http(s)://` URL.
    Rss,
}

/// Input field names (CSV headers or JSON keys, matched case-insensitively).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewsColumns {
    pub title: String,
    pub date: String,
    /// Optional separate time-of-day field.
    pub time: Option<String>,
    pub url: Option<String>,
    pub body: Option<String>,
    pub code: Option<String>,
    pub press: Option<String>,
}

impl Default for NewsColumns {
    fn default() -> Self {
        Self {
            title: "title".into(),
            date: "date".into(),
            time: None,
            url: Some("link".into()),
            body: None,
            code: None,
            press: Some("press".into()),
        }
    }
}

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

/// One accepted article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub id: String,
    pub code: String,
    pub published_at: NaiveDateTime,
    pub title: String,
    pub body: Option<String>,
    pub url: Option<String>,
}

/// A rejected record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewsReject {
    pub reason: &'static str,
    pub detail: String,
    pub raw: String,
}

/// Raw fields of one record.
#[derive(Debug, Default)]
pub struct RawNews {
    pub title: String,
    pub date: String,
    pub time: Option<String>,
    pub url: Option<String>,
    pub body: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Default)]
pub struct NewsCollector {
    pub articles: Vec<Article>,
    pub rejects: Vec<NewsReject>,
    pub counters: BTreeMap<String, i64>,
    seen: HashSet<String>,
}

/// Which publication dates a run takes: `(from, ds]`, `from` inclusive; all up to `ds` when
/// `from` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct NewsWindow {
    pub ds: NaiveDate,
    pub from: Option<NaiveDate>,
}

impl NewsWindow {
    pub fn upto(ds: NaiveDate) -> Self {
        Self { ds, from: None }
    }
}

/// Resolves tickers from explicit codes, links or company names.
#[derive(Debug, Default)]
pub struct Resolver {
    /// (name, code), longest name first.
    names: Vec<(String, String)>,
}

impl Resolver {
    pub fn new(names: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut names: Vec<(String, String)> = names
            .into_iter()
            .filter(|(n, _)| n.chars().count() >= 2)
            .collect();
        names.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        names.dedup_by(|a, b| a.0 == b.0);
        Self { names }
    }

    fn resolve(&self, raw: &RawNews) -> Option<String> {
        if let Some(c) = raw.code.as_deref().map(str::trim).filter(|c| is_code(c)) {
            return Some(c.to_string());
        }
        if let Some(c) = raw.url.as_deref().and_then(code_from_url) {
            return Some(c);
        }
        self.names
            .iter()
            .find(|(n, _)| mentions(&raw.title, n))
            .map(|(_, c)| c.clone())
    }
}

/// Korean particles that may follow a name directly (삼성전자가, 카카오의, ...).
const PARTICLES: &[char] = &[
    '은', '는', '이', '가', '을', '를', '의', '에', '도', '와', '과', '만', '로',
];

/// Whether `text` mentions `name` as a word: not inside a longer word (레이 in 플레이) and not
/// as the head of a longer name (신한 in 신한지주), though a particle may follow.
pub fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric())
            && after.is_none_or(|c| !c.is_alphanumeric() || PARTICLES.contains(&c))
    })
}

fn is_code(s: &str) -> bool {
    s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Value of a query parameter in a URL (no decoding needed for the ids used here).
fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let q = url.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `code=005930` in a link.
pub fn code_from_url(url: &str) -> Option<String> {
    query_param(url, "code")
        .filter(|c| is_code(c))
        .map(str::to_string)
}

/// The part of a URL that identifies the article: Naver's `office_id`+`article_id` when present
/// (list-page parameters like `page=` differ between crawls of the same article), else the URL
/// without its query's paging parameters.
pub fn canonical_url(url: &str) -> String {
    let url = url.trim();
    if let (Some(a), Some(o)) = (
        query_param(url, "article_id"),
        query_param(url, "office_id"),
    ) {
        return format!("naver:{o}/{a}");
    }
    match url.split_once('?') {
        Some((base, q)) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|kv| {
                    let k = kv.split('=').next().unwrap_or("");
                    !matches!(
                        k,
                        "page" | "sm" | "utm_source" | "utm_medium" | "utm_campaign"
                    )
                })
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => url.to_string(),
    }
}

/// Parses a KST date or date-time. Date-only values become 23:59:59 that day.
pub fn parse_published(date: &str, time: Option<&str>) -> Option<NaiveDateTime> {
    let date = date.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y.%m.%d %H:%M:%S",
        "%Y.%m.%d %H:%M",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(date, f) {
            return Some(t);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(date) {
        return Some(t.with_timezone(&Seoul).naive_local());
    }
    let day = ["%Y.%m.%d", "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(date.trim_end_matches('.'), f).ok())?;
    let tod = match time.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok()?,
        None => NaiveTime::from_hms_opt(23, 59, 59)?,
    };
    Some(day.and_time(tod))
}

fn article_id(source: &str, code: &str, raw: &RawNews, at: NaiveDateTime) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0x1f]);
    h.update(code.as_bytes());
    h.update([0x1f]);
    match raw.url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(u) => h.update(canonical_url(u).as_bytes()),
        None => {
            h.update(raw.title.trim().as_bytes());
            h.update([0x1f]);
            h.update(at.to_string().as_bytes());
        }
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One record of a news file as parsed, with its publication time: what the per-process cache
/// keeps, so a later run only routes records (see [`super::cache`]).
#[derive(Debug)]
pub struct ParsedNews {
    pub rec: RawNews,
    pub raw: String,
    pub at: Option<NaiveDateTime>,
}

/// Every record of one news file.
fn parse_file(f: &Path, format: Format, cols: &NewsColumns) -> OpResult<Vec<ParsedNews>> {
    let file = std::fs::File::open(f)
        .map_err(|e| OpError::transient(format!("open {}: {e}", f.display())))?;
    let mut out = Vec::new();
    let push = |rec: RawNews, raw: &str| {
        out.push(ParsedNews {
            at: parse_published(&rec.date, rec.time.as_deref()),
            rec,
            raw: raw.to_string(),
        })
    };
    match format {
        Format::Csv => read_csv(file, cols, push),
        Format::Jsonl => read_jsonl(std::io::BufReader::new(file), cols, push),
        Format::Rss => read_feed(file, push),
    }
    .map_err(|e| OpError::permanent(format!("{}: {e}", f.display())))?;
    Ok(out)
}

impl NewsCollector {
    fn count(&mut self, k: &str) {
        match self.counters.get_mut(k) {
            Some(n) => *n += 1,
            None => {
                self.counters.insert(k.to_string(), 1);
            }
        }
    }
    fn reject(&mut self, reason: &'static str, detail: String, raw: &str) {
        self.count(&format!("rejected.{reason}"));
        self.rejects.push(NewsReject {
            reason,
            detail,
            raw: raw.to_string(),
        });
    }

    /// Routes one record: accepted, deduplicated, out of scope or rejected.
    pub fn push(
        &mut self,
        rec: RawNews,
        raw: &str,
        source: &str,
        w: NewsWindow,
        resolver: &Resolver,
        codes: Option<&HashSet<String>>,
    ) {
        let at = parse_published(&rec.date, rec.time.as_deref());
        self.push_parsed(&rec, at, raw, source, w, resolver, codes);
    }

    /// [`NewsCollector::push`] for a record whose publication time is already parsed.
    #[allow(clippy::too_many_arguments)]
    pub fn push_parsed(
        &mut self,
        rec: &RawNews,
        parsed: Option<NaiveDateTime>,
        raw: &str,
        source: &str,
        w: NewsWindow,
        resolver: &Resolver,
        codes: Option<&HashSet<String>>,
    ) {
        self.count("rows_read");
        // Out-of-window rows are only counted: an incremental run neither resolves nor
        // re-rejects what an earlier run already handled.
        if let Some(at) = parsed {
            if at.date() > w.ds {
                return self.count("out_of_scope.after_ds");
            }
            if w.from.is_some_and(|f| at.date() < f) {
                return self.count("out_of_scope.before_window");
            }
        }
        let title = rec.title.trim();
        if title.is_empty() {
            return self.reject("empty_title", "no title".into(), raw);
        }
        let Some(at) = parsed else {
            return self.reject("unparsable_time", format!("date `{}`", rec.date), raw);
        };
        let Some(code) = resolver.resolve(rec) else {
            return self.reject("no_ticker", "no code, code= link or known name".into(), raw);
        };
        if codes.is_some_and(|c| !c.contains(&code)) {
            return self.count("out_of_scope.code");
        }
        let id = article_id(source, &code, rec, at);
        if !self.seen.insert(id.clone()) {
            return self.count("deduplicated.same_article");
        }
        self.count("accepted");
        self.articles.push(Article {
            id,
            code,
            published_at: at,
            title: title.to_string(),
            body: rec.body.clone().filter(|b| !b.trim().is_empty()),
            url: rec.url.clone().filter(|u| !u.trim().is_empty()),
        });
    }
}

fn find(headers: &[String], want: &str) -> Option<usize> {
    headers.iter().position(|h| h.eq_ignore_ascii_case(want))
}

/// Reads a CSV of articles.
pub fn read_csv<R: std::io::Read>(
    reader: R,
    cols: &NewsColumns,
    mut push: impl FnMut(RawNews, &str),
) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let need = |n: &str| {
        find(&headers, n)
            .ok_or_else(|| format!("column `{n}` not found (have {})", headers.join(",")))
    };
    let opt = |n: &Option<String>| -> Result<Option<usize>, String> {
        n.as_deref().map(need).transpose()
    };
    let (ti, di) = (need(&cols.title)?, need(&cols.date)?);
    let (tmi, ui, bi, ci) = (
        opt(&cols.time)?,
        opt(&cols.url)?,
        opt(&cols.body)?,
        opt(&cols.code)?,
    );
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let get = |i: usize| rec.get(i).unwrap_or("").to_string();
                let raw = rec.iter().collect::<Vec<_>>().join(",");
                push(
                    RawNews {
                        title: get(ti),
                        date: get(di),
                        time: tmi.map(get),
                        url: ui.map(get),
                        body: bi.map(get),
                        code: ci.map(get),
                    },
                    &raw,
                );
            }
            // A broken record still reaches the collector, which rejects it (empty title).
            Err(e) => push(RawNews::default(), &format!("csv error: {e}")),
        }
    }
    Ok(())
}

/// Reads an RSS/Atom feed. An entry without a title or a time still reaches the collector
/// (which rejects it with a reason); a document that is not a feed is an error.
pub fn read_feed<R: std::io::Read>(
    reader: R,
    mut push: impl FnMut(RawNews, &str),
) -> Result<(), String> {
    let feed = feed_rs::parser::parse(reader).map_err(|e| format!("not a feed: {e}"))?;
    for e in feed.entries {
        let when = e.published.or(e.updated);
        let url = e.links.first().map(|l| l.href.clone());
        let raw = format!(
            "id={} title={} link={} time={}",
            e.id,
            e.title.as_ref().map(|t| t.content.as_str()).unwrap_or(""),
            url.as_deref().unwrap_or(""),
            when.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
        push(
            RawNews {
                title: e.title.map(|t| t.content).unwrap_or_default(),
                date: when.map(|t| t.to_rfc3339()).unwrap_or_default(),
                time: None,
                url,
                body: e.summary.map(|t| t.content),
                code: None,
            },
            &raw,
        );
    }
    Ok(())
}

/// Reads JSON Lines: one object per line; a line that is not an object is kept as a reject.
pub fn read_jsonl<R: std::io::BufRead>(
    reader: R,
    cols: &NewsColumns,
    mut push: impl FnMut(RawNews, &str),
) -> Result<(), String> {
    for line in reader.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(&line)
        else {
            push(RawNews::default(), &line);
            continue;
        };
        let get = |k: &str| -> Option<String> {
            obj.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
        };
        let opt = |k: &Option<String>| k.as_deref().and_then(get);
        push(
            RawNews {
                title: get(&cols.title).unwrap_or_default(),
                date: get(&cols.date).unwrap_or_default(),
                time: opt(&cols.time),
                url: opt(&cols.url),
                body: opt(&cols.body),
                code: opt(&cols.code),
            },
            &line,
        );
    }
    Ok(())
}

fn kst_millis(t: NaiveDateTime) -> i64 {
    match Seoul.from_local_datetime(&t) {
        chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => {
            x.timestamp_millis()
        }
        // Korea has had no DST since 1988; fall back to the fixed +09:00 offset.
        chrono::LocalResult::None => t.and_utc().timestamp_millis() - 9 * 3_600_000,
    }
}

pub fn news_batch(
    articles: &[Article],
    source: &str,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_new(
        tables::news().schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                articles.iter().map(|a| a.id.as_str()),
            )) as ArrayRef,
            Arc::new(StringArray::from_iter_values(
                articles.iter().map(|a| a.code.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                articles.iter().map(|a| days(a.published_at.date())),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    articles.iter().map(|a| kst_millis(a.published_at)),
                )
                .with_timezone("Asia/Seoul"),
            ),
            Arc::new(StringArray::from_iter_values(
                articles.iter().map(|_| source),
            )),
            Arc::new(StringArray::from_iter_values(
                articles.iter().map(|a| a.title.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                articles.iter().map(|a| a.body.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                articles.iter().map(|a| a.url.as_deref()),
            )),
        ],
    )
}

pub fn news_rejects_batch(
    rejects: &[NewsReject],
    source: &str,
    ds: NaiveDate,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let id = |r: &NewsReject| {
        let mut h = Sha256::new();
        for part in [source, r.reason, &r.detail, &r.raw] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        h.finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    RecordBatch::try_new(
        tables::news_rejects().schema,
        vec![
            Arc::new(StringArray::from(unique_ids(rejects.iter().map(id)))) as ArrayRef,
            Arc::new(Date32Array::from_iter_values(
                rejects.iter().map(|_| days(ds)),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|_| source),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.reason),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.detail.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.raw.as_str()),
            )),
        ],
    )
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
            let (records, hit) = super::cache::parsed(&f.to_string_lossy(), &settings, || {
                parse_file(&f, src.format, &src.columns)
            })?;
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
    use crate::testutil::d;

    const NAVER: &str = "title,press,date,link
삼성전자 1분기 호실적,이데일리,2022.06.01,https://finance.naver.com/item/news_read.naver?article_id=0005230814&office_id=018&code=005930&page=1&sm=x
삼성전자 1분기 호실적,이데일리,2022.06.01,https://finance.naver.com/item/news_read.naver?article_id=0005230814&office_id=018&code=005930&page=7&sm=x
현대차 신차 출시,매일경제,2022.06.02,https://example.com/a?id=1
,매일경제,2022.06.02,https://finance.naver.com/item/news_read.naver?article_id=1&office_id=2&code=005930
무관한 기사,연합,2022.06.02,https://example.com/b
삼성전자 내일 기사,이데일리,2022.06.03,https://finance.naver.com/item/news_read.naver?article_id=9&office_id=1&code=005930
날짜 없음,이데일리,06/01,https://finance.naver.com/item/news_read.naver?article_id=8&office_id=1&code=005930
";

    fn collect(ds: &str) -> NewsCollector {
        let resolver = Resolver::new([("현대차".to_string(), "005380".to_string())]);
        let mut out = NewsCollector::default();
        read_csv(NAVER.as_bytes(), &NewsColumns::default(), |r, raw| {
            out.push(
                r,
                raw,
                "naver_finance",
                NewsWindow::upto(d(ds)),
                &resolver,
                None,
            )
        })
        .unwrap();
        out
    }

    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>news</title>
<item><title>삼성전자, HBM 공급 확대 - 한국경제</title><link>https://news.example/a1</link>
<pubDate>Mon, 16 Dec 2024 06:10:00 GMT</pubDate><description>요약</description></item>
<item><title>시장 전반 약세</title><link>https://news.example/a2</link>
<pubDate>Mon, 16 Dec 2024 07:00:00 GMT</pubDate></item>
<item><title>카카오 신사업</title><link>https://news.example/a3</link></item>
</channel></rss>"#;

    #[test]
    fn rss_items_resolve_by_name_convert_to_kst_and_bad_items_are_rejected() {
        let resolver = Resolver::new([
            ("삼성전자".to_string(), "005930".to_string()),
            ("카카오".to_string(), "035720".to_string()),
        ]);
        let mut out = NewsCollector::default();
        read_feed(FEED.as_bytes(), |r, raw| {
            out.push(
                r,
                raw,
                "google_rss",
                NewsWindow::upto(d("2024-12-16")),
                &resolver,
                None,
            )
        })
        .unwrap();
        assert_eq!(out.articles.len(), 1);
        let a = &out.articles[0];
        assert_eq!(a.code, "005930");
        assert_eq!(
            a.published_at.to_string(),
            "2024-12-16 15:10:00",
            "06:10 GMT = 15:10 KST"
        );
        assert_eq!(a.body.as_deref(), Some("요약"));
        let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["no_ticker", "unparsable_time"]);
        assert!(read_feed("<html>not a feed</html>".as_bytes(), |_, _| {}).is_err());
    }

    #[test]
    fn company_names_match_whole_words_with_particles_only() {
        assert!(mentions("삼성전자, 2분기 실적 발표", "삼성전자"));
        assert!(mentions("[속보] 카카오의 신사업", "카카오"));
        assert!(mentions("SK 주가 급등", "SK"));
        assert!(!mentions("신한지주 배당 확대", "신한"));
        assert!(!mentions("플레이스테이션 판매", "레이"));
        assert!(!mentions("SK하이닉스 신고가", "SK"));
        let r = Resolver::new([
            ("SK".to_string(), "034730".to_string()),
            ("SK하이닉스".to_string(), "000660".to_string()),
        ]);
        let title = |t: &str| RawNews {
            title: t.into(),
            ..RawNews::default()
        };
        assert_eq!(
            r.resolve(&title("SK하이닉스 신고가")),
            Some("000660".into())
        );
        assert_eq!(r.resolve(&title("SK그룹 회장")), None);
    }

    #[test]
    fn the_same_article_from_two_list_pages_is_one_row() {
        let out = collect("2022-06-02");
        assert_eq!(out.counters["deduplicated.same_article"], 1);
        let samsung: Vec<_> = out.articles.iter().filter(|a| a.code == "005930").collect();
        assert_eq!(samsung.len(), 1);
    }

    #[test]
    fn tickers_come_from_links_or_company_names_and_unknown_ones_are_rejected() {
        let out = collect("2022-06-02");
        let codes: Vec<&str> = out.articles.iter().map(|a| a.code.as_str()).collect();
        assert_eq!(codes, ["005930", "005380"]);
        let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["empty_title", "no_ticker", "unparsable_time"]);
        assert_eq!(out.counters["out_of_scope.after_ds"], 1);
        // Every row is accounted for exactly once.
        let routed: i64 = out
            .counters
            .iter()
            .filter(|(k, _)| k.as_str() != "rows_read")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(routed, out.counters["rows_read"]);
    }

    #[test]
    fn an_incremental_window_skips_older_rows_without_resolving_or_rejecting_them() {
        let resolver = Resolver::new([("현대차".to_string(), "005380".to_string())]);
        let mut out = NewsCollector::default();
        let w = NewsWindow {
            ds: d("2022-06-02"),
            from: Some(d("2022-06-02")),
        };
        read_csv(NAVER.as_bytes(), &NewsColumns::default(), |r, raw| {
            out.push(r, raw, "naver_finance", w, &resolver, None)
        })
        .unwrap();
        // The two 2022-06-01 list-page copies are before the window: counted, not deduplicated
        // or resolved. 2022-06-02's rows are handled as in a full run, and the undated row is
        // still rejected (it cannot be placed in any window).
        assert_eq!(out.counters["out_of_scope.before_window"], 2);
        let codes: Vec<&str> = out.articles.iter().map(|a| a.code.as_str()).collect();
        assert_eq!(codes, ["005380"]);
        let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["empty_title", "no_ticker", "unparsable_time"]);
        let routed: i64 = out
            .counters
            .iter()
            .filter(|(k, _)| k.as_str() != "rows_read")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(routed, out.counters["rows_read"]);
    }

    #[test]
    fn date_only_articles_are_stamped_at_the_end_of_the_kst_day() {
        let at = parse_published("2022.06.01", None).unwrap();
        assert_eq!(at.to_string(), "2022-06-01 23:59:59");
        let at = parse_published("2022-06-01 09:12:00", None).unwrap();
        assert_eq!(at.to_string(), "2022-06-01 09:12:00");
        let at = parse_published("2022-06-01T00:30:00Z", None).unwrap();
        assert_eq!(
            at.to_string(),
            "2022-06-01 09:30:00",
            "UTC converted to KST"
        );
        let batch = news_batch(&collect("2022-06-02").articles, "naver_finance").unwrap();
        let ts = batch
            .column_by_name("published_at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        // 2022-06-01 23:59:59 KST = 14:59:59 UTC.
        assert_eq!(ts.value(0), 1_654_095_599_000);
    }

    #[test]
    fn ids_are_stable_across_reingest_and_jsonl_reads_the_same_fields() {
        let a = collect("2022-06-02");
        let b = collect("2022-06-02");
        assert_eq!(a.articles, b.articles);
        let jsonl = "{\"title\":\"삼성전자 호실적\",\"date\":\"2022-06-01 10:00:00\",\"link\":\"https://x/y?code=005930\"}\nnot json\n";
        let mut out = NewsCollector::default();
        read_jsonl(jsonl.as_bytes(), &NewsColumns::default(), |r, raw| {
            out.push(
                r,
                raw,
                "google_rss",
                NewsWindow::upto(d("2022-06-02")),
                &Resolver::default(),
                None,
            )
        })
        .unwrap();
        assert_eq!(out.articles.len(), 1);
        assert_eq!(out.rejects.len(), 1);
        assert_eq!(out.rejects[0].raw, "not json");
    }
}
