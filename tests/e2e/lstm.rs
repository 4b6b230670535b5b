//! End-to-end: the LSTM member through the real DAGs on the synthetic universe, switched on
//! with `KRXFLOW_LSTM=on` (off by default).
//!
//! * Point-in-time: before any Sunday fit `lstm.predict` is skipped and the ensemble uses the
//!   other members; on Monday it uses the network trained through Sunday, and the ensemble
//!   takes it as a member.
//! * Idempotent: re-running Monday rewrites its forecasts, never duplicates.
//! * No look-ahead: after a later week and a newer network are in the lake, Monday is
//!   unchanged; and the same Sunday trains the same network (its version is its hash).
//! * Off by default: neither DAG runs an LSTM task and nothing is trained.

use std::path::Path;

use crate::common::{count, krxflow_with, text};

fn on() -> [(String, String); 1] {
    [("KRXFLOW_LSTM".to_string(), "on".to_string())]
}

fn run_ok(lake: &Path, args: &[&str]) -> String {
    let o = krxflow_with(lake, &on(), args);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn monday(lake: &Path) -> String {
    let o = krxflow_with(
        lake,
        &on(),
        &[
            "sql",
            "SELECT code, horizon, target_date, base_close, predicted_return, q10, q90, \
             prob_up, prob_flat, prob_down, model_version FROM lstm_predictions \
             WHERE base_date = DATE '2024-12-16' ORDER BY code, horizon",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn versions(lake: &Path) -> String {
    let o = krxflow_with(
        lake,
        &on(),
        &[
            "sql",
            "SELECT trained_through, version FROM model_registry WHERE kind = 'lstm' ORDER BY 1",
            "--format",
            "csv",
        ],
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_lstm_member_forecasts_from_sundays_network_point_in_time_and_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // Friday, before any fit: skipped, and the ensemble still forecasts.
    let out = run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-13"]);
    assert!(
        out.contains("skipped: no LSTM trained through a date before 2024-12-13"),
        "{out}"
    );
    assert!(count(&lake, "SELECT count(*) FROM predictions") > 0);

    // Sunday: one network for the three horizons.
    run_ok(&lake, &["run", "retrain_lstm", "--date", "2024-12-15"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'lstm' \
             AND model = 'lstm/pooled/_all'"
        ),
        1
    );
    let sunday = versions(&lake);

    // Monday: every code and horizon, from Sunday's network, and a member of the ensemble.
    run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-16"]);
    let first = monday(&lake);
    let rows: Vec<&str> = first.trim_end().lines().skip(1).collect();
    assert_eq!(rows.len(), 20 * 3, "{first}");
    assert!(rows.iter().all(|l| l.contains(",20241215-")), "{first}");
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM prediction_members WHERE model = 'lstm' \
             AND base_date = DATE '2024-12-16'"
        ),
        60
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM lstm_predictions WHERE abs(prob_up + prob_flat + prob_down - 1) < 1e-9 \
             AND q10 <= predicted_close AND predicted_close <= q90"
        ),
        60
    );
    // The codes are not all given one forecast: the network tells them apart.
    assert!(
        count(
            &lake,
            "SELECT count(DISTINCT predicted_return) FROM lstm_predictions WHERE horizon = 1"
        ) > 10
    );

    // Re-running Monday rewrites the same rows; re-training Sunday gives the same network.
    run_ok(
        &lake,
        &[
            "run",
            "daily_batch",
            "--date",
            "2024-12-16",
            "--reprocess",
            "all",
        ],
    );
    assert_eq!(monday(&lake), first);
    assert_eq!(count(&lake, "SELECT count(*) FROM lstm_predictions"), 60);
    run_ok(
        &lake,
        &[
            "run",
            "retrain_lstm",
            "--date",
            "2024-12-15",
            "--reprocess",
            "all",
        ],
    );
    assert_eq!(versions(&lake), sunday);

    // A later week and a newer network: Monday, re-run, is what it was.
    run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-20"]);
    run_ok(&lake, &["run", "retrain_lstm", "--date", "2024-12-22"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'lstm'"
        ),
        2
    );
    run_ok(
        &lake,
        &[
            "run",
            "daily_batch",
            "--date",
            "2024-12-16",
            "--reprocess",
            "all",
        ],
    );
    assert_eq!(monday(&lake), first);
}

#[test]
fn lstm_is_off_by_default_in_both_dags() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let o = krxflow_with(&lake, &[], &["run", "retrain_lstm", "--date", "2024-12-15"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = krxflow_with(&lake, &[], &["run", "daily_batch", "--date", "2024-12-16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("predict_lstm"), "{}", text(&o));
    assert!(!lake.join("lstm_predictions").exists());
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM prediction_members WHERE model = 'lstm'"
        ),
        0
    );
}

#[test]
fn a_network_card_altered_after_its_fit_is_refused_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-13"]);
    run_ok(&lake, &["run", "retrain_lstm", "--date", "2024-12-15"]);
    let cards = lake.join("models/lstm/pooled/_all");
    let version = std::fs::read_dir(&cards)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let card = version.join("model.json");
    let mut bytes = std::fs::read(&card).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&card, bytes).unwrap();
    let o = krxflow_with(
        &lake,
        &on(),
        &["run", "daily_batch", "--date", "2024-12-16"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("does not match its registered hash (corrupt or replaced)"),
        "{}",
        text(&o)
    );
    assert!(!lake.join("lstm_predictions").exists());
}
