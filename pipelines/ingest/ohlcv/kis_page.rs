//! One daily-chart answer as it comes off the wire, without the HTTP: [`classify`] says what
//! the status and body are (a page, the rate limit, an expired token, or an error) and
//! [`page_rows`] takes the rows out of a page. Pure functions of untrusted bytes, so they are
//! fuzzed on their own (`fuzz/fuzz_targets/kis_page.rs`).

use chrono::NaiveDate;
use serde_json::Value;

use super::kis_types::{KisError, KisRow, RATE_LIMITED, TOKEN_EXPIRED};

/// What one daily-chart call answered.
#[derive(Debug)]
pub enum Answer {
    Ok(Value),
    RateLimited,
    TokenExpired,
}

/// The rows of one page: `dated` in the order sent, `malformed` (no valid `stck_bsop_date`,
/// e.g. KIS's blank `{}` padding) kept with their raw JSON for the validator to reject.
#[derive(Debug, Default)]
pub struct Page {
    pub dated: Vec<(NaiveDate, KisRow)>,
    pub malformed: Vec<KisRow>,
}

impl Page {
    /// Rows on the page, dated or not (a full page means there may be older ones).
    pub fn len(&self) -> usize {
        self.dated.len() + self.malformed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest dated row.
    pub fn oldest(&self) -> Option<NaiveDate> {
        self.dated.iter().map(|(d, _)| *d).min()
    }
}

/// A JSON field as text (KIS sends numbers as strings; accept both).
pub(super) fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The first 200 characters of a body, for an error message.
fn head(body: &str) -> String {
    body.chars().take(200).collect()
}

/// Classifies an HTTP answer of the daily chart. `scrub` removes secrets from any text taken
/// from the body (the API could echo them back).
pub fn classify(
    status: u16,
    body: &str,
    scrub: &dyn Fn(&str) -> String,
) -> Result<Answer, KisError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let msg_cd = json.as_ref().map(|v| text(v, "msg_cd")).unwrap_or_default();
    if msg_cd == RATE_LIMITED {
        return Ok(Answer::RateLimited);
    }
    if msg_cd == TOKEN_EXPIRED {
        return Ok(Answer::TokenExpired);
    }
    if status >= 500 && json.is_none() {
        return Err(KisError::Http {
            status,
            msg: scrub(&head(body)),
        });
    }
    if !(200..300).contains(&status) {
        let msg = json
            .as_ref()
            .map(|v| text(v, "msg1"))
            .unwrap_or_else(|| head(body));
        return Err(KisError::Http {
            status,
            msg: scrub(&msg),
        });
    }
    let v = json.ok_or_else(|| KisError::Decode("daily chart body is not JSON".into()))?;
    if text(&v, "rt_cd") != "0" {
        return Err(KisError::Api {
            msg_cd: scrub(&msg_cd),
            msg: scrub(&text(&v, "msg1")),
        });
    }
    Ok(Answer::Ok(v))
}

/// The rows of a successful page (`output2`; absent or null is an empty page).
pub fn page_rows(v: &Value) -> Result<Page, KisError> {
    let items = match v.get("output2") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Null) | None => &[],
        Some(other) => {
            return Err(KisError::Decode(format!(
                "output2 is not an array: {}",
                other.to_string().chars().take(80).collect::<String>()
            )));
        }
    };
    let mut page = Page::default();
    for item in items {
        let row = KisRow {
            date: text(item, "stck_bsop_date"),
            open: text(item, "stck_oprc"),
            high: text(item, "stck_hgpr"),
            low: text(item, "stck_lwpr"),
            close: text(item, "stck_clpr"),
            volume: text(item, "acml_vol"),
            raw: item.to_string(),
        };
        match NaiveDate::parse_from_str(&row.date, "%Y%m%d") {
            Ok(d) => page.dated.push((d, row)),
            Err(_) => page.malformed.push(row),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn message_codes_win_over_the_status_and_errors_are_classified() {
        let rate = r#"{"rt_cd":"1","msg_cd":"EGW00201","msg1":"초당 거래건수를 초과하였습니다."}"#;
        assert!(matches!(
            classify(500, rate, &keep),
            Ok(Answer::RateLimited)
        ));
        let expired = r#"{"rt_cd":"1","msg_cd":"EGW00123","msg1":"expired"}"#;
        assert!(matches!(
            classify(200, expired, &keep),
            Ok(Answer::TokenExpired)
        ));
        let e = classify(502, "<html>bad gateway</html>", &keep).unwrap_err();
        assert!(
            e.is_transient() && e.to_string().contains("bad gateway"),
            "{e}"
        );
        let e = classify(403, r#"{"msg1":"forbidden"}"#, &keep).unwrap_err();
        assert!(
            !e.is_transient() && e.to_string().contains("forbidden"),
            "{e}"
        );
        let e = classify(200, "not json", &keep).unwrap_err();
        assert!(matches!(e, KisError::Decode(_)), "{e}");
        let e = classify(200, r#"{"rt_cd":"7","msg_cd":"X","msg1":"no"}"#, &keep).unwrap_err();
        assert!(matches!(e, KisError::Api { .. }), "{e}");
    }

    #[test]
    fn messages_from_the_body_pass_through_the_scrubber() {
        let scrub = |s: &str| s.replace("SECRET", "<redacted>");
        let e = classify(401, r#"{"msg1":"bad key SECRET"}"#, &scrub).unwrap_err();
        assert_eq!(e.to_string(), "KIS HTTP 401: bad key <redacted>");
        // Every text from the body, the message code too (fuzzing found it passed through).
        let body = r#"{"rt_cd":"5","msg_cd":"MCSECRET00","msg1":"x"}"#;
        let e = classify(200, body, &scrub).unwrap_err();
        assert_eq!(e.to_string(), "KIS API error MC<redacted>00: x");
    }

    #[test]
    fn rows_are_split_into_dated_and_malformed_and_numbers_are_read_as_text() {
        let v: Value = serde_json::from_str(
            r#"{"rt_cd":"0","output2":[
                {"stck_bsop_date":"20241216","stck_oprc":"100","stck_hgpr":101,"stck_lwpr":"99","stck_clpr":"100","acml_vol":"5"},
                {},
                {"stck_bsop_date":"2024-12-13"}]}"#,
        )
        .unwrap();
        let p = page_rows(&v).unwrap();
        assert_eq!((p.dated.len(), p.malformed.len(), p.len()), (1, 2, 3));
        assert_eq!(p.dated[0].1.high, "101");
        assert_eq!(p.oldest(), NaiveDate::from_ymd_opt(2024, 12, 16));
        assert!(
            page_rows(&serde_json::json!({"output2": null}))
                .unwrap()
                .is_empty()
        );
        let e = page_rows(&serde_json::json!({"output2": {"a": 1}})).unwrap_err();
        assert!(e.to_string().contains("not an array"), "{e}");
    }
}
