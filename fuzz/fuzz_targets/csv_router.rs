//! The OHLCV CSV path on arbitrary bytes, as `ingest.ohlcv` runs it: decode (UTF-8, UTF-16,
//! CP949), parse with the header's layout, route every record through a run's window. It must
//! never panic, and every record read must end accepted, rejected with a reason or counted out
//! of scope: nothing disappears. Accepted bars must be valid bars.
#![no_main]

use std::collections::HashSet;

use chrono::NaiveDate;
use krxflow_pipelines::ingest::decode::decode_text;
use krxflow_pipelines::ingest::ohlcv::{Collector, Columns, Window, parse_csv, route_csv};
use krxflow_schedule::KrxCalendar;
use libfuzzer_sys::fuzz_target;

static CALENDAR: std::sync::LazyLock<KrxCalendar> = std::sync::LazyLock::new(KrxCalendar::new);

fuzz_target!(|data: &[u8]| {
    // The first byte picks the layout: a per-ticker file (code from the file name, Yahoo's
    // `Date` column) or a panel with a code column.
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let per_file = mode & 1 == 0;
    let Ok((text, _encoding)) = decode_text(bytes) else {
        return;
    };
    let cols = if per_file {
        Columns {
            date: "Date".into(),
            ..Columns::default()
        }
    } else {
        Columns::default()
    };
    let Ok(parsed) = parse_csv(text.as_bytes(), &cols, per_file) else {
        return;
    };
    let ds = NaiveDate::from_ymd_opt(2024, 12, 16).expect("a date");
    let provisional: HashSet<NaiveDate> = [ds].into();
    let w = Window {
        ds,
        from: (mode & 2 != 0).then(|| NaiveDate::from_ymd_opt(2020, 1, 1).expect("a date")),
        codes: None,
        provisional: &provisional,
        calendar: &*CALENDAR,
        tol_abs: 1.0,
        tol_rel: 1e-4,
    };
    let mut out = Collector::default();
    route_csv(&parsed, per_file.then_some("005930"), &w, &mut out);

    let count = |prefix: &str| -> i64 {
        out.counters
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    let read = count("rows_read");
    let accepted = count("accepted");
    let rejected = count("rejected.");
    let out_of_scope = count("out_of_scope.");
    assert_eq!(
        read,
        accepted + rejected + out_of_scope,
        "a row disappeared: {:?}",
        out.counters
    );
    assert_eq!(out.bars.len() as i64, accepted);
    assert_eq!(out.rejects.len() as i64, rejected);
    for b in &out.bars {
        let prices = [b.open, b.high, b.low, b.close];
        assert!(prices.iter().all(|p| p.is_finite() && *p > 0.0), "{b:?}");
        assert!(
            b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close),
            "{b:?}"
        );
        assert!(b.volume > 0 && b.date <= ds, "{b:?}");
    }
    for r in &out.rejects {
        assert!(
            !r.detail.is_empty(),
            "a reject without its reason's detail: {r:?}"
        );
    }
});
