//! Routing parsed records into articles: the run's window, ticker resolution, stable ids and
//! deduplication, rejects with reasons and counters ([`NewsCollector`]), and the `news` /
//! `news_rejects` batches.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Asia::Seoul;
use sha2::{Digest, Sha256};

use super::formats::{RawNews, parse_published};
use super::ticker::{Resolver, canonical_url};
use crate::common::dates::days;
use crate::common::rejects::unique_ids;
use crate::tables;

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
    /// The record's publication date when it parsed: the reject's `ds`, so a record an
    /// overlapping run rejects again is the same row (no rewrite); `None`: the run's day.
    pub published: Option<NaiveDate>,
    pub reason: &'static str,
    pub detail: String,
    pub raw: String,
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

impl NewsCollector {
    pub(super) fn count(&mut self, k: &str) {
        match self.counters.get_mut(k) {
            Some(n) => *n += 1,
            None => {
                self.counters.insert(k.to_string(), 1);
            }
        }
    }
    pub(super) fn reject(
        &mut self,
        reason: &'static str,
        detail: String,
        raw: &str,
        published: Option<NaiveDate>,
    ) {
        self.count(&format!("rejected.{reason}"));
        self.rejects.push(NewsReject {
            published,
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
            return self.reject(
                "empty_title",
                "no title".into(),
                raw,
                parsed.map(|t| t.date()),
            );
        }
        let Some(at) = parsed else {
            return self.reject("unparsable_time", format!("date `{}`", rec.date), raw, None);
        };
        let Some(code) = resolver.resolve(rec) else {
            return self.reject(
                "no_ticker",
                "no code, code= link or known name".into(),
                raw,
                Some(at.date()),
            );
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
                rejects.iter().map(|r| days(r.published.unwrap_or(ds))),
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

#[cfg(test)]
mod tests {
    use super::super::formats::{NewsColumns, read_csv, read_feed, read_jsonl};
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
    fn a_dated_reject_seen_again_by_a_later_overlapping_run_is_the_same_row() {
        // Runs on 2022-06-02 and 2022-06-03 both re-read 2022-06-02's rows (an overlap
        // window): its dated rejects must be identical rows, so the merge rewrites nothing.
        let batch = |ds: &str| news_rejects_batch(&collect(ds).rejects, "naver_finance", d(ds));
        let (first, again) = (batch("2022-06-02").unwrap(), batch("2022-06-03").unwrap());
        let reasons = |b: &RecordBatch| {
            let r = b.column_by_name("reason").unwrap();
            let r = r.as_any().downcast_ref::<StringArray>().unwrap();
            r.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            reasons(&first),
            ["empty_title", "no_ticker", "unparsable_time"]
        );
        let ds = |b: &RecordBatch| {
            let c = b.column_by_name("ds").unwrap();
            let c = c.as_any().downcast_ref::<Date32Array>().unwrap();
            c.iter().map(|v| v.unwrap()).collect::<Vec<_>>()
        };
        let (published, run2, run3) = (
            days(d("2022-06-02")),
            days(d("2022-06-02")),
            days(d("2022-06-03")),
        );
        assert_eq!(
            ds(&first),
            [published, published, run2],
            "undated: the run's day"
        );
        assert_eq!(ds(&again), [published, published, run3]);
        assert_eq!(
            first.slice(0, 2),
            again.slice(0, 2),
            "dated rejects are the same rows"
        );
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
