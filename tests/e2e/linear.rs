//! End-to-end: the linear ranker as a member beside LightGBM and ETS, through the real DAGs on
//! the synthetic universe (on by default; the README's main command checks that it joins).
//!
//! * Point-in-time: before any Sunday fit `linear.predict` is skipped and the ensemble uses
//!   the other members; on Monday it uses the model trained through Sunday, and the ensemble
//!   takes it as a member.
//! * Idempotent: re-running Monday rewrites its forecasts, never duplicates.
//! * No look-ahead: after later days and a newer model are in the lake, Monday is unchanged.
//! * `KRXFLOW_LINEAR=off` leaves it out of both DAGs; a value other than on/off is an error
//!   naming the variable (`choices:`), not a DAG without the member.

use std::path::Path;
use std::process::Output;

use crate::common::{count, krxflow, krxflow_with, text};

fn run_ok(lake: &Path, args: &[&str]) -> Output {
    let o = krxflow(lake, args);
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn monday(lake: &Path) -> String {
    let o = krxflow(
        lake,
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
    let o = run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-13"]);
    assert!(
        text(&o).contains("no linear model trained through a date before 2024-12-13"),
        "{}",
        text(&o)
    );
    assert!(count(&lake, "SELECT count(*) FROM predictions") > 0);

    // Sunday: one model per horizon, its card in the lake.
    run_ok(&lake, &["run", "retrain_linear", "--date", "2024-12-15"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'linear' \
             AND model LIKE 'linear/pooled/_all/h%'"
        ),
        3
    );

    // Monday: every code and horizon, from Sunday's model, and a member of the ensemble.
    run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-16"]);
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
    assert_eq!(count(&lake, "SELECT count(*) FROM linear_predictions"), 60);

    // A later week and a newer model: Monday, re-run, is what it was.
    run_ok(&lake, &["run", "daily_batch", "--date", "2024-12-20"]);
    run_ok(&lake, &["run", "retrain_linear", "--date", "2024-12-22"]);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM model_registry WHERE kind = 'linear'"
        ),
        6
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
fn linear_off_leaves_the_member_out_of_both_dags() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let off = [("KRXFLOW_LINEAR".to_string(), "off".to_string())];
    let o = krxflow_with(
        &lake,
        &off,
        &["run", "retrain_linear", "--date", "2024-12-15"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = krxflow_with(&lake, &off, &["run", "daily_batch", "--date", "2024-12-16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("predict_linear"), "{}", text(&o));
    // retrain_linear trained nothing: no model registry was written.
    assert!(!lake.join("model_registry").exists());
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM prediction_members WHERE model = 'linear'"
        ),
        0
    );
}

#[test]
fn a_mistyped_switch_is_an_error_naming_the_variable_not_a_dag_without_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let typo = [("KRXFLOW_LINEAR".to_string(), "On".to_string())];
    for dag in ["daily_batch", "retrain_linear"] {
        let o = krxflow_with(&lake, &typo, &["run", dag, "--date", "2024-12-16"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains(&format!(
                "dags/{dag}.yaml:{}:11: error[invalid-field]: `params.linear` is `On` \
                 (from KRXFLOW_LINEAR): expected one of on, off",
                if dag == "daily_batch" { 41 } else { 12 }
            )),
            "{}",
            text(&o)
        );
    }
    // Nothing ran: the lake was not even created.
    assert!(!lake.join("predictions").exists());
    let typo = [("KRXFLOW_UNIVERSE".to_string(), "krx3O".to_string())];
    let o = krxflow_with(
        &lake,
        &typo,
        &["run", "daily_batch", "--date", "2024-12-16"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`params.universe` is `krx3O` (from KRXFLOW_UNIVERSE)"),
        "{}",
        text(&o)
    );
}
