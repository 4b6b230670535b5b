//! Ingest of the real files in `../shared/data`: every row is routed to exactly one outcome,
//! and the known bad rows land in the rejects with the right reasons. Skipped (with a message)
//! when the data folder is absent.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDate;
use krxflow_pipelines::common::rejects::Reason;
use krxflow_pipelines::ingest::index::{IndexCollector, read_index_csv};
use krxflow_pipelines::ingest::news::{
    NewsCollector, NewsColumns, NewsWindow, Resolver, read_csv as read_news,
};
use krxflow_pipelines::ingest::ohlcv::{Collector, Columns, Window, read_csv};

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("ohlcv").is_dir() {
        Some(dir)
    } else {
        krxflow_core::skip::real_data_absent(&dir);
        None
    }
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn print(name: &str, counters: &BTreeMap<String, i64>) {
    println!("{name}:");
    for (k, v) in counters {
        println!("  {k:<40} {v:>8}");
    }
}

/// Every row read is counted in exactly one outcome.
fn assert_routed(counters: &BTreeMap<String, i64>) {
    let read = counters["rows_read"];
    let routed: i64 = counters
        .iter()
        .filter(|(k, _)| {
            k.starts_with("accepted")
                || k.starts_with("rejected.")
                || k.starts_with("out_of_scope.")
                || k.starts_with("deduplicated.")
                || k.starts_with("overlap.")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(routed, read, "rows read {read} != rows routed {routed}");
}

#[test]
fn thirty_ticker_files_route_every_row_and_quarantine_the_known_bad_rows() {
    let Some(dir) = data_dir() else { return };
    let provisional = HashSet::new();
    let w = Window {
        ds: d("2024-12-16"),
        from: None,
        codes: None,
        provisional: &provisional,
        calendar: &krxflow_schedule::KrxCalendar::new(),
        tol_abs: 2.0,
        tol_rel: 0.001,
    };
    let cols = Columns {
        date: "Date".into(),
        ..Columns::default()
    };
    let mut out = Collector::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("ohlcv/krx_daily_30"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 30);
    for f in &files {
        let code = f.file_stem().unwrap().to_string_lossy().to_string();
        read_csv(
            std::fs::File::open(f).unwrap(),
            &cols,
            Some(&code),
            &w,
            &mut out,
        )
        .unwrap();
    }
    print("krx_daily_30", &out.counters);
    assert_routed(&out.counters);
    let c = &out.counters;
    assert_eq!(c["rows_read"], 144_165);
    assert_eq!(c["accepted"], 140_857);
    assert_eq!(c["rejected.zero_volume"], 3_113);
    assert_eq!(c["rejected.trading_halt"], 148);
    assert_eq!(c["rejected.inconsistent_high_low"], 47);
    assert_eq!(c["repaired.high_low_rounding"], 1_324);
    // Samsung's 2018 split halt: 2018-04-30 .. 2018-05-03 with zero Open/High/Low/Volume.
    let samsung_halt: Vec<NaiveDate> = out
        .rejects
        .iter()
        .filter(|r| r.code == "005930" && r.reason == Reason::TradingHalt)
        .filter_map(|r| r.date)
        .filter(|x| x.to_string().starts_with("2018"))
        .collect();
    assert_eq!(
        samsung_halt,
        [d("2018-04-30"), d("2018-05-02"), d("2018-05-03")],
        "split-halt rows"
    );
    // Celltrion's 3,113 early zero-volume rows are all rejected: as zero_volume, as
    // trading_halt where Open/High/Low are 0 too, or for an inconsistent High/Low first.
    let celltrion = |reason: Reason| {
        out.rejects
            .iter()
            .filter(|r| r.code == "068270" && r.reason == reason)
            .count()
    };
    assert_eq!(celltrion(Reason::ZeroVolume), 3_070);
    assert_eq!(celltrion(Reason::TradingHalt), 14);
    assert_eq!(celltrion(Reason::InconsistentHighLow), 29);
    assert!(out.bars.iter().all(|b| b.volume > 0));
    assert!(
        out.rejects.iter().all(|r| !r.raw.is_empty()),
        "raw line kept"
    );
}

#[test]
fn full_market_panel_routes_every_row_and_quarantines_the_intraday_snapshot() {
    let Some(dir) = data_dir() else { return };
    let path =
        dir.join("ohlcv/krx_fullmarket_2018_2019/kr_fullmarket_daily_20181126_20190918.csv.gz");
    let provisional: HashSet<NaiveDate> = [d("2019-09-18")].into();
    let w = Window {
        ds: d("2019-09-18"),
        from: None,
        codes: None,
        provisional: &provisional,
        calendar: &krxflow_schedule::KrxCalendar::new(),
        tol_abs: 2.0,
        tol_rel: 0.001,
    };
    let mut out = Collector::default();
    let file = std::fs::File::open(path).unwrap();
    read_csv(
        flate2::read::GzDecoder::new(file),
        &Columns::default(),
        None,
        &w,
        &mut out,
    )
    .unwrap();
    print("krx_fullmarket panel", &out.counters);
    assert_routed(&out.counters);
    let c = &out.counters;
    assert_eq!(c["rows_read"], 452_947);
    let codes: HashSet<&str> = out.bars.iter().map(|b| b.code.as_str()).collect();
    println!("  accepted codes {}", codes.len());
    assert!(out.bars.iter().all(|b| b.date < d("2019-09-18")));
    assert_eq!(codes.len(), 2_259);
    for (k, v) in [
        ("accepted", 428_275),
        ("rejected.provisional", 2_224),
        ("rejected.trading_halt", 11_148),
        ("rejected.zero_volume", 7_152),
        // 464 (code, date) keys appear several times (identical rows): the first is kept.
        ("rejected.duplicate_date", 4_147),
        ("rejected.non_positive_price", 1),
    ] {
        assert_eq!(c.get(k).copied().unwrap_or(0), v, "{k}");
    }
}

#[test]
fn kospi_files_splice_into_one_series_and_yahoo_null_rows_are_rejected() {
    let Some(dir) = data_dir() else { return };
    let base = dir.join("ohlcv/kospi_index");
    let mut out = IndexCollector::default();
    for (f, src) in [
        ("KS11_yahoo_espark11.csv", "yahoo"),
        ("KOSPI_onekindalpha_2023-2026.csv", "onekindalpha"),
    ] {
        let file = std::fs::File::open(base.join(f)).unwrap();
        read_index_csv(file, "KS11", src, (None, d("2026-05-04")), 0.001, &mut out).unwrap();
    }
    print("kospi index", &out.counters);
    assert_routed(&out.counters);
    let c = &out.counters;
    assert_eq!(c["rows_read"], 6_572 + 813);
    assert_eq!(c["rejected.null_value"], 149);
    assert_eq!(
        c["overlap.identical"], 1,
        "2023-01-02 is in both files with equal values"
    );
    assert_eq!(c["accepted"], 6_572 - 149 + 813 - 1);
    let first_2023 = out
        .bars
        .range(("KS11".to_string(), d("2023-01-02"))..)
        .next()
        .unwrap();
    assert!(
        (first_2023.1.close - 2225.67).abs() < 1e-3,
        "{}",
        first_2023.1.close
    );
}

#[test]
fn naver_news_dedupes_list_page_repeats_and_resolves_tickers_from_links() {
    let Some(dir) = data_dir() else { return };
    let folder = dir.join("sentiment/naver_news_dated");
    let mut out = NewsCollector::default();
    let resolver = Resolver::default();
    for f in [
        "samsung_raw_naver_finance_news.csv",
        "hyundai_raw_naver_finance_news.csv",
    ] {
        let file = std::fs::File::open(folder.join(f)).unwrap();
        read_news(file, &NewsColumns::default(), |r, raw| {
            out.push(
                r,
                raw,
                "naver_finance",
                NewsWindow::upto(d("2024-12-16")),
                &resolver,
                None,
            )
        })
        .unwrap();
    }
    print("naver news", &out.counters);
    assert_routed(&out.counters);
    let c = &out.counters;
    assert_eq!(c["rows_read"], 16_321 + 8_297);
    assert_eq!(
        c["accepted"],
        3_714 + 3_506,
        "unique (office_id, article_id) pairs per ticker"
    );
    let per_code = |code: &str| out.articles.iter().filter(|a| a.code == code).count();
    assert_eq!((per_code("005930"), per_code("005380")), (3_714, 3_506));
    assert!(
        out.articles
            .iter()
            .all(|a| a.published_at.time().to_string() == "23:59:59"),
        "date-only news is stamped at the end of its KST day"
    );
}
