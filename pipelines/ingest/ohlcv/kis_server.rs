//! A scripted local HTTP server standing in for the KIS Open API in tests (token endpoint,
//! then scripted answers), with builders for its daily-chart bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use super::kis_types::TOKEN_PATH;

pub(super) const KEY: &str = "PSappkey-SECRET-123";
pub(super) const SECRET: &str = "appsecret-VERY-SECRET-456";
pub(super) const TOKEN: &str = "eyJ-token-SECRET-789";

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Seen {
    pub(super) fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn query(&self, k: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(a, _)| *a == k)
            .map(|(_, v)| v.to_string())
    }
}

/// A local HTTP/1.1 server answering the token endpoint with a token and every other
/// request with the next scripted (status, body).
pub(crate) fn server(script: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let (status, reply) = if target.starts_with(TOKEN_PATH) {
                (
                    200,
                    format!(
                        r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":86400,"access_token_token_expired":"2099-01-01 00:00:00"}}"#
                    ),
                )
            } else {
                script.next().unwrap_or((404, "{}".into()))
            };
            log.lock().unwrap().push(Seen {
                method,
                target,
                headers,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

pub(crate) fn rows_json(dates: &[NaiveDate]) -> String {
    let rows: Vec<String> = dates
        .iter()
        .map(|d| {
            format!(
                r#"{{"stck_bsop_date":"{}","stck_oprc":"70000","stck_hgpr":"71000","stck_lwpr":"69000","stck_clpr":"70500","acml_vol":"1234567","prdy_vrss":"0"}}"#,
                d.format("%Y%m%d")
            )
        })
        .collect();
    format!(
        r#"{{"rt_cd":"0","msg_cd":"MCA00000","msg1":"정상처리 되었습니다.","output1":{{"hts_kor_isnm":"삼성전자"}},"output2":[{}]}}"#,
        rows.join(",")
    )
}

/// Weekdays in [from, to], newest first (KIS order).
pub(crate) fn days_desc(from: &str, to: &str) -> Vec<NaiveDate> {
    let (mut d, from) = (
        NaiveDate::parse_from_str(to, "%Y-%m-%d").unwrap(),
        NaiveDate::parse_from_str(from, "%Y-%m-%d").unwrap(),
    );
    let mut out = Vec::new();
    while d >= from {
        use chrono::Datelike;
        if d.weekday().number_from_monday() <= 5 {
            out.push(d);
        }
        d -= chrono::Duration::days(1);
    }
    out
}
