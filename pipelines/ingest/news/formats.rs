//! News records from files: the formats (CSV, JSON Lines, RSS/Atom), the field mapping
//! ([`NewsColumns`]), the raw record ([`RawNews`]) and its KST publication time.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Asia::Seoul;
use krxflow_core::{OpError, OpResult};
use serde::Deserialize;

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

/// Parses a KST date or date-time. Date-only values become 23:59:59 that day.
pub fn parse_published(date: &str, time: Option<&str>) -> Option<NaiveDateTime> {
    let date = date.trim();
    if let Some(at) = fixed_width(date, time) {
        return Some(at);
    }
    by_formats(date, time)
}

/// The two shapes the news sources write, read digit by digit: `YYYY-MM-DD HH:MM:SS` and a
/// date alone (`YYYY.MM.DD`, `YYYY-MM-DD` or `YYYY/MM/DD`, trailing dots allowed). chrono's
/// format reader tried up to seven formats per record (a date alone matches only the
/// seventh), a fifth of the news ingest. `None` for anything else, a date that does not exist
/// included, which then goes through [`by_formats`]: the same values either way (tested).
fn fixed_width(date: &str, time: Option<&str>) -> Option<NaiveDateTime> {
    let b = date.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let day = |sep: u8| -> Option<NaiveDate> {
        if b.get(4) != Some(&sep) || b.get(7) != Some(&sep) {
            return None;
        }
        let year = i32::try_from(num(0..4)?).ok()?;
        NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?)
    };
    if b.len() == 19 && b[10] == b' ' && b[13] == b':' && b[16] == b':' {
        let t = NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
        return Some(day(b'-')?.and_time(t));
    }
    let undotted = date.trim_end_matches('.');
    if undotted.len() != 10 {
        return None;
    }
    let d = [b'.', b'-', b'/'].into_iter().find_map(day)?;
    Some(d.and_time(time_of_day(time)?))
}

/// The time of a date-only value: its separate time field, else the end of the day.
fn time_of_day(time: Option<&str>) -> Option<NaiveTime> {
    match time.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok(),
        None => NaiveTime::from_hms_opt(23, 59, 59),
    }
}

/// Every date and date-time format the sources are known to use, tried in order.
fn by_formats(date: &str, time: Option<&str>) -> Option<NaiveDateTime> {
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
    Some(day.and_time(time_of_day(time)?))
}

/// One record of a news file as parsed, with its publication time: what the per-process cache
/// keeps, so a later run only routes records (see [`crate::ingest::cache`]).
#[derive(Debug)]
pub struct ParsedNews {
    pub rec: RawNews,
    pub raw: String,
    pub at: Option<NaiveDateTime>,
}

/// Every record of one news file.
pub(super) fn parse_file(
    f: &Path,
    format: Format,
    cols: &NewsColumns,
) -> OpResult<Vec<ParsedNews>> {
    let bytes =
        std::fs::read(f).map_err(|e| OpError::transient(format!("open {}: {e}", f.display())))?;
    // UTF-8, UTF-16 with a BOM or CP949/EUC-KR; anything else is this file's permanent error.
    let (text, _) = crate::ingest::decode::decode_text(&bytes)
        .map_err(|e| OpError::permanent(format!("{}: {e}", f.display())))?;
    let file = text.as_bytes();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_width_reader_gives_what_the_formats_give() {
        let dates = [
            "2022.06.10",
            "2022-06-10",
            "2022/06/10",
            "2022.06.10.",
            "2022.06.10..",
            "  2022.06.10 ",
            "20220610",
            "2022-06-10 15:34:00",
            "2022-06-10 23:59:60",
            "2022-06-10 24:00:00",
            "2022-06-10T15:34:00",
            "2022.06.10 15:34",
            "2022-06-10 15:34",
            "2022/06/10 15:34:00",
            "2022/06/10 15:34",
            "2022-06-10T00:30:00Z",
            "2022.02.30",
            "2022-13-01",
            "2022.6.10",
            "2022.06-10",
            "2022-06-10 1:34:00",
            "+022-06-10",
            "2022-06-1a",
            "",
            "1월 3일",
        ];
        for date in dates {
            for time in [
                None,
                Some("09:30"),
                Some("09:30:15"),
                Some(" "),
                Some("9시"),
            ] {
                assert_eq!(
                    parse_published(date, time),
                    by_formats(date.trim(), time),
                    "{date:?} {time:?}"
                );
            }
        }
        // The fast path is taken for the sources' shapes.
        assert!(fixed_width("2022.06.10", None).is_some());
        assert!(fixed_width("2019-12-13 15:34:00", None).is_some());
    }
}
