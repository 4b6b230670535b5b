//! End-to-end: the linear ranker as a third member, through the real DAGs on the synthetic
//! universe with `KRXFLOW_LINEAR=on`.
//!
//! * Point-in-time: before any Sunday fit `linear.predict` is skipped and the ensemble uses
//!   the other members; on Monday it uses the model trained through Sunday, and the ensemble
//!   takes it as a member.
//! * Idempotent: re-running Monday rewrites its forecasts, never duplicates.
//! * No look-ahead: after later days and a newer model are in the lake, Monday is unchanged.
//! * Off by default: without `KRXFLOW_LINEAR=on` neither DAG runs it.

use std::path::Path;
use std::process::Output;

use crate::common::{count, krxflow_with, text};

fn on(lake: &Path, args: &[&str]) -> Output {
    let o = krxflow_with(lake, &[("KRXFLOW_LINEAR".into(), "on".into())], args);
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn monday(lake: &Path) -> String {
    let o = krxflow_with(
        lake,
        &[],
        &[
            "sql",
            "SELECT code, horizon, target_date, base_close, predicted_return, q10, q90, \
             prob_up, prob_flat, prob_down, model_version FROM linear_predictions \
             WHERE base_date = DATE '2024-12-16' ORDER BY code, horizon",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_linear_member_forecasts_from_sundays_model_point_in_time_and_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // Friday, before any fit: skipped, and the ensemble still forecasts.
    let o = on(&lake, &["run", "daily_batch", "--date", "2024-12-13"]);
    assert!(
        text(&o).contains("no linear model trained through a date before 2024-12-13"),
        "{}",
        text(&o)
    );
    assert!(count(&lake, "SELECT count(*) FROM predictions") > 0);

    // Sunday: one model per horizon, its card in the lake.
    on(&lake, &["run", "retrain_linear", "--date", "2024-12-15"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'linear' \
             AND model LIKE 'linear/pooled/_all/h%'"
        ),
        3
    );

    // Monday: every code and horizon, from Sunday's model, and a member of the ensemble.
    on(&lake, &["run", "daily_batch", "--date", "2024-12-16"]);
    let first = monday(&lake);
    let rows: Vec<&str> = first.trim_end().lines().skip(1).collect();
    assert_eq!(rows.len(), 20 * 3, "{first}");
    assert!(rows.iter().all(|l| l.contains(",20241215-")), "{first}");
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM prediction_members WHERE model = 'linear' \
             AND base_date = DATE '2024-12-16'"
        ),
        60
    );
    // Its probabilities are probabilities and its interval holds its point.
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM linear_predictions WHERE abs(prob_up + prob_flat + prob_down - 1) < 1e-9 \
             AND q10 <= predicted_close AND predicted_close <= q90"
        ),
        60
    );
    // The codes are not all given one forecast: the model ranks them.
    assert!(
        count(
            &lake,
            "SELECT count(DISTINCT predicted_return) FROM linear_predictions WHERE horizon = 1"
        ) > 10
    );

    // Re-running Monday rewrites the same rows.
    on(
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
    assert_eq!(count(&lake, "SELECT count(*) FROM linear_predictions"), 60);

    // A later week and a newer model: Monday, re-run, is what it was.
    on(&lake, &["run", "daily_batch", "--date", "2024-12-20"]);
    on(&lake, &["run", "retrain_linear", "--date", "2024-12-22"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'linear'"
        ),
        6
    );
    on(
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
fn the_linear_member_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let o = krxflow_with(
        &lake,
        &[],
        &["run", "retrain_linear", "--date", "2024-12-15"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = krxflow_with(&lake, &[], &["run", "daily_batch", "--date", "2024-12-16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("predict_linear"), "{}", text(&o));
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM prediction_members WHERE model = 'linear'"
        ),
        0
    );
}
