//! `krxflow eval`: the loop replayed over a range, then judged against the naive baselines;
//! the report opens in a real headless Chromium (driven through chromedriver's WebDriver API
//! on loopback) and every chart in it is drawn. chromium and chromium-driver come from
//! scripts/setup.sh (Debian packages).

use std::path::Path;

use crate::common::{krxflow, text, wait_for};
use crate::observability::{Killed, free_port, tool};

/// A WebDriver session of headless Chromium.
struct Browser {
    base: String,
    session: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

fn post(url: &str, body: &serde_json::Value) -> serde_json::Value {
    let mut r = ureq::post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

impl Browser {
    fn start() -> Self {
        let port = free_port();
        let driver = std::process::Command::new(tool("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let driver = Killed(driver);
        let base = format!("http://127.0.0.1:{port}");
        // ureq, not a raw socket read to EOF: chromedriver keeps the connection open.
        wait_for("chromedriver to listen", 30, || {
            ureq::get(&format!("{base}/status")).call().is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tool("chromium"),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let session = post(&format!("{base}/session"), &caps)["value"]["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        Self {
            base,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn open(&self, file: &Path) {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        post(
            &format!("{}/session/{}/url", self.base, self.session),
            &serde_json::json!({ "url": url }),
        );
    }

    fn run(&self, script: &str) -> serde_json::Value {
        post(
            &format!("{}/session/{}/execute/sync", self.base, self.session),
            &serde_json::json!({ "script": script, "args": [] }),
        )["value"]
            .clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

/// Per figure: its id, the rendered size of its SVG, and how many drawn marks (polylines with
/// points, circles) it holds; and every image that failed to load.
const CHART_CHECK: &str = r#"
const figs = [...document.querySelectorAll('figure[data-chart]')].map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const lines = svg ? [...svg.querySelectorAll('polyline')].filter(p => p.points.numberOfItems >= 2).length : 0;
  const dots = svg ? svg.querySelectorAll('circle').length : 0;
  return {id: f.dataset.chart, width: box.width, height: box.height, marks: lines + dots};
});
const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
return {title: document.title, figs, broken};
"#;

#[test]
fn eval_replays_the_loop_and_its_report_renders_every_chart_in_a_real_browser() {
    let lake = tempfile::tempdir().unwrap();
    let out = lake.path().join("report");
    let range = [
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-19",
        "--out",
        out.to_str().unwrap(),
        "--resamples",
        "200",
    ];
    let o = krxflow(
        lake.path(),
        &[
            &["eval", "--replay"][..],
            crate::prediction_loop::LOOP_DAGS,
            &range,
        ]
        .concat(),
    );
    let stdout = text(&o);
    assert!(o.status.success(), "{stdout}");
    assert!(stdout.contains("evaluated "), "{stdout}");
    for model in [
        "ensemble",
        "lgbm",
        "ets",
        "linear",
        "naive: always up",
        "naive: always down",
        "naive: random walk",
    ] {
        assert!(stdout.contains(model), "{model} missing from\n{stdout}");
    }
    // Re-running over the same lake changes nothing: the replay resumes (all done) and the
    // evaluation is deterministic.
    let metrics = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    let again = krxflow(lake.path(), &[&["eval"][..], &range].concat());
    assert!(again.status.success(), "{}", text(&again));
    let rerun = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    assert!(
        rerun == metrics,
        "a second eval of the same lake wrote a different metrics.json"
    );

    let json: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    let summaries = json["summaries"].as_array().unwrap();
    let ens_h1 = summaries
        .iter()
        .find(|s| s["model"] == "ensemble" && s["horizon"] == 1)
        .unwrap();
    // The outcomes the report counts are the lake's (base dates in the range, scheduled runs).
    let stored = crate::common::count(
        lake.path(),
        "SELECT count(*) FROM prediction_outcomes WHERE model = 'ensemble' AND horizon = 1 AND NOT user_triggered",
    );
    assert_eq!(ens_h1["n"].as_i64().unwrap(), stored);
    for csv in [
        "summary.csv",
        "hit_diffs.csv",
        "monthly.csv",
        "reliability.csv",
        "weights.csv",
        "long_short_daily.csv",
    ] {
        let body = std::fs::read_to_string(out.join(csv)).unwrap();
        assert!(body.lines().count() > 1, "{csv} has no rows");
    }

    let browser = Browser::start();
    browser.open(&out.join("report.html"));
    let seen = browser.run(CHART_CHECK);
    assert!(
        seen["title"]
            .as_str()
            .unwrap()
            .starts_with("krxflow evaluation"),
        "{seen}"
    );
    assert_eq!(seen["broken"], serde_json::json!([]), "{seen}");
    let figs = seen["figs"].as_array().unwrap();
    let ids: Vec<&str> = figs.iter().filter_map(|f| f["id"].as_str()).collect();
    for h in [1, 3] {
        for chart in [
            "hit",
            "ic",
            "coverage",
            "reliability",
            "weights",
            "long-short",
        ] {
            assert!(
                ids.contains(&format!("{chart}-h{h}").as_str()),
                "no {chart}-h{h} in {ids:?}"
            );
        }
    }
    for book in [
        "book-quintiles-h1",
        "book-dropout-h1",
        "book-quintiles-h3",
        "book-dropout-h3",
    ] {
        assert!(ids.contains(&book), "no {book} in {ids:?}");
    }
    for f in figs {
        assert!(
            f["width"].as_f64().unwrap() > 300.0 && f["height"].as_f64().unwrap() > 150.0,
            "{f} is not drawn at size"
        );
        assert!(f["marks"].as_u64().unwrap() >= 1, "{f} draws nothing");
    }
}

#[test]
fn eval_on_a_lake_without_forecasts_says_what_to_run() {
    let lake = tempfile::tempdir().unwrap();
    let o = krxflow(
        lake.path(),
        &["eval", "--out", lake.path().join("r").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no matured forecasts in the lake"),
        "{}",
        text(&o)
    );
    let o = krxflow(lake.path(), &["eval", "--replay", "daily_batch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--replay needs --from and --to"),
        "{}",
        text(&o)
    );
}
