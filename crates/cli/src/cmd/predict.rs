//! `krxflow predict`: an on-demand forecast for given tickers — only the member and ensemble
//! tasks of `dags/daily_batch.yaml`, restricted to those codes, stored with
//! `user_triggered = true`, printed as a table.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;

use krxflow_exec::{Executor, RunOptions, TaskState};
use krxflow_lake::ReadOptions;

use crate::output::{self, Format};
use crate::util::{Ctx, load_valid, parse_date, usage};
use crate::wiring;

/// The operators of the daily batch that make a forecast (the rest — ingest, sentiment,
/// features — is the daily batch's work for the day).
const FORECAST_OPS: &[&str] = &[
    "lgbm.predict",
    "linear.predict",
    "forecast.ets",
    "forecast.chronos",
    "ensemble.combine",
];

/// Forecast these tickers now: the members and the ensemble for the latest trading day (or
/// --date), from the features and bars the daily batch stored; the rows are flagged
/// user_triggered (outcomes.match with `scope: user_triggered` scores only those).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Ticker codes, e.g. 005930 000660.
    #[arg(required = true, num_args = 1..)]
    codes: Vec<String>,
    /// Horizons in trading days.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    horizons: Vec<u32>,
    /// Trading day YYYY-MM-DD (default: the latest day with bars in the lake).
    #[arg(long)]
    date: Option<String>,
    /// The DAG whose member and ensemble tasks run.
    #[arg(long, default_value = "daily_batch")]
    dag: String,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    let started = std::time::Instant::now();
    let mut dag = load_valid(lake, &args.dag).await?;
    let calendar = wiring::calendar(&dag.spec.calendar).map_err(|e| usage(e.to_string()))?;
    let want_ds = match &args.date {
        Some(d) => parse_date(d)?,
        None => super::run::latest_closed_day(chrono::Utc::now(), calendar.as_ref()),
    };
    // The latest day with bars on or before the asked-for day; which codes have bars then.
    let latest = lake
        .max_date("ohlcv_daily", "date", want_ds)
        .await
        .map_err(|e| {
            usage(format!(
                "no bars in the lake ({e}): run the daily batch first"
            ))
        })?
        .ok_or_else(|| {
            usage(format!(
                "no bars on or before {want_ds} in the lake: run the daily batch first"
            ))
        })?;
    let bars = lake
        .read(
            "ohlcv_daily",
            ReadOptions {
                as_of: Some(latest),
                since: latest.checked_sub_days(chrono::Days::new(40)),
                version: None,
                columns: None,
            },
        )
        .await
        .map_err(|e| {
            usage(format!(
                "no bars in the lake ({e}): run the daily batch first"
            ))
        })?;
    let mut last: std::collections::BTreeMap<String, chrono::NaiveDate> = Default::default();
    for b in &bars.batches {
        let code = krxflow_pipelines::cols::str_col(b, "code")?;
        let date = krxflow_pipelines::cols::date_col(b, "date")?;
        for i in 0..b.num_rows() {
            let d = krxflow_pipelines::common::dates::date_of(date.value(i));
            let e = last.entry(code.value(i).to_string()).or_insert(d);
            *e = (*e).max(d);
        }
    }
    let Some(ds) = last.values().max().copied() else {
        return Err(usage(format!(
            "no bars on or before {want_ds} in the lake: run the daily batch first"
        )));
    };
    let mut problems = Vec::new();
    for code in &args.codes {
        match last.get(code) {
            None => problems.push(format!(
                "{code}: unknown ticker (no bars in the 40 days to {latest})"
            )),
            Some(d) if *d < ds => problems.push(format!(
                "{code}: no bar on {ds} (its last bar is {d}: halted or delisted)"
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(usage(problems.join("\n")));
    }
    // Only the forecasting tasks, for these codes and horizons, flagged user_triggered.
    let keep: BTreeSet<String> = dag
        .tasks
        .iter()
        .filter(|t| FORECAST_OPS.contains(&t.spec.op.as_str()))
        .map(|t| t.spec.name.clone())
        .collect();
    dag.tasks.retain(|t| keep.contains(&t.spec.name));
    dag.spec.tasks.retain(|t| keep.contains(&t.name));
    for t in &mut dag.tasks {
        let with = t
            .spec
            .with
            .as_object_mut()
            .ok_or_else(|| usage("`with:` is not a mapping"))?;
        with.insert("codes".into(), serde_json::json!(args.codes));
        with.insert("horizons".into(), serde_json::json!(args.horizons));
        if t.spec.op == "ensemble.combine" {
            with.insert("user_triggered".into(), serde_json::json!(true));
        }
        t.configured = Arc::from(
            t.op.configure(&t.spec.with)
                .map_err(|e| usage(format!("task `{}`: {e}", t.spec.name)))?,
        );
        t.params_hash = krxflow_core::params_hash(&t.spec.with);
        t.upstream.retain(|u| keep.contains(u));
    }
    if dag.tasks.is_empty() {
        return Err(usage(format!(
            "DAG `{}` has no forecasting task ({})",
            dag.spec.name,
            FORECAST_OPS.join(", ")
        )));
    }
    let exec = Executor::new(lake.clone(), calendar);
    let mut opts = RunOptions::new(ds);
    opts.trigger = "predict".into();
    let report = exec.run(Arc::new(dag), opts).await?;
    for t in &report.tasks {
        match t.state {
            TaskState::Skipped => eprintln!(
                "{}: skipped: {}",
                t.task,
                t.error
                    .as_deref()
                    .unwrap_or("")
                    .trim_start_matches("skipped: ")
            ),
            TaskState::Failed | TaskState::UpstreamFailed => eprintln!(
                "{}: {}: {}",
                t.task,
                t.state,
                t.error.as_deref().unwrap_or("")
            ),
            _ => {}
        }
    }
    let codes = args
        .codes
        .iter()
        .map(|c| format!("'{}'", c.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(", ");
    let hs = args
        .horizons
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let q = format!(
        "SELECT p.code, p.horizon AS h, p.base_date, p.target_date, round(p.base_close, 1) AS close, \
         round(p.point, 1) AS point, round(100 * (p.point / p.base_close - 1), 2) AS point_ret_pct, \
         round(p.q10, 1) AS q10, round(p.q90, 1) AS q90, \
         round(p.prob_up, 3) AS up, round(p.prob_flat, 3) AS flat, round(p.prob_down, 3) AS down, \
         p.direction, string_agg(m.model || ' ' || cast(round(m.weight, 2) AS varchar) || ' (' || m.weight_source || ')', ', ' ORDER BY m.model) AS members \
         FROM predictions p JOIN prediction_members m \
         ON p.code = m.code AND p.base_date = m.base_date AND p.horizon = m.horizon \
         WHERE p.base_date = DATE '{ds}' AND p.code IN ({codes}) AND p.horizon IN ({hs}) \
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 ORDER BY 1, 2"
    );
    let (schema, batches) = krxflow_lake::sql::query(lake, &q)
        .await
        .map_err(|e| usage(format!("reading the predictions: {e}")))?;
    let format = if ctx.json {
        Format::Json
    } else {
        Format::Table
    };
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
        eprintln!("no prediction was made for {ds}: every member was skipped (see above)");
        return Ok(ExitCode::from(1));
    }
    println!("{}", output::batches(&schema, &batches, format)?);
    if !ctx.json {
        println!(
            "base date {ds}, run {} in {:.1} s; stored with user_triggered = true",
            report.run_id,
            started.elapsed().as_secs_f64()
        );
        println!(
            "point: the expected close, which ranks the codes; direction: the likeliest of \
             up/flat/down (±0.3%), which may lie on the other side (README \"The prediction loop\")"
        );
    }
    Ok(ExitCode::SUCCESS)
}
