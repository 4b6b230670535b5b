//! The bad-input corpus (issue 17): one folder of per-ticker files with every quirk a broker
//! export or a data vendor has produced, read by `ingest.ohlcv` on the KRX calendar. Every
//! row ends accepted, rejected with the one precise reason it deserves, or out of scope; each
//! unreadable file is quarantined alone; the good files' bars are the same whatever their
//! encoding or compression; nothing panics.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use krxflow_core::parse_params;
use krxflow_schedule::KrxCalendar;

use super::Configured;
use crate::common::rejects::{MAX_DETAIL, MAX_RAW, Reason, clip, rejects_batch};
use crate::testutil::{d, noise, utf16le_with_bom};

const HEADER: &str = "Date,Open,High,Low,Close,Volume,Change\n";
/// Five good trading days (Monday 9 to Friday 13 December 2024).
const GOOD: &str = "2024-12-09,100,110,90,105,1000,0.01\n\
                    2024-12-10,105,112,101,110,1200,0.047\n\
                    2024-12-11,110,111,100,101,900,-0.08\n\
                    2024-12-12,101,104,99,103,800,0.02\n\
                    2024-12-13,103,108,102,107,1500,0.039\n";

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One file of the corpus: its name, bytes, the bars expected and the rejects by reason.
type Case = (&'static str, Vec<u8>, i64, Vec<(Reason, i64)>);

fn corpus() -> Vec<Case> {
    let good = format!("{HEADER}{GOOD}");
    let with_bom = format!("\u{feff}{good}");
    let mut utf16be = vec![0xFE, 0xFF];
    utf16be.extend(good.encode_utf16().flat_map(u16::to_be_bytes));
    let korean = good
        .replace("Change\n", "Change,종목명\n")
        .replace("0.01\n", "0.01,삼성전자\n");
    let (cp949, _, lossy) = encoding_rs::EUC_KR.encode(&korean);
    assert!(!lossy);
    let mut big_gz = gz(good.as_bytes());
    big_gz.truncate(big_gz.len() / 2);
    let huge_field = format!(
        "{HEADER}2024-12-09,100,110,90,{},1000,0\n2024-12-10,105,112,101,110,1200,0\n",
        "7".repeat(2_000_000) + "x"
    );
    let not_numbers = format!(
        "{HEADER}2024-12-09,NaN,110,90,105,1000,0\n2024-12-10,105,inf,101,110,1200,0\n\
         2024-12-11,110,111,100,101,-Infinity,0\n2024-12-12,101,104,99,103,800,0\n"
    );
    let negative =
        format!("{HEADER}2024-12-09,100,110,90,105,-1000,0\n2024-12-10,105,112,101,110,1200,0\n");
    let shuffled = {
        let mut rows: Vec<&str> = GOOD.lines().collect();
        rows.reverse();
        rows.swap(1, 3);
        format!("{HEADER}{}\n", rows.join("\n"))
    };
    // Thursday 3 October 2024 is National Foundation Day; 5 October is a Saturday.
    let closed_days = format!(
        "{HEADER}2024-10-02,100,110,90,105,1000,0\n2024-10-03,105,112,101,110,1200,0\n\
         2024-10-05,110,111,100,101,900,0\n2024-10-04,101,104,99,103,800,0\n"
    );
    let short =
        format!("{HEADER}2024-12-09,100,110\n2024-12-10,105,112,101,110,1200\n2024-12-11\n");
    let duplicate =
        format!("{HEADER}2024-12-09,100,110,90,105,1000,0\n2024-12-09,100,110,90,105,1000,0\n");
    // The quirks of ../shared/data's README: a split halt (O/H/L = 0, volume 0), a priced day
    // with volume 0, Yahoo's `null` rows, and adjusted prices 1 KRW outside the high/low.
    let vendor = format!(
        "{HEADER}2018-04-30,0,0,0,53000,0,0\n2018-05-02,53000,53500,52000,53000,0,0\n\
         2018-05-03,null,null,null,null,null,0\n2018-05-04,53000,52999,51000,52999,100,0\n\
         2018-05-08,53000,53900,53001,53000,100,0\n2018-05-09,53000,52000,54000,53000,100,0\n\
         2018-05-10,-5,1,1,1,1,0\n"
    );
    vec![
        ("000001.csv", good.clone().into_bytes(), 5, vec![]),
        ("000002.csv", with_bom.into_bytes(), 5, vec![]),
        ("000003.csv", utf16le_with_bom(&good), 5, vec![]),
        ("000004.csv", utf16be, 5, vec![]),
        ("000005.csv", cp949.into_owned(), 5, vec![]),
        ("000006.csv.gz", gz(good.as_bytes()), 5, vec![]),
        (
            "000007.CSV.GZ",
            big_gz,
            0,
            vec![(Reason::UnreadableFile, 1)],
        ),
        (
            "000008.csv",
            noise(4096),
            0,
            vec![(Reason::UnreadableFile, 1)],
        ),
        (
            "000009.csv",
            Vec::new(),
            0,
            vec![(Reason::UnreadableFile, 1)],
        ),
        ("000010.csv", HEADER.as_bytes().to_vec(), 0, vec![]),
        (
            "000011.csv",
            huge_field.into_bytes(),
            1,
            vec![(Reason::Unparsable, 1)],
        ),
        (
            "000012.csv",
            not_numbers.into_bytes(),
            1,
            vec![(Reason::NullValue, 1), (Reason::NonFinite, 2)],
        ),
        (
            "000013.csv",
            negative.into_bytes(),
            1,
            vec![(Reason::NegativeVolume, 1)],
        ),
        ("000014.csv", shuffled.into_bytes(), 5, vec![]),
        (
            "000015.csv",
            closed_days.into_bytes(),
            2,
            vec![(Reason::NonTradingDay, 2)],
        ),
        // A row without its close and volume is short, not null; the one missing only the
        // unread `Change` column holds every value the ingest reads.
        (
            "000016.csv",
            short.into_bytes(),
            1,
            vec![(Reason::ShortRow, 2)],
        ),
        (
            "000017.csv",
            duplicate.into_bytes(),
            1,
            vec![(Reason::DuplicateDate, 1)],
        ),
        (
            "000018.csv",
            vendor.into_bytes(),
            2,
            vec![
                (Reason::NullValue, 1),
                (Reason::NonPositivePrice, 1),
                (Reason::InconsistentHighLow, 1),
                (Reason::TradingHalt, 1),
                (Reason::ZeroVolume, 1),
            ],
        ),
        ("README.txt", b"not a price file".to_vec(), 0, vec![]),
    ]
}

#[test]
fn every_row_of_the_bad_input_corpus_is_accepted_or_rejected_with_its_precise_reason() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus();
    for (name, bytes, _, _) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let op = Configured {
        p: parse_params(&serde_json::json!({
            "source": "csv_dir",
            "path": dir.path().to_str().unwrap(),
        }))
        .unwrap(),
    };
    let out = op
        .ingest(d("2024-12-13"), None, &KrxCalendar::new())
        .expect("bad files never fail the ingest");

    // Per file: the bars and the reasons expected, nothing more, nothing less.
    for (name, _, accepted, reasons) in &files {
        let code = name.split('.').next().unwrap();
        if *name == "README.txt" {
            continue;
        }
        let got_bars = out.bars.iter().filter(|b| b.code == code).count() as i64;
        let mut got: BTreeMap<Reason, i64> = BTreeMap::new();
        for r in out.rejects.iter().filter(|r| r.code == code) {
            *got.entry(r.reason).or_default() += 1;
        }
        let want: BTreeMap<Reason, i64> = reasons.iter().copied().collect();
        assert_eq!((got_bars, &got), (*accepted, &want), "{name}");
    }

    // Every row accounted for: read = accepted + rejected + out of scope; whole files
    // quarantined are rejects too, and counted as such.
    let c = |k: &str| out.counters.get(k).copied().unwrap_or(0);
    let sum = |prefix: &str| -> i64 {
        out.counters
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(c("files_quarantined"), 3);
    assert_eq!(c("files_skipped.not_csv"), 1);
    assert_eq!(
        c("rows_read"),
        c("accepted") + sum("rejected.") - c("files_quarantined") + sum("out_of_scope."),
        "{:?}",
        out.counters
    );
    assert_eq!(c("repaired.high_low_rounding"), 2);

    // Every encoding and the gzip give the same bars as the plain file.
    let bars_of = |code: &str| -> Vec<(chrono::NaiveDate, [f64; 4], i64)> {
        let mut v: Vec<_> = out
            .bars
            .iter()
            .filter(|b| b.code == code)
            .map(|b| (b.date, [b.open, b.high, b.low, b.close], b.volume))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    };
    for code in ["000002", "000003", "000004", "000005", "000006", "000014"] {
        assert_eq!(bars_of(code), bars_of("000001"), "{code}");
    }

    // The quarantined files say why.
    let why = |code: &str| -> &str {
        &out.rejects
            .iter()
            .find(|r| r.code == code)
            .expect("a reject")
            .detail
    };
    assert!(why("000007").contains("gzip"), "{}", why("000007"));
    assert!(why("000009").contains("empty file"), "{}", why("000009"));
    assert!(why("000015").contains("not a trading day on calendar `krx`"));
    assert!(
        why("000016").contains("fields where the header has 7"),
        "{}",
        why("000016")
    );

    // The 2 MB field: its reason quotes a few bytes and says how long it was; the rejects
    // table keeps a clipped row, and the batch builds.
    let huge = out.rejects.iter().find(|r| r.code == "000011").unwrap();
    assert!(
        huge.detail.len() < 200 && huge.detail.contains("bytes in all"),
        "{}",
        huge.detail
    );
    assert!(clip(&huge.raw, MAX_RAW).len() <= MAX_RAW + 64);
    let batch = rejects_batch(&out.rejects, "csv_dir", d("2024-12-13")).unwrap();
    assert_eq!(batch.num_rows(), out.rejects.len());
    assert!(
        out.rejects
            .iter()
            .all(|r| clip(&r.detail, MAX_DETAIL).len() <= MAX_DETAIL + 64)
    );
}

#[test]
fn a_truncated_panel_keeps_the_rows_before_the_cut_and_rejects_the_rest_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("code,date,open,high,low,close,volume\n");
    for day in 2..=27 {
        let date = chrono::NaiveDate::from_ymd_opt(2024, 12, day).unwrap();
        if chrono::Datelike::weekday(&date).number_from_monday() > 5 || day == 25 {
            continue;
        }
        for code in 0..400 {
            body.push_str(&format!("{code:06},{date},100,110,90,105,1000\n"));
        }
    }
    let mut bytes = gz(body.as_bytes());
    bytes.truncate(bytes.len() * 2 / 3);
    let path = dir.path().join("panel.csv.gz");
    std::fs::write(&path, bytes).unwrap();
    let op = Configured {
        p: parse_params(&serde_json::json!({
            "source": "panel",
            "path": path.to_str().unwrap(),
        }))
        .unwrap(),
    };
    let out = op
        .ingest(d("2024-12-27"), None, &KrxCalendar::new())
        .expect("a truncated panel is not a crash");
    let c = |k: &str| out.counters.get(k).copied().unwrap_or(0);
    assert_eq!(c("files_truncated"), 1, "{:?}", out.counters);
    assert!(c("accepted") > 1000, "{:?}", out.counters);
    let cut = out
        .rejects
        .iter()
        .find(|r| r.reason == Reason::UnreadableFile)
        .expect("the cut is a reject");
    assert!(
        cut.detail.starts_with("stream failed after"),
        "{}",
        cut.detail
    );
    // Rows read are the records before the cut (the last may be a partial line: rejected).
    assert_eq!(
        c("rows_read"),
        c("accepted") + out.rejects.len() as i64 - 1,
        "{:?}",
        out.counters
    );
}
