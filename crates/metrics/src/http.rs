//! The scheduler's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (is the
//! scheduler loop alive, when did it last tick) and `/runs` (recent runs as JSON).
//! Plain HTTP/1.1 on hyper; GET and HEAD only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Metrics, MetricsError, MetricsResult};

/// What the daemon tells `/healthz` and `/runs`.
pub trait StatusSource: Send + Sync {
    /// `(healthy, details)`: unhealthy answers 503 with the same JSON.
    fn health(&self) -> (bool, serde_json::Value);
    /// Recent runs, newest first.
    fn runs(&self) -> serde_json::Value;
}

/// Binds `addr` (e.g. `127.0.0.1:9464`; port 0 picks a free one).
pub async fn bind(addr: &str) -> MetricsResult<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen {
            addr: addr.to_string(),
            source,
        })
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Answers one request.
pub fn route(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    status: &dyn StatusSource,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => {
            let (ok, details) = status.health();
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, "application/json", format!("{details}\n"))
        }
        "/runs" => reply(
            StatusCode::OK,
            "application/json",
            format!("{}\n", status.runs()),
        ),
        "/" => reply(
            StatusCode::OK,
            "text/plain",
            "krxflow serve: /metrics /healthz /runs\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves until `shutdown` is cancelled. Connections already open finish their request.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    status: Arc<dyn StatusSource>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("http accept failed: {e}");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = route(req.method(), req.uri().path(), &metrics, status.as_ref());
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("http connection from {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fixed(bool);
    impl StatusSource for Fixed {
        fn health(&self) -> (bool, serde_json::Value) {
            (self.0, serde_json::json!({"alive": self.0}))
        }
        fn runs(&self) -> serde_json::Value {
            serde_json::json!([{"dag": "daily", "state": "succeeded"}])
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_runs_over_real_http() {
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let m = Arc::new(Metrics::new());
        m.dags_loaded(2, 1);
        let h = tokio::spawn(serve(l, m, Arc::new(Fixed(true)), stop.clone()));

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("krxflow_scheduler_dags{state=\"invalid\"} 1"));
        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"alive\":true"));
        let runs = get(addr, "/runs").await;
        assert!(runs.contains("application/json") && runs.contains("\"dag\":\"daily\""));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        stop.cancel();
        h.await.unwrap();
    }

    #[test]
    fn an_unhealthy_scheduler_answers_503_and_posts_are_refused() {
        let m = Metrics::new();
        let r = route(&Method::GET, "/healthz", &m, &Fixed(false));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = route(&Method::POST, "/metrics", &m, &Fixed(true));
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_naming_the_address() {
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let e = bind(&addr).await.unwrap_err();
        assert!(e.to_string().contains(&addr), "{e}");
    }
}
