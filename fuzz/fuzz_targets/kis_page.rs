//! The KIS daily-chart answer parser on arbitrary status and body, followed by the row
//! validator `ingest.ohlcv` runs on each row: no panic, every row of a page is either dated or
//! kept as malformed (none lost), and secrets given to the scrubber never come out in an error.
#![no_main]

use krxflow_pipelines::ingest::kis::KisError;
use krxflow_pipelines::ingest::ohlcv::kis_page::{Answer, classify, page_rows};
use krxflow_pipelines::ingest::ohlcv::{Checked, RawRow, check_row};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "PSsecretAPPKEY";

fuzz_target!(|data: &[u8]| {
    let Some((&s, body)) = data.split_first() else {
        return;
    };
    // Statuses that matter: 2xx, 4xx and 5xx.
    let status = [200u16, 201, 400, 401, 403, 404, 429, 500, 502, 503][usize::from(s) % 10];
    let body = String::from_utf8_lossy(body);
    let scrub = |m: &str| m.replace(SECRET, "<redacted>");
    match classify(status, &body, &scrub) {
        Ok(Answer::Ok(v)) => match page_rows(&v) {
            Ok(page) => {
                let sent = v
                    .get("output2")
                    .and_then(|o| o.as_array())
                    .map_or(0, Vec::len);
                assert_eq!(page.len(), sent, "rows lost between output2 and the page");
                let rows = page.dated.iter().map(|(_, r)| r).chain(&page.malformed);
                for row in rows {
                    let raw = RawRow {
                        code: "005930",
                        date: &row.date,
                        open: &row.open,
                        high: &row.high,
                        low: &row.low,
                        close: &row.close,
                        volume: &row.volume,
                    };
                    if let Checked::Rejected(r) = check_row(&raw, &row.raw, 1.0, 1e-4) {
                        assert!(!r.detail.is_empty(), "a reject without detail: {r:?}");
                    }
                }
            }
            Err(e) => assert!(matches!(e, KisError::Decode(_)), "{e}"),
        },
        Ok(Answer::RateLimited | Answer::TokenExpired) => {}
        Err(e) => assert!(!e.to_string().contains(SECRET), "a secret in an error: {e}"),
    }
});
