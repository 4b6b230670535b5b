//! A blocking client for the Korea Investment & Securities (KIS) Open API daily chart,
//! used by `ingest.ohlcv` with `source: kis`.
//!
//! * Daily chart TR `FHKST03010100`:
//!   `GET /uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice`. At most 100 rows a
//!   call, newest first in `output2`; rows are returned ascending.
//! * `FID_ORG_ADJ_PRC`: KIS documents `0` = adjusted prices (수정주가 반영) and `1` = original
//!   prices (원주가); the client sends `0` when `adjusted` is true (the default). The issue text
//!   said `1` for adjusted; KIS's own API guide and its published sample clients say otherwise,
//!   and the API is what counts.
//! * OAuth: `POST /oauth2/tokenP` issues a bearer token (KIS allows about one issue a minute);
//!   it is kept for the client's life and optionally cached in a file (mode 0600) reused until
//!   10 minutes before it expires. An `EGW00123` (expired token) answer re-issues it once.
//! * Paging by date window: when a page is full, the next request ends the day before the
//!   oldest row received, until a short or empty page, or the window start.
//! * Rate limit `EGW00201` (and HTTP 5xx) is retried with exponential backoff; other API
//!   errors and 4xx are permanent.
//! * Credentials come from the environment only and never appear in `Debug` output or error
//!   messages.
//! * A malformed row is returned with empty fields and its raw JSON, so the caller's
//!   validator rejects it with a reason rather than it disappearing.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;
use serde_json::Value;

use super::kis_page::{Answer, classify, page_rows};
use super::kis_types::TOKEN_EXPIRED;
// The API's constants and types live in `kis_types.rs`; re-exported at their old paths.
pub use super::kis_types::{
    DAILY_CHART_PATH, KisConfig, KisError, KisRow, KisStats, TOKEN_PATH, TR_DAILY_CHART,
};

#[derive(Clone)]
struct Token {
    value: String,
    /// Unix seconds.
    expires_at: u64,
}

pub struct KisClient {
    cfg: KisConfig,
    key: String,
    secret: String,
    token: Option<Token>,
    agent: ureq::Agent,
    pub stats: KisStats,
}

impl std::fmt::Debug for KisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KisClient")
            .field("cfg", &self.cfg)
            .field("credentials", &"<redacted>")
            .field("has_token", &self.token.is_some())
            .field("stats", &self.stats)
            .finish()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl KisClient {
    /// Reads the credentials from the environment variables named in `cfg`.
    pub fn new(cfg: KisConfig) -> Result<Self, KisError> {
        let key = std::env::var(&cfg.app_key_env)
            .map_err(|_| KisError::MissingCredential(cfg.app_key_env.clone()))?;
        let secret = std::env::var(&cfg.app_secret_env)
            .map_err(|_| KisError::MissingCredential(cfg.app_secret_env.clone()))?;
        Ok(Self::with_credentials(cfg, key, secret))
    }

    pub fn with_credentials(cfg: KisConfig, key: String, secret: String) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            cfg,
            key,
            secret,
            token: None,
            agent,
            stats: KisStats::default(),
        }
    }

    /// Removes the credentials and the token from a message (defence in depth: the API
    /// could echo them back).
    fn scrub(&self, msg: &str) -> String {
        let mut m = msg.to_string();
        for s in [
            Some(&self.key),
            Some(&self.secret),
            self.token.as_ref().map(|t| &t.value),
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        {
            m = m.replace(s.as_str(), "<redacted>");
        }
        m
    }

    fn load_cached_token(&self) -> Option<Token> {
        let path = self.cfg.token_cache.as_ref()?;
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        let value = v.get("access_token")?.as_str()?.to_string();
        let expires_at = v.get("expires_at")?.as_u64()?;
        (expires_at > now_secs() + 600 && !value.is_empty()).then_some(Token { value, expires_at })
    }

    fn store_cached_token(&self, t: &Token) {
        let Some(path) = &self.cfg.token_cache else {
            return;
        };
        let body = serde_json::json!({"access_token": t.value, "expires_at": t.expires_at});
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, body.to_string()).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
            }
            let _ = std::fs::rename(&tmp, path);
        }
    }

    fn token(&mut self) -> Result<String, KisError> {
        if let Some(t) = &self.token
            && t.expires_at > now_secs() + 600
        {
            return Ok(t.value.clone());
        }
        if let Some(t) = self.load_cached_token() {
            self.token = Some(t.clone());
            return Ok(t.value);
        }
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "appkey": self.key,
            "appsecret": self.secret,
        })
        .to_string();
        let url = format!("{}{TOKEN_PATH}", self.cfg.base_url);
        self.stats.http_calls += 1;
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .send(&body)
            .map_err(|e| KisError::Transport(self.scrub(&e.to_string())))?;
        let status = resp.status().as_u16();
        let text_body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| KisError::Transport(self.scrub(&e.to_string())))?;
        if status != 200 {
            return Err(KisError::Http {
                status,
                msg: self.scrub(&format!("token issue refused: {text_body}")),
            });
        }
        let v: Value = serde_json::from_str(&text_body)
            .map_err(|e| KisError::Decode(format!("token response: {e}")))?;
        let value = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| KisError::Decode("token response has no access_token".into()))?
            .to_string();
        let ttl = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(86_400);
        let t = Token {
            value,
            expires_at: now_secs() + ttl,
        };
        self.stats.token_issues += 1;
        self.store_cached_token(&t);
        self.token = Some(t.clone());
        Ok(t.value)
    }

    /// One GET of the daily chart (no retry).
    fn get_page(&mut self, code: &str, from: NaiveDate, to: NaiveDate) -> Result<Answer, KisError> {
        let token = self.token()?;
        let url = format!("{}{DAILY_CHART_PATH}", self.cfg.base_url);
        self.stats.http_calls += 1;
        let result = self
            .agent
            .get(&url)
            .header("content-type", "application/json; charset=utf-8")
            .header("authorization", &format!("Bearer {token}"))
            .header("appkey", &self.key)
            .header("appsecret", &self.secret)
            .header("tr_id", TR_DAILY_CHART)
            .header("custtype", "P")
            .query("FID_COND_MRKT_DIV_CODE", "J")
            .query("FID_INPUT_ISCD", code)
            .query("FID_INPUT_DATE_1", from.format("%Y%m%d").to_string())
            .query("FID_INPUT_DATE_2", to.format("%Y%m%d").to_string())
            .query("FID_PERIOD_DIV_CODE", "D")
            .query("FID_ORG_ADJ_PRC", if self.cfg.adjusted { "0" } else { "1" })
            .call();
        let mut resp = result.map_err(|e| KisError::Transport(self.scrub(&e.to_string())))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| KisError::Transport(self.scrub(&e.to_string())))?;
        classify(status, &body, &|m| self.scrub(m))
    }

    /// One page with retries for the rate limit, 5xx and an expired token.
    fn page(&mut self, code: &str, from: NaiveDate, to: NaiveDate) -> Result<Value, KisError> {
        let mut attempt = 0u32;
        let mut reissued = false;
        loop {
            attempt += 1;
            let retry = match self.get_page(code, from, to) {
                Ok(Answer::Ok(v)) => return Ok(v),
                Ok(Answer::TokenExpired) if !reissued => {
                    reissued = true;
                    self.token = None;
                    if let Some(p) = &self.cfg.token_cache {
                        let _ = std::fs::remove_file(p);
                    }
                    continue;
                }
                Ok(Answer::TokenExpired) => {
                    return Err(KisError::Api {
                        msg_cd: TOKEN_EXPIRED.into(),
                        msg: "token refused again after re-issue".into(),
                    });
                }
                Ok(Answer::RateLimited) => KisError::RateLimited { attempts: attempt },
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            if attempt > self.cfg.max_retries {
                return Err(retry);
            }
            self.stats.retries += 1;
            let factor = 1u32 << (attempt - 1).min(10);
            std::thread::sleep(self.cfg.backoff_base.saturating_mul(factor));
        }
    }

    /// Daily bars of `code` in `[from, to]`, ascending by date.
    pub fn daily_bars(
        &mut self,
        code: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<KisRow>, KisError> {
        let mut rows: std::collections::BTreeMap<String, KisRow> = Default::default();
        let mut malformed = Vec::new();
        let mut end = to;
        while end >= from {
            let v = self.page(code, from, end)?;
            self.stats.pages += 1;
            let page = page_rows(&v)?;
            let (n, oldest) = (page.len(), page.oldest());
            for (_, row) in page.dated {
                rows.entry(row.date.clone()).or_insert(row);
            }
            malformed.extend(page.malformed);
            match oldest {
                // A server that ignores the window would send the same full page forever.
                Some(o) if n >= self.cfg.page_size && o > end => {
                    return Err(KisError::Decode(format!(
                        "paging did not move back: the oldest row of a full page ({o}) is \
                         after the requested end ({end})"
                    )));
                }
                Some(o) if n >= self.cfg.page_size && o > from => {
                    end = o - chrono::Duration::days(1);
                }
                _ => break,
            }
        }
        let mut out: Vec<KisRow> = rows.into_values().collect();
        out.extend(malformed);
        Ok(out)
    }
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::kis_server::{KEY, SECRET, TOKEN, days_desc, rows_json, server};
    use super::*;

    fn client(base: &str) -> KisClient {
        KisClient::with_credentials(
            KisConfig {
                base_url: base.into(),
                backoff_base: Duration::from_millis(1),
                max_retries: 3,
                timeout: Duration::from_secs(5),
                ..KisConfig::default()
            },
            KEY.into(),
            SECRET.into(),
        )
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    const RATE: &str =
        r#"{"rt_cd":"1","msg_cd":"EGW00201","msg1":"초당 거래건수를 초과하였습니다."}"#;

    #[test]
    fn a_page_comes_back_ascending_with_the_documented_headers_and_query() {
        let dates = days_desc("2024-12-09", "2024-12-13");
        let (base, seen) = server(vec![(200, rows_json(&dates))]);
        let mut c = client(&base);
        let rows = c
            .daily_bars("005930", d("2024-12-09"), d("2024-12-13"))
            .unwrap();
        let got: Vec<&str> = rows.iter().map(|r| r.date.as_str()).collect();
        assert_eq!(
            got,
            ["20241209", "20241210", "20241211", "20241212", "20241213"]
        );
        assert_eq!(rows[0].close, "70500");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "token + one page");
        assert_eq!(seen[0].method, "POST");
        let get = &seen[1];
        assert_eq!(get.method, "GET");
        assert!(get.target.starts_with(DAILY_CHART_PATH));
        assert_eq!(get.header("tr_id"), Some(TR_DAILY_CHART));
        assert_eq!(
            get.header("authorization").unwrap(),
            format!("Bearer {TOKEN}")
        );
        assert_eq!(get.header("appkey"), Some(KEY));
        assert_eq!(
            get.query("FID_ORG_ADJ_PRC").as_deref(),
            Some("0"),
            "0 = adjusted"
        );
        assert_eq!(get.query("FID_INPUT_ISCD").as_deref(), Some("005930"));
        assert_eq!(get.query("FID_INPUT_DATE_1").as_deref(), Some("20241209"));
        assert_eq!(get.query("FID_INPUT_DATE_2").as_deref(), Some("20241213"));
        assert_eq!(get.query("FID_PERIOD_DIV_CODE").as_deref(), Some("D"));
    }

    #[test]
    fn full_pages_are_followed_by_a_window_ending_before_the_oldest_row() {
        let all = days_desc("2024-01-01", "2024-12-13"); // 250 weekdays
        let (p1, rest) = all.split_at(100);
        let (p2, p3) = rest.split_at(100);
        let (base, seen) = server(vec![
            (200, rows_json(p1)),
            (200, rows_json(p2)),
            (200, rows_json(p3)),
        ]);
        let mut c = client(&base);
        let rows = c
            .daily_bars("005930", d("2024-01-01"), d("2024-12-13"))
            .unwrap();
        assert_eq!(rows.len(), all.len());
        assert!(
            rows.windows(2).all(|w| w[0].date < w[1].date),
            "ascending, no repeats"
        );
        assert_eq!(c.stats.pages, 3);
        let seen = seen.lock().unwrap();
        let oldest_p1 = p1.last().unwrap();
        let want_end = (*oldest_p1 - chrono::Duration::days(1))
            .format("%Y%m%d")
            .to_string();
        assert_eq!(seen[2].query("FID_INPUT_DATE_2"), Some(want_end));
    }

    #[test]
    fn a_server_that_ignores_the_window_is_an_error_not_an_endless_loop() {
        // The same full page answered to every request: paging cannot move back.
        let page = rows_json(&days_desc("2024-07-01", "2024-12-13")[..100]);
        let (base, _seen) = server(vec![(200, page.clone()), (200, page.clone()), (200, page)]);
        let mut c = client(&base);
        let e = c
            .daily_bars("005930", d("2024-01-01"), d("2024-12-13"))
            .unwrap_err();
        assert!(e.to_string().contains("paging did not move back"), "{e}");
        assert!(!e.is_transient());
        // It stopped at the first repeat.
        assert_eq!(c.stats.pages, 2);
    }

    #[test]
    fn rate_limit_answers_are_retried_with_backoff_then_succeed() {
        let dates = days_desc("2024-12-12", "2024-12-13");
        let (base, _) = server(vec![
            (500, RATE.into()),
            (500, RATE.into()),
            (200, rows_json(&dates)),
        ]);
        let mut c = client(&base);
        let rows = c
            .daily_bars("005930", d("2024-12-12"), d("2024-12-13"))
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(c.stats.retries, 2);
    }

    #[test]
    fn a_rate_limit_that_never_lifts_is_a_transient_error() {
        let (base, _) = server(vec![(500, RATE.into()); 10]);
        let mut c = client(&base);
        let err = c
            .daily_bars("005930", d("2024-12-12"), d("2024-12-13"))
            .unwrap_err();
        assert!(
            matches!(err, KisError::RateLimited { attempts: 4 }),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn malformed_rows_are_returned_with_their_raw_text_not_dropped() {
        let body = r#"{"rt_cd":"0","msg_cd":"MCA00000","msg1":"ok","output2":[{"stck_bsop_date":"20241213","stck_oprc":"1","stck_hgpr":"1","stck_lwpr":"1","stck_clpr":"1","acml_vol":"1"},{"stck_bsop_date":"2024-13-99","stck_clpr":"x"},{}]}"#;
        let (base, _) = server(vec![(200, body.into())]);
        let mut c = client(&base);
        let rows = c
            .daily_bars("005930", d("2024-12-01"), d("2024-12-13"))
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].date, "2024-13-99");
        assert!(rows[1].raw.contains("\"stck_clpr\":\"x\""));
        assert_eq!(rows[2].raw, "{}");
    }

    #[test]
    fn the_token_is_issued_once_and_reused_from_the_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("kis_token.json");
        let dates = days_desc("2024-12-13", "2024-12-13");
        let (base, seen) = server(vec![(200, rows_json(&dates)); 3]);
        let mut c = client(&base);
        c.cfg.token_cache = Some(cache.clone());
        c.daily_bars("005930", d("2024-12-13"), d("2024-12-13"))
            .unwrap();
        c.daily_bars("000660", d("2024-12-13"), d("2024-12-13"))
            .unwrap();
        assert_eq!(c.stats.token_issues, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut second = client(&base);
        second.cfg.token_cache = Some(cache.clone());
        second
            .daily_bars("005930", d("2024-12-13"), d("2024-12-13"))
            .unwrap();
        assert_eq!(second.stats.token_issues, 0, "reused from the cache file");
        let posts = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "POST")
            .count();
        assert_eq!(posts, 1);
        // A corrupt cache is ignored and replaced.
        std::fs::write(&cache, "not json").unwrap();
        let mut third = client(&base);
        third.cfg.token_cache = Some(cache);
        assert!(third.token().is_ok());
        assert_eq!(third.stats.token_issues, 1);
    }

    #[test]
    fn client_errors_are_permanent_and_secrets_never_appear_in_messages() {
        let echo = format!(
            r#"{{"rt_cd":"1","msg_cd":"EGW00103","msg1":"invalid appkey {KEY} / {SECRET}"}}"#
        );
        let (base, _) = server(vec![(403, echo.clone()), (200, echo)]);
        let mut c = client(&base);
        let err = c
            .daily_bars("005930", d("2024-12-13"), d("2024-12-13"))
            .unwrap_err();
        assert!(matches!(err, KisError::Http { status: 403, .. }), "{err:?}");
        assert!(!err.is_transient());
        let err2 = c
            .daily_bars("005930", d("2024-12-13"), d("2024-12-13"))
            .unwrap_err();
        assert!(matches!(err2, KisError::Api { .. }), "{err2:?}");
        for shown in [
            err.to_string(),
            err2.to_string(),
            format!("{c:?}"),
            format!("{err:?}"),
        ] {
            for secret in [KEY, SECRET, TOKEN] {
                assert!(!shown.contains(secret), "{secret} leaked in {shown}");
            }
        }
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let cfg = KisConfig {
            app_key_env: "KRXFLOW_TEST_NO_SUCH_KIS_KEY".into(),
            ..KisConfig::default()
        };
        let err = KisClient::new(cfg).unwrap_err();
        assert!(err.to_string().contains("KRXFLOW_TEST_NO_SUCH_KIS_KEY"));
    }
}
