//! `ingest.universe`: the `universe` table (code, name, market) from a CSV / CSV.gz listing,
//! e.g. the distinct (code, company_name) pairs of a long price panel. Used by `ingest.news`
//! to resolve tickers from company names in headlines.
//!
//! A code listed with several names keeps the last one in file order (a rename) and counts
//! `renamed`; a row with a bad code or an empty name goes to `universe_rejects`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use async_trait::async_trait;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpError, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::common::rejects::{Reason, Reject, observe_rejects, rejects_batch};
use crate::tables;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniverseParams {
    pub path: String,
    #[serde(default = "code")]
    pub code_column: String,
    #[serde(default = "name")]
    pub name_column: String,
    /// Column with the market (KOSPI/KOSDAQ); absent → `market`.
    #[serde(default)]
    pub market_column: Option<String>,
    #[serde(default = "krx")]
    pub market: String,
}

fn code() -> String {
    "code".into()
}
fn name() -> String {
    "name".into()
}
fn krx() -> String {
    "KRX".into()
}

#[derive(Debug, Default)]
pub struct UniverseCollector {
    /// code -> (name, market)
    pub entries: BTreeMap<String, (String, String)>,
    pub rejects: Vec<Reject>,
    pub counters: BTreeMap<String, i64>,
}

impl UniverseCollector {
    fn count(&mut self, k: &str) {
        // Once per row: no key allocated once the counter exists.
        match self.counters.get_mut(k) {
            Some(n) => *n += 1,
            None => {
                self.counters.insert(k.to_string(), 1);
            }
        }
    }
}

/// Reads a listing into `out`. Only the code, name and market fields of a record are decoded
/// (as UTF-8; a record where one of them is not is an `unparsable` reject), and a record that
/// repeats the previous valid entry byte for byte (a long panel lists a code on every row) is
/// counted as the same entry without being decoded again.
pub fn read_universe<R: std::io::Read>(
    reader: R,
    p: &UniverseParams,
    out: &mut UniverseCollector,
) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(n))
            .ok_or_else(|| format!("column `{n}` not found (have {})", headers.join(",")))
    };
    let (ci, ni) = (find(&p.code_column)?, find(&p.name_column)?);
    let mi = p.market_column.as_deref().map(find).transpose()?;
    let mut rec = csv::ByteRecord::new();
    // Counted locally (once per row), added to the counters at the end.
    let (mut rows_read, mut same_entry) = (0i64, 0i64);
    // The code, name and market fields of the last valid record, as read.
    let mut last: Option<[Vec<u8>; 3]> = None;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                rows_read += 1;
                let field = |i: usize| rec.get(i).unwrap_or(b"");
                let fields = [field(ci), field(ni), mi.map_or(&b""[..], field)];
                if last
                    .as_ref()
                    .is_some_and(|l| l.iter().zip(&fields).all(|(a, b)| a == b))
                {
                    same_entry += 1;
                    continue;
                }
                let raw = || {
                    rec.iter()
                        .map(String::from_utf8_lossy)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                fn text(b: &[u8]) -> Result<&str, std::str::Utf8Error> {
                    std::str::from_utf8(b).map(str::trim)
                }
                let (Ok(code), Ok(name), Ok(market)) = (
                    text(fields[0]),
                    text(fields[1]),
                    mi.map_or(Ok(p.market.as_str()), |_| text(fields[2])),
                ) else {
                    out.count("rejected.unparsable");
                    out.rejects.push(Reject {
                        code: String::from_utf8_lossy(fields[0]).trim().to_string(),
                        date: None,
                        reason: Reason::Unparsable,
                        detail: format!(
                            "invalid UTF-8 in the code, name or market field (line {})",
                            rec.position().map_or(0, |p| p.line())
                        ),
                        raw: raw(),
                    });
                    continue;
                };
                let bad = |reason: Reason, detail: String| Reject {
                    code: code.to_string(),
                    date: None,
                    reason,
                    detail,
                    raw: raw(),
                };
                if code.len() != 6 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
                    out.count("rejected.bad_code");
                    let reject = bad(Reason::BadCode, format!("code `{code}`"));
                    out.rejects.push(reject);
                    continue;
                }
                if name.is_empty() {
                    out.count("rejected.null_value");
                    let reject = bad(Reason::NullValue, "empty name".into());
                    out.rejects.push(reject);
                    continue;
                }
                let held = out.entries.get(code).map(|(n, m)| (n == name, m == market));
                if held != Some((true, true)) {
                    out.entries
                        .insert(code.to_string(), (name.to_string(), market.to_string()));
                }
                match held {
                    None => out.count("accepted"),
                    Some((true, _)) => same_entry += 1,
                    Some((false, _)) => out.count("deduplicated.renamed"),
                }
                last = Some(fields.map(<[u8]>::to_vec));
            }
            Err(e) => {
                rows_read += 1;
                out.count("rejected.unparsable");
                out.rejects.push(Reject {
                    code: String::new(),
                    date: None,
                    reason: Reason::Unparsable,
                    detail: format!("csv: {e}"),
                    raw: String::new(),
                });
            }
        }
    }
    for (key, n) in [
        ("rows_read", rows_read),
        ("deduplicated.same_entry", same_entry),
    ] {
        if n > 0 {
            *out.counters.entry(key.to_string()).or_default() += n;
        }
    }
    Ok(())
}

pub struct IngestUniverse;

struct Configured {
    p: UniverseParams,
}

#[async_trait]
impl Operator for IngestUniverse {
    fn kind(&self) -> &'static str {
        "ingest.universe"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "Codes, company names and markets from a CSV/CSV.gz listing (for ticker resolution)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("path", "string", "CSV or CSV.gz with code and name columns"),
            ParamSpec::optional(
                "code_column",
                "string",
                "code",
                "column with the 6-character code",
            ),
            ParamSpec::optional(
                "name_column",
                "string",
                "name",
                "column with the company name",
            ),
            ParamSpec::optional("market_column", "string", "none", "column with the market"),
            ParamSpec::optional(
                "market",
                "string",
                "KRX",
                "market when there is no market column",
            ),
        ]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::for_table(&tables::universe(), "universe", WriteMode::Merge)
                .doc("one row per code"),
            OutputPort::for_table(&tables::universe_rejects(), "rejects", WriteMode::Merge)
                .doc("rows with a bad code or no name"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(Configured {
            p: parse_params(params)?,
        }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, _inputs: InputBatches) -> OpResult<OutputBatches> {
        let p = self.p.clone();
        let (collected, hit) = tokio::task::spawn_blocking(move || {
            // A listing has no dates to window on: parse it once per process while unchanged.
            super::cache::parsed(&p.path, &format!("{p:?}"), || {
                let file = std::fs::File::open(&p.path)
                    .map_err(|e| OpError::permanent(format!("open {}: {e}", p.path)))?;
                let mut out = UniverseCollector::default();
                if p.path.to_ascii_lowercase().ends_with(".gz") {
                    read_universe(flate2::read::GzDecoder::new(file), &p, &mut out)
                } else {
                    read_universe(file, &p, &mut out)
                }
                .map_err(|e| OpError::permanent(format!("{}: {e}", p.path)))?;
                Ok(out)
            })
        })
        .await
        .map_err(|e| OpError::permanent(format!("universe worker: {e}")))??;
        for (k, v) in &collected.counters {
            ctx.counters.add(k, *v);
        }
        observe_rejects(
            ctx,
            "rejects",
            collected.rejects.iter().map(|r| r.reason.code()),
        );
        if hit {
            ctx.counters.add("source_cache_hits", 1);
        }
        let e = &collected.entries;
        let batch = RecordBatch::try_new(
            tables::universe().schema,
            vec![
                Arc::new(StringArray::from_iter_values(e.keys())) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    e.values().map(|v| v.0.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    e.values().map(|v| v.1.as_str()),
                )),
            ],
        )?;
        let label = format!("universe:{}", self.p.path.rsplit('/').next().unwrap_or(""));
        Ok(OutputBatches::new().with("universe", vec![batch]).with(
            "rejects",
            vec![rejects_batch(&collected.rejects, &label, ctx.ds)?],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panel's listing: code and `company_name` columns, no market column.
    fn listing_params() -> UniverseParams {
        UniverseParams {
            path: String::new(),
            code_column: "code".into(),
            name_column: "company_name".into(),
            market_column: None,
            market: "KRX".into(),
        }
    }

    #[test]
    fn a_panel_listing_collapses_to_one_row_per_code_and_bad_rows_are_rejected() {
        let csv = "code,date,company_name\n000020,2018-11-26,동화약품\n000020,2018-11-27,동화약품\n\
                   005930,2018-11-26,삼성전자\n12345,2018-11-26,잘못된코드\n000040,2018-11-26,\n\
                   000050,2018-11-26,경방\n000050,2018-11-27,경방홀딩스\n";
        let p = listing_params();
        let mut out = UniverseCollector::default();
        read_universe(csv.as_bytes(), &p, &mut out).unwrap();
        assert_eq!(out.entries.len(), 3);
        assert_eq!(out.entries["000050"].0, "경방홀딩스", "the later name wins");
        let c = &out.counters;
        assert_eq!(
            (
                c["accepted"],
                c["deduplicated.same_entry"],
                c["deduplicated.renamed"]
            ),
            (3, 1, 1)
        );
        assert_eq!((c["rejected.bad_code"], c["rejected.null_value"]), (1, 1));
        assert_eq!(out.rejects.len(), 2);
    }

    #[test]
    fn repeats_count_once_decoded_and_only_the_fields_read_must_be_utf8() {
        let mut csv: Vec<u8> = b"code,price,company_name\n".to_vec();
        csv.extend("000020,1,동화약품\n".as_bytes());
        csv.extend(b"000020,\xff,"); // a field the listing does not read, not UTF-8
        csv.extend("동화약품\n".as_bytes());
        csv.extend(b"000020,\xff,\xff\n"); // the name is not UTF-8
        csv.extend("12345,1,잘못된코드\n12345,1,잘못된코드\n".as_bytes()); // a bad row, twice
        csv.extend("005930,1,삼성전자\n000020,1,동화약품\n".as_bytes());
        let p = listing_params();
        let mut out = UniverseCollector::default();
        read_universe(csv.as_slice(), &p, &mut out).unwrap();
        let c = &out.counters;
        assert_eq!(c["rows_read"], 7);
        assert_eq!((c["accepted"], c["deduplicated.same_entry"]), (2, 2));
        assert_eq!((c["rejected.unparsable"], c["rejected.bad_code"]), (1, 2));
        let reasons: Vec<&str> = out.rejects.iter().map(|r| r.reason.code()).collect();
        assert_eq!(reasons, ["unparsable", "bad_code", "bad_code"]);
        assert!(
            out.rejects[0].detail.contains("line 4"),
            "{:?}",
            out.rejects[0]
        );
        assert_eq!(out.entries["000020"].0, "동화약품");
    }
}
