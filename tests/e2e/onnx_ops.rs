//! End-to-end: the ONNX operators through the engine, on the tiny random Chronos-Bolt and
//! KR-FinBert fixtures (real architectures, exported by crates/models/export).
//!
//! * forecast.chronos writes one row per code and horizon with coherent probabilities, and
//!   re-running a day after later days were ingested gives identical rows (no look-ahead).
//! * sentiment.finbert scores at most `limit` unscored articles per run with an embedding, and
//!   the next run scores the next ones (never the same article twice).
//! * A missing model folder is `skipped`, not a failure.

use std::path::Path;

use crate::common::{count, krxflow, text};

const FIXTURES: &str = "crates/models/tests/fixtures";

fn dag(chronos: &str, finbert: &str) -> String {
    format!(
        "dag: onnx_e2e
tasks:
  ingest:
    op: ingest.synthetic
    with: {{ tickers: 5, seed: 3, lookback_days: 200 }}
    outputs: {{ bars: ohlcv_daily, news: news, universe: universe }}
  chronos:
    op: forecast.chronos
    with: {{ model: {chronos}, horizons: [1, 3, 5], batch_size: 2, threads: 1 }}
    inputs: {{ bars: ohlcv_daily }}
    outputs: {{ forecasts: chronos_forecasts }}
  finbert:
    op: sentiment.finbert
    with: {{ model: {finbert}, limit: 40, batch_size: 8, threads: 1 }}
    inputs: {{ news: news, scores: news_scores }}
    outputs: {{ scores: news_scores }}
"
    )
}

fn csv(lake: &Path, sql: &str) -> String {
    let o = krxflow(lake, &["sql", sql, "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn chronos_and_finbert_operators_run_on_the_exported_models() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("onnx.yaml");
    std::fs::write(
        &file,
        dag(
            &format!("{FIXTURES}/chronos_bolt_tiny"),
            &format!("{FIXTURES}/finbert_tiny"),
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-16"]);
    assert!(o.status.success(), "{}", text(&o));
    // Inference time per model is a task counter (and the krxflow_model_inference_seconds metric).
    assert!(
        text(&o).contains("chronos.inference_ms.chronos_bolt_tiny="),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("finbert.inference_ms.finbert="),
        "{}",
        text(&o)
    );

    assert_eq!(count(&lake, "SELECT count(*) FROM chronos_forecasts"), 15);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM chronos_forecasts WHERE abs(prob_up + prob_flat + prob_down - 1) < 1e-9 \
             AND prob_up BETWEEN 0 AND 1 AND conf BETWEEN 0 AND 1 AND base_close > 0 \
             AND context_len BETWEEN 32 AND 512 AND model = 'chronos_bolt_tiny'"
        ),
        15
    );
    let forecasts = "SELECT * FROM chronos_forecasts ORDER BY code, horizon";
    let first = csv(&lake, forecasts);

    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM news_scores WHERE model = 'finbert'"
        ),
        40
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM news_scores WHERE model = 'finbert' AND array_length(embedding) = 32 \
             AND abs(score - (p_pos - p_neg)) < 1e-6 AND label IN ('neg', 'neu', 'pos')"
        ),
        40
    );
    // The next run scores the next 40: never an article twice.
    let o = krxflow(
        &lake,
        &["run", f, "--date", "2024-12-16", "--reprocess", "all"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM news_scores WHERE model = 'finbert'"
        ),
        80
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(DISTINCT id) FROM news_scores WHERE model = 'finbert'"
        ),
        80
    );

    // Later days in the lake do not change the day's forecasts.
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-19"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = krxflow(
        &lake,
        &["run", f, "--date", "2024-12-16", "--reprocess", "all"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let again = csv(
        &lake,
        "SELECT * FROM chronos_forecasts WHERE base_date = DATE '2024-12-16' ORDER BY code, horizon",
    );
    assert_eq!(again, first, "look-ahead: the 2024-12-16 forecasts changed");

    // No model: skipped with the fix, and the run still succeeds.
    std::fs::write(&file, dag("/nonexistent/chronos", "/nonexistent/finbert")).unwrap();
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-17"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("model folder `/nonexistent/chronos` not found"),
        "{t}"
    );
    assert!(t.contains("crates/models/export/finbert.py"), "{t}");
}
