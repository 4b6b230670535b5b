//! Pushgateway client for one-shot commands (`run`, `backfill` with `--pushgateway URL`).
//!
//! `PUT {url}/metrics/job/{job}/{label}/{value}...` replaces the group's series with the
//! current registry (the Pushgateway's documented replace semantics), so pushing the same
//! command twice never double-counts.

use std::time::Duration;

use crate::{Metrics, MetricsError, MetricsResult};

/// Percent-encodes a path segment (everything but `A-Za-z0-9-._~`).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The grouping URL for `job` and extra grouping labels.
pub fn group_url(base: &str, job: &str, grouping: &[(&str, &str)]) -> String {
    let mut url = format!(
        "{}/metrics/job/{}",
        base.trim_end_matches('/'),
        segment(job)
    );
    for (k, v) in grouping {
        url.push('/');
        url.push_str(&segment(k));
        url.push('/');
        url.push_str(&segment(v));
    }
    url
}

/// Pushes every series to the Pushgateway at `base` (blocking; call it from
/// `spawn_blocking` in async code).
pub fn push(
    metrics: &Metrics,
    base: &str,
    job: &str,
    grouping: &[(&str, &str)],
) -> MetricsResult<()> {
    let url = group_url(base, job, grouping);
    let err = |msg: String| MetricsError::Push {
        url: url.clone(),
        msg,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .put(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .send(metrics.render())
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(err(format!("HTTP {status}: {}", body.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    /// A one-request HTTP server answering `status`; returns (request line, headers, body).
    fn one_request(status: u16) -> (String, std::thread::JoinHandle<(String, String)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut s = s;
            write!(s, "HTTP/1.1 {status} X\r\ncontent-length: 4\r\n\r\nnope").unwrap();
            (first.trim().to_string(), String::from_utf8(body).unwrap())
        });
        (base, h)
    }

    #[test]
    fn push_puts_the_text_format_to_the_grouping_url() {
        let (base, h) = one_request(200);
        let m = Metrics::new();
        m.task_finished("daily", "ingest", "succeeded", 0.2);
        push(
            &m,
            &base,
            "krxflow",
            &[("dag", "daily"), ("cmd", "run one")],
        )
        .unwrap();
        let (line, body) = h.join().unwrap();
        assert_eq!(
            line,
            "PUT /metrics/job/krxflow/dag/daily/cmd/run%20one HTTP/1.1"
        );
        assert!(
            body.contains("krxflow_task_duration_seconds_count{"),
            "{body}"
        );
    }

    #[test]
    fn a_refused_push_is_an_error_naming_the_status() {
        let (base, h) = one_request(400);
        let e = push(&Metrics::new(), &base, "krxflow", &[]).unwrap_err();
        h.join().unwrap();
        assert!(e.to_string().contains("HTTP 400"), "{e}");
    }

    #[test]
    fn an_unreachable_gateway_is_an_error_not_a_panic() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        assert!(push(&Metrics::new(), &base, "krxflow", &[]).is_err());
    }
}
