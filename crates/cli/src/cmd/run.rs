//! `krxflow run`: one DAG run for one partition (trading day), with a task table.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use krxflow_exec::{Executor, RunOptions, RunState, TaskState};

use crate::output;
use crate::util::{
    Ctx, ReprocessArg, load_valid, parse_date, push_metrics, reprocess_of, rerun_tasks, usage,
};
use crate::wiring;

/// Run a DAG for one partition (trading day).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG file, or a DAG name looked up as dags/NAME.yaml.
    dag: String,
    /// Trading day YYYY-MM-DD, or `latest` (the latest trading day whose 15:30 KST close has
    /// passed).
    #[arg(long)]
    date: String,
    /// Which tasks run again when their fingerprint already succeeded.
    #[arg(long, value_enum, default_value_t = ReprocessArg::Missing)]
    reprocess: ReprocessArg,
    /// Tasks running at once (default: cores).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// What started the run, as recorded in `_krxflow.runs` (the jobs of a backfill or of a
    /// scheduler on a cluster say `backfill` or `schedule`).
    #[arg(long, value_enum, default_value_t = Trigger::Manual)]
    trigger: Trigger,
    /// Run these tasks again although they already succeeded for the day (after a fix, a new
    /// model), and with them every task downstream of them; the others stay up to date.
    #[arg(long, num_args = 1.., value_name = "TASK")]
    rerun: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Trigger {
    Manual,
    Backfill,
    Schedule,
}

/// KRX's regular session closes at 15:30 KST.
const CLOSE_KST: (u32, u32) = (15, 30);

/// The latest trading day whose close has passed at `now`: before 15:30 KST today's
/// partition is not complete yet, so it is the previous trading day.
pub(crate) fn latest_closed_day(
    now: chrono::DateTime<chrono::Utc>,
    calendar: &dyn krxflow_core::Calendar,
) -> NaiveDate {
    let local = now.with_timezone(&chrono_tz::Asia::Seoul);
    let close = chrono::NaiveTime::from_hms_opt(CLOSE_KST.0, CLOSE_KST.1, 0).unwrap_or_default();
    let today = local.date_naive();
    let d = if local.time() >= close {
        today
    } else {
        today - chrono::Duration::days(1)
    };
    calendar.trading_day_on_or_before(d)
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let Args {
        dag,
        date,
        reprocess,
        max_parallel,
        trigger,
        rerun,
    } = args;
    let (lake, json, pushgateway) = (&ctx.lake, ctx.json, ctx.pushgateway.as_deref());
    let dag = load_valid(lake, &dag).await?;
    let rerun = rerun_tasks(&dag, rerun)?;
    let calendar = wiring::calendar(&dag.spec.calendar).map_err(|e| usage(e.to_string()))?;
    let ds = if date == "latest" {
        latest_closed_day(chrono::Utc::now(), calendar.as_ref())
    } else {
        parse_date(&date)?
    };
    if !calendar.is_trading_day(ds) {
        return Err(usage(format!(
            "{ds} is not a trading day in calendar `{}` (previous: {})",
            calendar.name(),
            calendar.prev_trading_day(ds)
        )));
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let metrics = Arc::new(krxflow_metrics::Metrics::new());
    let mut exec = Executor::new(lake.clone(), calendar)
        .with_cancel(cancel.clone())
        .with_observer(Arc::new(krxflow_exec::MetricsObserver::new(
            metrics.clone(),
        )));
    if let Some(n) = max_parallel {
        exec = exec.with_max_parallel(n);
    }
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: cancelling running tasks (Ctrl-C again to force)");
            cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut opts = RunOptions::new(ds);
    opts.reprocess = reprocess_of(reprocess);
    opts.rerun = rerun;
    opts.trigger = match trigger {
        Trigger::Manual => "manual",
        Trigger::Backfill => "backfill",
        Trigger::Schedule => "schedule",
    }
    .into();
    let report = exec.run(Arc::new(dag), opts).await?;
    watcher.abort();
    if let Some(url) = pushgateway {
        push_metrics(metrics, url, &report.dag, "run").await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "run {}  dag {}  ds {}  {}",
            report.run_id, report.dag, report.ds, report.state
        );
        let rows: Vec<Vec<String>> = report
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.task.clone(),
                    t.state.to_string(),
                    t.attempts.to_string(),
                    t.rows_in.to_string(),
                    t.rows_out.to_string(),
                    format!("{:.2}s", t.duration_ms as f64 / 1000.0),
                    // A task failed by its checks wrote its outputs: its error comes first.
                    match (&t.error, t.state) {
                        (Some(e), s) if s != TaskState::Succeeded => e.clone(),
                        _ if t.outputs.is_empty() => t.error.clone().unwrap_or_default(),
                        _ => t.outputs.join(" "),
                    },
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &[
                    "task",
                    "state",
                    "attempts",
                    "rows_in",
                    "rows_out",
                    "time",
                    "outputs / error"
                ],
                &rows
            )
        );
        let counters: Vec<String> = report
            .tasks
            .iter()
            .flat_map(|t| {
                t.counters
                    .iter()
                    .map(move |(k, v)| format!("{}.{k}={v}", t.task))
            })
            .collect();
        if !counters.is_empty() {
            println!("counters: {}", counters.join(" "));
        }
        let checks: Vec<_> = report.tasks.iter().flat_map(|t| &t.checks).collect();
        if !checks.is_empty() {
            let passed = checks.iter().filter(|c| !c.failed()).count();
            println!("checks: {passed} of {} passed", checks.len());
            for c in checks.iter().filter(|c| c.failed()) {
                println!("  {}: {}", c.task, c.why());
            }
        }
    }
    Ok(match report.state {
        RunState::Succeeded => ExitCode::SUCCESS,
        RunState::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kst(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_local_timezone(chrono_tz::Asia::Seoul)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn latest_is_the_last_trading_day_whose_close_has_passed() {
        let cal = krxflow_schedule::KrxCalendar::new();
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Monday 04:00 KST: Monday has not closed, Friday is the latest complete day.
        assert_eq!(
            latest_closed_day(kst("2026-11-23 04:00"), &cal),
            d("2026-11-20")
        );
        assert_eq!(
            latest_closed_day(kst("2026-11-23 15:29"), &cal),
            d("2026-11-20")
        );
        assert_eq!(
            latest_closed_day(kst("2026-11-23 15:30"), &cal),
            d("2026-11-23")
        );
        // Sunday: Friday.
        assert_eq!(
            latest_closed_day(kst("2026-11-22 20:00"), &cal),
            d("2026-11-20")
        );
    }
}
