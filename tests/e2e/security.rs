//! Secrets: the KIS app key, app secret and OAuth token (from the environment and a stand-in
//! KIS server on loopback that echoes them back in its errors) appear nowhere a user or an
//! operator reads: command output at trace level, `krxflow runs`, lineage, rejects, and not
//! in one byte of any file in the lake.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::common::{krxflow, repo_root, text};

const KEY: &str = "PSappkey-E2E-SECRET-1a2b";
const SECRET: &str = "appsecret-E2E-SECRET-3c4d";
const TOKEN: &str = "eyJ-E2E-token-SECRET-5e6f";

/// Answers the token endpoint with TOKEN; chart requests alternately with one good row and
/// with a 403 whose message quotes the credentials (as a careless gateway might).
fn kis_stand_in() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim_end().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let (status, reply) = if line.contains("/oauth2/tokenP") {
                (
                    200,
                    format!(
                        r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":86400,"access_token_token_expired":"2099-01-01 00:00:00"}}"#
                    ),
                )
            } else {
                n += 1;
                if n % 2 == 1 {
                    (
                        200,
                        r#"{"rt_cd":"0","msg_cd":"MCA00000","msg1":"ok","output1":{},"output2":[{"stck_bsop_date":"20241216","stck_oprc":"70000","stck_hgpr":"71000","stck_lwpr":"69000","stck_clpr":"70500","acml_vol":"1234567","prdy_vrss":"0"}]}"#.to_string(),
                    )
                } else {
                    (
                        403,
                        format!(
                            r#"{{"rt_cd":"1","msg_cd":"EGW00103","msg1":"invalid appkey {KEY} secret {SECRET} token {TOKEN}"}}"#
                        ),
                    )
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    format!("http://{addr}")
}

fn leaks(shown: &str) -> Vec<&'static str> {
    [KEY, SECRET, TOKEN]
        .into_iter()
        .filter(|s| shown.contains(s))
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn kis_credentials_never_reach_output_runs_lineage_or_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let base = kis_stand_in();
    let dag = dir.path().join("kis.yaml");
    let cache = dir.path().join("token.json");
    std::fs::write(
        &dag,
        format!(
            "dag: kis\ntasks:\n  ingest:\n    op: ingest.ohlcv\n    with:\n      source: kis\n      codes: [\"005930\", \"000660\"]\n      lookback_days: 3\n      kis: {{ base_url: \"{base}\", token_cache: \"{}\", max_retries: 0 }}\n    outputs: {{ bars: ohlcv_daily, rejects: ohlcv_rejects }}\n",
            cache.display()
        ),
    )
    .unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", &lake)
        .env("KIS_APP_KEY", KEY)
        .env("KIS_APP_SECRET", SECRET)
        .args(["--log", "trace", "run"])
        .arg(&dag)
        .args(["--date", "2024-12-16"])
        .output()
        .unwrap();
    let mut shown = vec![("run --log trace".to_string(), text(&run))];
    assert!(
        lake.join("_krxflow/task_runs/_delta_log").exists(),
        "the run was recorded: {}",
        text(&run)
    );
    assert!(
        text(&run).contains("403") || text(&run).contains("EGW00103"),
        "the KIS error reached the user: {}",
        text(&run)
    );
    for args in [
        vec!["runs"],
        vec!["--json", "runs"],
        vec![
            "sql",
            "SELECT * FROM _krxflow.task_runs",
            "--format",
            "json",
        ],
        vec!["sql", "SELECT * FROM _krxflow.lineage", "--format", "json"],
    ] {
        let o = krxflow(&lake, &args);
        shown.push((args.join(" "), text(&o)));
    }
    if lake.join("ohlcv_rejects/_delta_log").exists() {
        let o = krxflow(
            &lake,
            &["sql", "SELECT * FROM ohlcv_rejects", "--format", "json"],
        );
        shown.push(("rejects".into(), text(&o)));
    }
    for (what, out) in &shown {
        assert!(
            leaks(out).is_empty(),
            "{:?} leaked by `{what}`:\n{out}",
            leaks(out)
        );
    }
    let mut files = Vec::new();
    files_under(&lake, &mut files);
    assert!(files.len() > 5);
    for f in files {
        let bytes = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert!(
            leaks(&bytes).is_empty(),
            "{:?} in {}",
            leaks(&bytes),
            f.display()
        );
    }
}
