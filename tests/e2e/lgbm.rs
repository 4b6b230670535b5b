//! End-to-end: LightGBM train and predict through the engine on a synthetic universe.
//!
//! * Point-in-time: on day D the models trained through D are not used (predict is `skipped`
//!   on the first day); on the next trading day they are.
//! * Idempotent: re-running a day rewrites its predictions and registry rows, never duplicates.
//! * No look-ahead: after later days are ingested (future bars, features and newer models in
//!   the lake), re-running D+1 gives byte-identical predictions.
//! * A model trained on another feature list than the DAG's is refused with an error naming
//!   both lists; one trained on another list than the default (an upgrade added a feature) is
//!   skipped with the same detail, so the day still succeeds.
//! * A new lake's first Sunday before any daily batch: both weekly trainers say `skipped`,
//!   naming the missing table, and the backfill that starts on a Saturday succeeds.

use std::path::Path;

use crate::common::{count, krxflow, text};

fn dag(features: &str) -> String {
    dag_with(
        "tickers: 4, seed: 7",
        "horizons: [1, 5], min_train_rows: 100, params: { num_iterations: 40 }",
        &format!("horizons: [1, 5]{features}"),
    )
}

/// ingest → features → lgbm.train → lgbm.predict on a synthetic universe, with the given
/// `ingest.synthetic`, `lgbm.train` and `lgbm.predict` parameters.
fn dag_with(universe: &str, train: &str, predict: &str) -> String {
    format!(
        "dag: lgbm_e2e
tasks:
  ingest:
    op: ingest.synthetic
    with: {{ {universe}, lookback_days: 800 }}
    outputs: {{ bars: ohlcv_daily, news: news, universe: universe }}
  features:
    op: features.build
    inputs: {{ bars: ohlcv_daily }}
    outputs: {{ features: features_daily }}
  train:
    op: lgbm.train
    with: {{ {train} }}
    inputs: {{ features: features_daily, bars: ohlcv_daily }}
    outputs: {{ registry: model_registry, metrics: lgbm_metrics }}
  predict:
    op: lgbm.predict
    with: {{ {predict} }}
    inputs: {{ features: features_daily, bars: ohlcv_daily, registry: model_registry }}
    outputs: {{ predictions: lgbm_predictions }}
    after: [train]
"
    )
}

fn csv(lake: &Path, sql: &str) -> String {
    let o = krxflow(lake, &["sql", sql, "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

const PREDICTIONS: &str = "SELECT code, base_date, horizon, target_date, base_close, \
     predicted_return, predicted_close, q10, q90, prob_up, prob_flat, prob_down, model_version \
     FROM lgbm_predictions WHERE base_date = DATE '2024-12-16' ORDER BY code, horizon";

#[test]
fn predictions_use_only_models_trained_before_the_day_and_are_idempotent_and_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("lgbm_e2e.yaml");
    std::fs::write(&file, dag("")).unwrap();
    let f = file.to_str().unwrap();

    // Friday: models are trained through Friday, so Friday's forecast has none to use.
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-13"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("trained through a date before 2024-12-13"),
        "predict should be skipped: {}",
        text(&o)
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM model_registry"), 8);
    assert_eq!(count(&lake, "SELECT count(*) FROM lgbm_metrics"), 8);
    // Every model stopped early or ran its 40 rounds, and its artifacts are in the lake.
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM lgbm_metrics WHERE best_iteration_regression BETWEEN 1 AND 40 \
             AND valid_rows >= 40 AND valid_dir_acc_classifier BETWEEN 0 AND 1"
        ),
        8
    );
    let path = csv(
        &lake,
        "SELECT path FROM model_registry WHERE model = 'lgbm/per_ticker/900001/h1'",
    );
    let path = path.lines().nth(1).expect("a registered model").to_string();
    for f in ["regression.txt", "direction.txt", "metrics.json"] {
        assert!(lake.join(&path).join(f).exists(), "{path}/{f}");
    }

    // Monday: Friday's models forecast Monday.
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-16"]);
    assert!(o.status.success(), "{}", text(&o));
    let first = csv(&lake, PREDICTIONS);
    assert_eq!(first.trim_end().lines().count(), 1 + 4 * 2, "{first}");
    assert!(
        first
            .trim_end()
            .lines()
            .skip(1)
            .all(|l| l.contains(",20241213-")),
        "Monday must use the models trained through Friday:\n{first}"
    );
    assert!(first.contains(",2024-12-17,"), "h1 target date: {first}");
    assert!(first.contains(",2024-12-23,"), "h5 target date: {first}");

    // Re-running Monday rewrites: same rows, same values, no duplicates.
    let o = krxflow(
        &lake,
        &["run", f, "--date", "2024-12-16", "--reprocess", "all"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(csv(&lake, PREDICTIONS), first);
    assert_eq!(count(&lake, "SELECT count(*) FROM lgbm_predictions"), 8);
    assert_eq!(count(&lake, "SELECT count(*) FROM model_registry"), 16);

    // Later days put future bars, features and newer models in the lake; Monday is unchanged.
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-20"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        count(
            &lake,
            "SELECT count(*) FROM ohlcv_daily WHERE date > DATE '2024-12-16'"
        ) > 0
    );
    let o = krxflow(
        &lake,
        &["run", f, "--date", "2024-12-16", "--reprocess", "all"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(csv(&lake, PREDICTIONS), first, "look-ahead: Monday changed");

    // A DAG whose feature list differs from the models' is refused, naming both lists.
    std::fs::write(&file, dag(", features: [ret_1d, rsi14]")).unwrap();
    let o = krxflow(
        &lake,
        &["run", f, "--date", "2024-12-16", "--reprocess", "all"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("was trained on feature list"),
        "{}",
        text(&o)
    );

    // Models trained on a list other than the default one (as after an upgrade that added a
    // feature) are skipped, naming both lists, until a retrain: the day still succeeds.
    let trained_on_two = dag_with(
        "tickers: 4, seed: 7",
        "horizons: [1, 5], min_train_rows: 100, params: { num_iterations: 40 }, \
         features: [ret_1d, rsi14]",
        "horizons: [1, 5]",
    );
    std::fs::write(&file, trained_on_two).unwrap();
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-17"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-18"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("skipped") && text(&o).contains("was trained on feature list"),
        "{}",
        text(&o)
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM lgbm_predictions WHERE base_date = DATE '2024-12-18'"
        ),
        0
    );
}

#[test]
fn an_excess_target_is_recorded_with_the_model_and_still_forecasts_every_code() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("lgbm_excess.yaml");
    let dag = |target: &str| {
        dag_with(
            "tickers: 6, seed: 11",
            &format!(
                "scope: pooled, target: {target}, horizons: [1], params: {{ num_iterations: 40 }}"
            ),
            "scope: pooled, horizons: [1]",
        )
    };
    let f = file.to_str().unwrap();

    // A target that does not exist is refused before anything runs, naming the field.
    std::fs::write(&file, dag("market")).unwrap();
    let o = krxflow(&lake, &["run", f, "--date", "2024-12-13"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("target"), "{}", text(&o));
    assert!(!lake.join("model_registry").exists(), "nothing may run");

    std::fs::write(&file, dag("excess")).unwrap();
    for day in ["2024-12-13", "2024-12-16"] {
        let o = krxflow(&lake, &["run", f, "--date", day]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let metrics = csv(
        &lake,
        "SELECT path, metrics FROM model_registry WHERE model = 'lgbm/pooled/_all/h1' \
         ORDER BY trained_through LIMIT 1",
    );
    assert!(metrics.contains(r#"""target"":""excess"""#), "{metrics}");
    let path = metrics.lines().nth(1).and_then(|l| l.split(',').next());
    let card = std::fs::read_to_string(lake.join(path.expect("a model")).join("metrics.json"))
        .expect("model card");
    assert!(card.contains(r#""target": "excess""#), "{card}");
    // Monday's forecasts (from Friday's model) cover all six codes, with finite returns.
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM lgbm_predictions WHERE base_date = DATE '2024-12-16' \
             AND abs(predicted_return) < 1 AND prob_up + prob_flat + prob_down > 0.99"
        ),
        6
    );
}

#[test]
fn a_rank_target_forecasts_returns_through_the_line_on_its_card() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = dir.path().join("lgbm_rank.yaml");
    std::fs::write(
        &file,
        dag_with(
            "tickers: 8, seed: 5",
            "scope: pooled, target: rank, horizons: [1], regression: { lookback_days: 400 }, \
             params: { num_iterations: 40 }",
            "scope: pooled, horizons: [1]",
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for day in ["2024-12-13", "2024-12-16"] {
        let o = krxflow(&lake, &["run", f, "--date", day]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let reg = csv(
        &lake,
        "SELECT path FROM model_registry WHERE model = 'lgbm/pooled/_all/h1' \
         AND trained_through = DATE '2024-12-13'",
    );
    let path = reg.lines().nth(1).expect("Friday's model");
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lake.join(path).join("metrics.json")).expect("model card"),
    )
    .expect("card json");
    assert_eq!(card["target"], "rank");
    // The regression: 400 of the feature table's dates, not of a calendar; the classifier,
    // without a lookback of its own, every date.
    let first_date = csv(
        &lake,
        "SELECT min(date) FROM (SELECT DISTINCT date FROM features_daily \
         WHERE date <= DATE '2024-12-13' ORDER BY date DESC LIMIT 400)",
    );
    assert_eq!(
        card["train_from"].as_str(),
        first_date.lines().nth(1),
        "{card}"
    );
    let from = |k: &str| {
        card[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {card}"))
            .to_string()
    };
    assert!(from("direction_train_from") < from("train_from"), "{card}");
    let (a, b) = (
        card["return_map"]["intercept"].as_f64().expect("intercept"),
        card["return_map"]["slope"].as_f64().expect("slope"),
    );
    assert!(a.is_finite() && b.is_finite() && b >= 0.0, "{card}");
    let hi = card["regression"]["residual_q90"].as_f64().expect("q90");
    // Monday's forecasts: the scores of ranks in (-1/2, 1/2) put every return on the card's
    // line within half its slope of the intercept, and the interval (prices) is centred on that return.
    let rows = csv(
        &lake,
        "SELECT predicted_return AS r, q90 / base_close - 1 - predicted_return AS w \
         FROM lgbm_predictions \
         WHERE base_date = DATE '2024-12-16' ORDER BY code",
    );
    let rows: Vec<(f64, f64)> = rows
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (r, w) = l
                .split_once(',')
                .unwrap_or_else(|| panic!("two columns: {l:?}"));
            (r.parse().expect("return"), w.parse().expect("width"))
        })
        .collect();
    assert_eq!(rows.len(), 8, "every code forecast");
    for (ret, up) in &rows {
        assert!(
            (ret - a).abs() <= 0.5 * b + 1e-12,
            "{ret} off the line {a} + {b} s"
        );
        assert!(
            (up - hi).abs() < 1e-9,
            "{up} vs the card's residual q90 {hi}"
        );
    }
    if b > 0.0 {
        assert!(
            rows.iter().any(|r| (r.0 - rows[0].0).abs() > 1e-12),
            "a positive slope orders the codes: {rows:?}"
        );
    }
}

#[test]
fn a_retrain_before_any_daily_batch_is_skipped_naming_the_missing_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for dag in ["retrain_weekly", "retrain_linear"] {
        let o = krxflow(&lake, &["run", dag, "--date", "2024-12-08"]);
        assert!(o.status.success(), "{dag}: {}", text(&o));
        assert!(
            text(&o).contains(
                "skipped: nothing to train on before 2024-12-08: the `features` table does not exist yet"
            ),
            "{dag}: {}",
            text(&o)
        );
    }
    // The main job's range can start on a Saturday (its first Sunday comes before its first
    // daily batch): the loop still succeeds, and the models come on the next Sunday.
    let o = krxflow(
        &lake,
        &crate::prediction_loop::backfill_loop("2024-12-07", "2024-12-16", &[]),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM _krxflow.task_runs WHERE state = 'failed'"
        ),
        0
    );
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT kind) FROM model_registry"),
        2
    );
}
