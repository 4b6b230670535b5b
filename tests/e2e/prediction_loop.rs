//! The prediction loop end to end: daily_batch -> match_outcomes -> retrain_weekly +
//! retrain_linear replayed over a range on the synthetic universe equals the same runs one by
//! one; re-runs rewrite; lineage walks from a prediction to the raw bars; on real tickers,
//! prices after D changed in a copy of the data leave every table of the loop up to D
//! identical, the Sunday's trained members included (no look-ahead).

use std::path::Path;

use crate::common::{count, krxflow, text};

/// The loop's four scheduled DAGs, as `backfill` takes them.
pub(crate) const LOOP_DAGS: &[&str] = &[
    "daily_batch",
    "match_outcomes",
    "retrain_weekly",
    "retrain_linear",
];

/// `backfill` of the loop's four DAGs over `from..=to`, then `extra`.
pub(crate) fn backfill_loop<'a>(from: &'a str, to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["backfill"][..],
        LOOP_DAGS,
        &["--from", from, "--to", to],
        extra,
    ]
    .concat()
}

/// Every table the loop writes, as sorted CSV.
pub(crate) const LOOP_TABLES: &[(&str, &str)] = &[
    ("predictions", "code, base_date, horizon"),
    ("prediction_members", "code, base_date, horizon, model"),
    ("prediction_outcomes", "code, base_date, horizon, model"),
    ("ensemble_weights", "code, horizon, model, as_of"),
    ("model_performance", "model, horizon, as_of"),
    ("ets_forecasts", "code, base_date, horizon"),
    ("lgbm_predictions", "code, base_date, horizon"),
    ("linear_predictions", "code, base_date, horizon"),
];

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "krxflow failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn dump(lake: &Path) -> Vec<(String, String)> {
    dump_with(&|args| krxflow(lake, args), LOOP_TABLES)
}

/// Every row of `tables` (name, order) as CSV, read by `run` (`krxflow` against some lake).
pub(crate) fn dump_with(
    run: &dyn Fn(&[&str]) -> std::process::Output,
    tables: &[(&str, &str)],
) -> Vec<(String, String)> {
    tables
        .iter()
        .map(|(t, order)| {
            // news_scores' list columns do not print as CSV: its scalar columns do.
            let cols = if *t == "news_scores" {
                "id, model, score, label"
            } else {
                "*"
            };
            let q = format!("SELECT {cols} FROM {t} ORDER BY {order}");
            (t.to_string(), ok(run(&["sql", &q, "--format", "csv"])))
        })
        .collect()
}

/// Scheduled runs of 2024-01-02 .. 2024-01-10 in schedule order (Sunday 01-07: the retrains).
const RUNS: &[(&str, &str)] = &[
    ("daily_batch", "2024-01-02"),
    ("match_outcomes", "2024-01-02"),
    ("daily_batch", "2024-01-03"),
    ("match_outcomes", "2024-01-03"),
    ("daily_batch", "2024-01-04"),
    ("match_outcomes", "2024-01-04"),
    ("daily_batch", "2024-01-05"),
    ("match_outcomes", "2024-01-05"),
    ("retrain_weekly", "2024-01-07"),
    ("retrain_linear", "2024-01-07"),
    ("daily_batch", "2024-01-08"),
    ("match_outcomes", "2024-01-08"),
    ("daily_batch", "2024-01-09"),
    ("match_outcomes", "2024-01-09"),
    ("daily_batch", "2024-01-10"),
    ("match_outcomes", "2024-01-10"),
];

#[test]
fn the_loop_replayed_over_a_range_equals_the_same_runs_one_by_one() {
    use crate::observability::{Killed, free_port, http_get, tool};
    let replayed = tempfile::tempdir().unwrap();
    let one_by_one = tempfile::tempdir().unwrap();
    // The replay pushes its metrics to a real Pushgateway: the hit-rate and weight series the
    // dashboards and the hit-rate alert use get values from weights.update.
    let gateway = format!("127.0.0.1:{}", free_port());
    let gw = std::process::Command::new(tool("prometheus-pushgateway"))
        .arg(format!("--web.listen-address={gateway}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _gw = Killed(gw);
    crate::common::wait_for("the pushgateway to listen", 30, || {
        http_get(&gateway, "/-/ready").is_some()
    });
    let url = format!("http://{gateway}");
    let out = ok(krxflow(
        replayed.path(),
        &backfill_loop("2024-01-02", "2024-01-10", &["--pushgateway", &url]),
    ));
    assert!(
        out.contains("replayed 16 scheduled runs of 4 DAGs"),
        "{out}"
    );
    let pushed = http_get(&gateway, "/metrics").unwrap();
    for series in ["krxflow_prediction_hit_rate{", "krxflow_ensemble_weight{"] {
        let line = pushed
            .lines()
            .find(|l| {
                l.starts_with(series)
                    && l.contains("model=\"lgbm\"")
                    && l.contains("code=\"900001\"")
            })
            .unwrap_or_else(|| panic!("no pushed {series} in\n{pushed}"));
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((0.0..=1.0).contains(&v), "{line}");
    }
    for (dag, ds) in RUNS {
        ok(krxflow(
            one_by_one.path(),
            &["run", &format!("dags/{dag}.yaml"), "--date", ds],
        ));
    }
    let (a, b) = (dump(replayed.path()), dump(one_by_one.path()));
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(
            x, y,
            "{table} differs between the replay and the runs one by one"
        );
    }

    let lake = replayed.path();
    // Every trading day has predictions for 20 codes x 3 horizons.
    assert_eq!(
        count(lake, "SELECT count(DISTINCT base_date) FROM predictions"),
        7
    );
    assert_eq!(count(lake, "SELECT count(*) FROM predictions"), 7 * 60);
    // LightGBM and the linear ranker join the ensemble after the Sunday's retrains; ETS
    // serves alone before them.
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM predictions WHERE base_date < DATE '2024-01-08' AND sources_used <> 'ets'"
        ),
        0
    );
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM predictions WHERE base_date >= DATE '2024-01-08' AND sources_used = 'ets,lgbm,linear'"
        ),
        3 * 60
    );
    // Each prediction's member weights sum to 1.
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM (SELECT code, base_date, horizon, sum(weight) w FROM prediction_members GROUP BY 1, 2, 3) WHERE abs(w - 1) > 1e-9"
        ),
        0
    );
    // Matured 1-day predictions are scored for the ensemble and each member, and the weights
    // used on the last day were learned from them.
    assert!(
        count(
            lake,
            "SELECT count(*) FROM prediction_outcomes WHERE model = 'ensemble' AND horizon = 1"
        ) >= 6 * 20
    );
    assert!(
        count(
            lake,
            "SELECT count(*) FROM prediction_members WHERE base_date = DATE '2024-01-10' AND weight_source = 'learned'"
        ) > 0
    );
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM (SELECT code, horizon, as_of, sum(weight) w FROM ensemble_weights GROUP BY 1, 2, 3) WHERE abs(w - 1) > 1e-9"
        ),
        0
    );

    // Re-running a day rewrites, never duplicates.
    let before = dump(lake);
    for dag in ["daily_batch", "match_outcomes"] {
        ok(krxflow(
            lake,
            &["run", dag, "--date", "2024-01-09", "--reprocess", "all"],
        ));
    }
    assert_eq!(
        dump(lake),
        before,
        "re-running 2024-01-09 changed the loop's tables"
    );

    // On demand: members + ensemble for one code, flagged user_triggered; an unknown code is a
    // clear usage error.
    let predicted = ok(krxflow(lake, &["predict", "900001", "--horizons", "1,3"]));
    assert!(
        predicted.contains("900001") && predicted.contains("lgbm"),
        "{predicted}"
    );
    // The point's return against the close, and what the point and the direction each mean.
    assert!(
        predicted.contains("point_ret_pct") && predicted.contains("may lie on the other side"),
        "{predicted}"
    );
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM predictions WHERE user_triggered AND code = '900001' AND base_date = DATE '2024-01-10'"
        ),
        2
    );
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM predictions WHERE user_triggered"
        ),
        2,
        "only the asked-for rows are flagged"
    );
    let unknown = krxflow(lake, &["predict", "123456"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("123456: unknown ticker"),
        "{}",
        text(&unknown)
    );
    // The daily batch re-run keeps the flag (OR), and the values are unchanged.
    ok(krxflow(
        lake,
        &[
            "run",
            "daily_batch",
            "--date",
            "2024-01-10",
            "--reprocess",
            "all",
        ],
    ));
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM predictions WHERE user_triggered"
        ),
        2
    );

    // Lineage walks from a prediction to the member forecasts, the model and the raw bars.
    let lineage = ok(krxflow(
        lake,
        &[
            "lineage",
            "predictions",
            "--ds",
            "2024-01-10",
            "--key",
            "900001",
        ],
    ));
    for upstream in [
        "lgbm_predictions",
        "linear_predictions",
        "ets_forecasts",
        "model_registry",
        "features_daily",
        "ohlcv_daily",
    ] {
        assert!(
            lineage.contains(upstream),
            "lineage lacks {upstream}:\n{lineage}"
        );
    }
}

/// The tables upstream of the ensemble, which a range batch writes in one commit each.
pub(crate) const UPSTREAM_TABLES: &[(&str, &str)] = &[
    ("ohlcv_daily", "code, date"),
    ("news", "id"),
    ("news_scores", "id, model"),
    ("sentiment_daily", "code, date"),
    ("features_daily", "code, date"),
];

fn dump_upstream(lake: &Path) -> Vec<(String, String)> {
    dump_with(&|args| krxflow(lake, args), UPSTREAM_TABLES)
}

/// Task runs recorded per (dag, task, ds, state), sorted.
fn task_runs(lake: &Path) -> String {
    ok(krxflow(
        lake,
        &[
            "sql",
            "SELECT dag, task, ds, state, count(*) AS n FROM _krxflow.task_runs \
             WHERE ds >= DATE '2024-01-08' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            "--format",
            "csv",
        ],
    ))
}

#[test]
fn a_range_batch_writes_what_the_loop_run_day_by_day_writes() {
    // A lake with a sentiment model, a cold day and a Sunday's retrain, copied twice: the
    // next two weeks of the loop replayed with the range batch and day by day.
    let seeded = tempfile::tempdir().unwrap();
    for (dag, ds) in [
        ("sentiment_lexical", "2024-01-04"),
        ("daily_batch", "2024-01-05"),
        ("retrain_weekly", "2024-01-07"),
        ("retrain_linear", "2024-01-07"),
    ] {
        ok(krxflow(seeded.path(), &["run", dag, "--date", ds]));
    }
    let batched = tempfile::tempdir().unwrap();
    let per_day = tempfile::tempdir().unwrap();
    for to in [batched.path(), per_day.path()] {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", seeded.path().display()))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let replay = |lake: &Path, extra: &[&str]| {
        let mut args = vec![
            "backfill",
            "daily_batch",
            "match_outcomes",
            "--from",
            "2024-01-08",
            "--to",
            "2024-01-19",
        ];
        args.extend_from_slice(extra);
        let out = krxflow(lake, &args);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let said = replay(batched.path(), &[]);
    // The tasks upstream of the ensemble ran once; the loop itself (the ensemble reads the
    // weights the day before wrote) day by day.
    for task in [
        "daily_batch.features",
        "daily_batch.sentiment",
        "daily_batch.predict_lgbm",
        "daily_batch.predict_linear",
    ] {
        assert!(said.contains(task), "{task} was not batched:\n{said}");
    }
    assert!(!said.contains("daily_batch.ensemble"), "{said}");
    let said_per_day = replay(per_day.path(), &["--per-day"]);
    assert!(
        !said_per_day.contains("once over the range"),
        "{said_per_day}"
    );

    let (loop_tables, b) = (dump(batched.path()), dump(per_day.path()));
    for ((table, x), (_, y)) in loop_tables.iter().zip(&b) {
        assert!(x.lines().count() > 1, "{table} is empty");
        assert_eq!(
            x, y,
            "{table} differs between the range batch and day by day"
        );
    }
    let (a, b) = (dump_upstream(batched.path()), dump_upstream(per_day.path()));
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.lines().count() > 1, "{table} is empty");
        assert_eq!(
            x, y,
            "{table} differs between the range batch and day by day"
        );
    }
    // Every task has one succeeded (or skipped) attempt per day either way, under the day's
    // run, so `runs` and lineage read the same.
    let runs = task_runs(batched.path());
    assert_eq!(runs, task_runs(per_day.path()));
    assert!(
        runs.contains("daily_batch,features,2024-01-19,succeeded,1"),
        "{runs}"
    );
    assert_eq!(
        count(
            batched.path(),
            "SELECT count(*) FROM _krxflow.task_runs t LEFT JOIN _krxflow.runs r ON t.run_id = r.run_id \
             WHERE t.ds >= DATE '2024-01-08' AND r.run_id IS NULL"
        ),
        0,
        "every batched attempt belongs to its day's run"
    );
    assert!(
        count(
            batched.path(),
            "SELECT count(*) FROM _krxflow.lineage WHERE task = 'features' AND ds = DATE '2024-01-12'"
        ) == 1
    );
    // The same command again runs what a day-by-day replay runs again (tasks downstream of
    // the skipped Chronos member; nothing that is done and whose upstream is), and changes
    // nothing.
    let again = replay(batched.path(), &[]);
    assert!(!again.contains("daily_batch.features"), "{again}");
    replay(per_day.path(), &["--per-day"]);
    assert_eq!(task_runs(batched.path()), task_runs(per_day.path()));
    assert_eq!(dump(batched.path()), loop_tables);
}

/// A copy of the files of `codes` in which every price after `d` is multiplied by a factor
/// that differs by code and by day (1.5 to 2.3), so that the days' returns and their ranks
/// across codes change too (a rank label is blind to one factor for every code).
fn perturbed_after(dst: &Path, src: &Path, codes: &[&str], d: &str) {
    crate::krx30::subset(dst, src, codes, None);
    for (c, code) in codes.iter().enumerate() {
        let path = dst.join(format!("ohlcv/krx_daily_30/{code}.csv"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 || &l[..10] <= d {
                    return l.to_string();
                }
                let factor = 1.5 + 0.2 * ((i * 7 + c * 3) % 5) as f64;
                let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
                for v in f.iter_mut().take(5).skip(1) {
                    if let Ok(x) = v.parse::<f64>() {
                        *v = format!("{}", (x * factor).round());
                    }
                }
                f.join(",")
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
}

/// The models a lake's registry holds: what was trained, through when, on what (its content
/// hash), not when the training ran.
const MODELS: &str = "SELECT model, kind, version, content_hash, trained_through, metrics \
     FROM model_registry ORDER BY model, version";

#[test]
fn real_ticker_loop_and_its_sunday_models_ignore_every_price_after_their_day() {
    let Some(src) = crate::krx30::data_dir() else {
        return;
    };
    // A cold Friday, then the week to D replayed with its Sunday's retrains (S), then S's
    // retrains run again on the lake that now holds every bar to D (a user re-running a
    // failed Sunday late): the models must cut their own history at S. Six tickers: the
    // trained members' labels are each date's return ranks, defined from five codes a date.
    const S: &str = "2024-06-09";
    const D: &str = "2024-06-14";
    const SIX: &[&str] = &["005930", "005380", "000660", "035420", "051910", "068270"];
    let replay = backfill_loop("2024-06-08", D, &[]);
    let steps: [&[&str]; 4] = [
        &["run", "daily_batch", "--date", "2024-06-07"],
        &replay,
        &["run", "retrain_weekly", "--date", S, "--reprocess", "all"],
        &["run", "retrain_linear", "--date", S, "--reprocess", "all"],
    ];
    let run = |data: &Path| {
        let lake = tempfile::tempdir().unwrap();
        let krx30 = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_krxflow"))
                .current_dir(crate::common::repo_root())
                .env("KRXFLOW_LAKE", lake.path())
                .env("KRXFLOW_DATA", data)
                .env("KRXFLOW_UNIVERSE", "krx30")
                .args(args)
                .output()
                .expect("krxflow runs")
        };
        for args in steps {
            ok(krx30(args));
        }
        let mut tables = dump_with(&krx30, LOOP_TABLES);
        tables.push((
            "model_registry".into(),
            ok(krx30(&["sql", MODELS, "--format", "csv"])),
        ));
        (lake, tables)
    };
    let (cut, after_d, after_s) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    crate::krx30::subset(cut.path(), &src, SIX, Some(D));
    perturbed_after(after_d.path(), &src, SIX, D);
    perturbed_after(after_s.path(), &src, SIX, S);
    let (lake, a) = run(cut.path());

    // Not vacuous: D was forecast by every member from S's models, and the week's outcomes
    // were matched.
    let lake = lake.path();
    let members = ok(krxflow(
        lake,
        &[
            "sql",
            &format!(
                "SELECT DISTINCT model FROM prediction_members WHERE base_date = DATE '{D}' \
                 ORDER BY model"
            ),
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        members.trim_end(),
        "model\nets\nlgbm\nlinear",
        "members at {D}"
    );
    assert_eq!(
        count(
            lake,
            &format!("SELECT count(*) FROM predictions WHERE base_date = DATE '{D}'")
        ),
        6 * 3,
        "6 tickers x 3 horizons"
    );
    assert_eq!(
        count(
            lake,
            &format!(
                "SELECT count(*) FROM model_registry WHERE trained_through = DATE '{S}' \
                 AND kind IN ('lgbm', 'linear')"
            )
        ),
        6,
        "pooled LightGBM and the linear ranker, 3 horizons each, once: S's retrains run \
         again on a lake holding bars to {D} must write the models the replay wrote"
    );
    assert!(count(lake, "SELECT count(*) FROM prediction_outcomes") > 0);

    // Prices after D changed: every table of the loop to D and every model are the same.
    let (_, b) = run(after_d.path());
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.lines().count() > 1, "{table} is empty");
        assert_eq!(x, y, "prices after {D} changed {table}");
    }
    // Prices after S changed: S's models are the same (the week's forecasts may differ: they
    // read the week's closes).
    let (_, c) = run(after_s.path());
    let models = |t: &[(String, String)]| t.last().map(|(_, m)| m.clone()).unwrap_or_default();
    assert_eq!(
        models(&a),
        models(&c),
        "prices after {S} changed {S}'s models"
    );
    assert_ne!(
        a[0].1, c[0].1,
        "the week's predictions read the week's closes, which differ"
    );
}

/// Outcomes of the ensemble whose point is not the point of the prediction they score now.
fn outcomes_of_other_predictions(lake: &Path) -> i64 {
    count(
        lake,
        "SELECT count(*) FROM prediction_outcomes o JOIN predictions p \
         ON o.code = p.code AND o.base_date = p.base_date AND o.horizon = p.horizon \
         WHERE o.model = 'ensemble' AND o.point <> p.point",
    )
}

/// Succeeded attempts of `dag`.`task` so far.
fn ran(lake: &Path, dag: &str, task: &str) -> i64 {
    count(
        lake,
        &format!(
            "SELECT count(*) FROM _krxflow.task_runs \
             WHERE dag = '{dag}' AND task = '{task}' AND state = 'succeeded'"
        ),
    )
}

#[test]
fn predictions_changed_by_a_daily_batch_rerun_are_matched_again_in_the_same_command_or_a_later_one()
{
    let lake = tempfile::tempdir().unwrap();
    let lake = lake.path();
    let run = |env: &[(String, String)], args: &[&str]| {
        let o = crate::common::krxflow_with(lake, env, args);
        assert!(o.status.success(), "krxflow failed:\n{}", text(&o));
    };
    run(&[], &backfill_loop("2024-01-02", "2024-01-12", &[]));
    assert_eq!(outcomes_of_other_predictions(lake), 0);
    let points = "SELECT code, base_date, horizon, point FROM predictions ORDER BY 1, 2, 3";
    let before = ok(krxflow(lake, &["sql", points, "--format", "csv"]));
    let (matched, weighed) = (
        ran(lake, "match_outcomes", "match"),
        ran(lake, "match_outcomes", "weights"),
    );
    // Nothing changed: the matcher's days are up to date, and the weights the matcher wrote
    // for each day (dated that day, after the daily batch read those before it) do not
    // make the batch's ensemble stale either.
    let both = [
        "backfill",
        "daily_batch",
        "match_outcomes",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-12",
    ];
    let o = krxflow(lake, &[&["--log", "krxflow_exec=info"][..], &both].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("runs again"), "{}", text(&o));
    assert_eq!(ran(lake, "match_outcomes", "match"), matched);
    assert_eq!(ran(lake, "match_outcomes", "weights"), weighed);
    // ETS refitted weekly from 01-08: new member forecasts, new ensemble points, and the
    // matcher, in the same command, scores those instead of the ones it had matched.
    let weekly = [("KRXFLOW_ETS_REFIT".to_string(), "weekly".to_string())];
    let from_08 = [&both[..4], &["2024-01-08", "--to", "2024-01-12"]].concat();
    run(&weekly, &from_08);
    let after = ok(krxflow(lake, &["sql", points, "--format", "csv"]));
    assert_ne!(before, after, "the weekly refit changed no prediction");
    assert_eq!(outcomes_of_other_predictions(lake), 0);
    assert!(ran(lake, "match_outcomes", "match") > matched);
    // The daily batch alone, back to daily refits: the matcher's later command sees it.
    run(
        &[],
        &[&both[..2], &["--from", "2024-01-08", "--to", "2024-01-12"]].concat(),
    );
    assert!(
        outcomes_of_other_predictions(lake) > 0,
        "the batch changed no scored point"
    );
    let matched = ran(lake, "match_outcomes", "match");
    run(
        &[],
        &[&["backfill", "match_outcomes"][..], &both[3..]].concat(),
    );
    assert_eq!(outcomes_of_other_predictions(lake), 0);
    let rematched = ran(lake, "match_outcomes", "match") - matched;
    assert!(
        (1..=4).contains(&rematched),
        "{rematched} days matched again"
    );
}
