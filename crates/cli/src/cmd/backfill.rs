//! `krxflow backfill`: one DAG run per trading day of a range, with a progress bar; with
//! several DAGs, their scheduled runs over the range replayed in schedule order.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use krxflow_exec::{
    BackfillOptions, BackfillProgress, Executor, MetricsObserver, PartitionOutcome, ReplayRun,
    new_run_id,
};
use krxflow_metrics::Metrics;

use crate::ray::RayArgs;
use crate::util::{
    Ctx, ReprocessArg, load_valid, parse_date, push_metrics, reprocess_of, rerun_tasks, usage,
};
use crate::{output, wiring};

/// One DAG run per trading day of a range; resumable (the same command again finishes the
/// rest) and recorded in `_krxflow.backfills`. With several DAGs, every scheduled run of each
/// in the range, in the order the scheduler would have started them (e.g. daily_batch 16:00,
/// match_outcomes 16:30, retrain_weekly Sunday 02:00). Exit 1 if any partition failed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG file(s), or DAG name(s) looked up as dags/NAME.yaml.
    #[arg(required = true, num_args = 1..)]
    dags: Vec<String>,
    /// First day of the range, YYYY-MM-DD (days the DAG's calendar closes are not run).
    #[arg(long)]
    from: String,
    /// Last day of the range, YYYY-MM-DD, included.
    #[arg(long)]
    to: String,
    /// missing: partitions not yet done; failed: only failed ones; all: every partition.
    #[arg(long, value_enum, default_value_t = ReprocessArg::Missing)]
    reprocess: ReprocessArg,
    /// Partitions running at once (1 when a task has depends_on_past).
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Print the planned partitions and what would run; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With several DAGs: run every task day by day. By default the tasks that read nothing
    /// the replay writes day by day run once over the range first (docs/architecture.md,
    /// range batches); the outputs are the same.
    #[arg(long)]
    per_day: bool,
    /// Run these tasks again on every day of the range although they already succeeded
    /// (after a fix, a new model), with every task downstream of them; the others stay up to
    /// date. One DAG at a time. The same command resumes it after a crash or a failure; once
    /// it has succeeded, the same command reruns the range again.
    #[arg(long, num_args = 1.., value_name = "TASK")]
    rerun: Vec<String>,
    /// Run each partition as a job on a Ray cluster instead of here (one DAG at a time).
    #[command(flatten)]
    ray: RayArgs,
}

impl Args {
    /// The replay of `dags` over `from..=to` that `krxflow eval --replay` runs: missing
    /// partitions only, two at a time.
    pub fn replay(dags: Vec<String>, from: NaiveDate, to: NaiveDate) -> Self {
        Self {
            dags,
            from: from.to_string(),
            to: to.to_string(),
            reprocess: ReprocessArg::Missing,
            parallel: 2,
            dry_run: false,
            per_day: false,
            rerun: Vec::new(),
            ray: RayArgs::default(),
        }
    }
}

/// Draws partitions done / failed / remaining with an ETA on stderr (hidden when not a TTY).
struct Bar {
    bar: ProgressBar,
    failed: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
    skipped: std::sync::atomic::AtomicUsize,
    /// `krxflow_backfill_partitions{dag, state}`.
    metrics: Arc<Metrics>,
    dag: String,
}

impl Bar {
    fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (d, f, s) = (
            self.done.load(Relaxed) as u64,
            self.failed.load(Relaxed) as u64,
            self.skipped.load(Relaxed) as u64,
        );
        let total = self.bar.length().unwrap_or(0);
        self.metrics
            .backfill_progress(&self.dag, d, f, s, total.saturating_sub(d + f + s));
    }
}

impl BackfillProgress for Bar {
    fn planned(&self, total: usize, to_run: usize) {
        self.bar.set_length(total as u64);
        self.bar
            .set_message(format!("{to_run} to run, {} already done", total - to_run));
        self.publish();
    }
    fn partition_done(&self, ds: NaiveDate, outcome: PartitionOutcome) {
        use std::sync::atomic::Ordering;
        if matches!(
            outcome,
            PartitionOutcome::Failed | PartitionOutcome::Blocked | PartitionOutcome::Cancelled
        ) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else if outcome == PartitionOutcome::Skipped {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        self.publish();
        self.bar.inc(1);
        self.bar.set_message(format!(
            "last {ds} {outcome:?}, failed {}",
            self.failed.load(Ordering::Relaxed)
        ));
    }
}

pub async fn run(mut a: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, json, pushgateway) = (&ctx.lake, ctx.json, ctx.pushgateway.as_deref());
    let (from, to) = (parse_date(&a.from)?, parse_date(&a.to)?);
    if from > to {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    if !a.rerun.is_empty() && a.reprocess == ReprocessArg::All {
        return Err(usage(
            "--rerun runs the tasks named again; --reprocess all already runs every task",
        ));
    }
    if a.dags.len() > 1 {
        if !a.rerun.is_empty() {
            return Err(usage(
                "--rerun names tasks of one DAG: backfill the DAGs one at a time to rerun tasks",
            ));
        }
        if a.ray.is_set() {
            return Err(usage(
                "--ray-address backfills one DAG at a time: the loop's DAGs read what each \
                 other wrote the day before, so their replay runs here",
            ));
        }
        return replay(a, from, to, ctx).await;
    }
    let dag = load_valid(lake, &a.dags[0]).await?;
    let rerun = rerun_tasks(&dag, std::mem::take(&mut a.rerun))?;
    let calendar = wiring::calendar(&dag.spec.calendar).map_err(|e| usage(e.to_string()))?;
    let days = calendar.trading_days(from, to);
    if days.is_empty() {
        return Err(usage(format!(
            "no trading day in {from}..{to} (calendar `{}`)",
            calendar.name()
        )));
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let exec = Executor::new(lake.clone(), calendar)
        .with_cancel(cancel.clone())
        .with_observer(Arc::new(MetricsObserver::new(metrics.clone())));
    let reprocess = reprocess_of(a.reprocess);
    if a.dry_run {
        let plan = exec.plan_backfill(&dag, &days, reprocess, &rerun).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            let mut tasks: Vec<&str> = dag.tasks.iter().map(|t| t.spec.name.as_str()).collect();
            if !rerun.is_empty() {
                let again = dag.with_downstream(&rerun);
                tasks.retain(|t| again.contains(*t));
            }
            for p in &plan {
                if p.run {
                    println!("{}  run: {}  ({:?})", p.ds, tasks.join(", "), p.status);
                } else {
                    println!("{}  skip ({:?})", p.ds, p.status);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: finishing running partitions, starting no new ones");
            cancel.cancel();
        }
    });
    let bar = ProgressBar::new(days.len() as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} partitions, ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    let progress = Bar {
        bar,
        failed: Default::default(),
        done: Default::default(),
        skipped: Default::default(),
        metrics: metrics.clone(),
        dag: dag.spec.name.clone(),
    };
    let runner = match a.ray.runner_for(ctx)? {
        Some(runner_for) => {
            let dag_file = std::fs::canonicalize(wiring::resolve_dag_path(&a.dags[0]))?;
            Some(runner_for(&dag_file))
        }
        None => None,
    };
    let opts = BackfillOptions {
        reprocess,
        parallel: a.parallel.max(1),
        runner,
        rerun,
    };
    let report = exec.backfill(Arc::new(dag), &days, opts, &progress).await?;
    progress.bar.finish_and_clear();
    watcher.abort();
    let mut by_state: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
    for (ds, o) in &report.partitions {
        by_state
            .entry(format!("{o:?}").to_lowercase())
            .or_default()
            .push(*ds);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "backfill {}  {} partitions {}..{}",
            report.backfill_id,
            days.len(),
            from,
            to
        );
        let rows: Vec<Vec<String>> = by_state
            .iter()
            .map(|(state, ds)| {
                let shown: Vec<String> = ds.iter().take(6).map(|d| d.to_string()).collect();
                let more = if ds.len() > 6 {
                    format!(" … (+{})", ds.len() - 6)
                } else {
                    String::new()
                };
                vec![state.clone(), ds.len().to_string(), shown.join(" ") + &more]
            })
            .collect();
        println!(
            "{}",
            output::table(&["state", "partitions", "dates"], &rows)
        );
    }
    if let Some(url) = pushgateway {
        push_metrics(metrics, url, &progress.dag, "backfill").await;
    }
    let bad = report.count(PartitionOutcome::Failed)
        + report.count(PartitionOutcome::Blocked)
        + report.count(PartitionOutcome::Cancelled);
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Several DAGs: each one's schedule ticks in `from..=to` (its calendar's trading days), run
/// one partition at a time in tick order — what the scheduler would have done, replayed.
/// Engine records of a replay are committed once this many rows wait ...
const RECORD_FLUSH_ROWS: usize = 4096;
/// ... or the oldest waits this long.
const RECORD_FLUSH_AGE: std::time::Duration = std::time::Duration::from_secs(5);

async fn replay(a: Args, from: NaiveDate, to: NaiveDate, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    use krxflow_exec::{RunOptions, TaskState};
    use krxflow_schedule::Ticker;
    let lake = &ctx.lake;
    let metrics = Arc::new(Metrics::new());
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut plan = Vec::new();
    let mut runners = Vec::new();
    let kst = |d: NaiveDate, h: u32| {
        d.and_hms_opt(h, 0, 0)
            .and_then(|t| t.and_local_timezone(chrono_tz::Asia::Seoul).single())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let (Some(start), Some(end)) = (kst(from, 0), to.succ_opt().and_then(|d| kst(d, 0))) else {
        return Err(usage(format!("cannot place {from}..{to} in time")));
    };
    // One executor for every DAG (each with its own calendar), so they share one buffer of
    // engine records: committed every RECORD_FLUSH_ROWS rows or RECORD_FLUSH_AGE, one Delta
    // commit per engine table, instead of a commit per task attempt and per output's lineage.
    // A crash loses at most the unflushed tail; those runs are redone on the next replay and
    // rewrite the same rows (idempotent outputs).
    let shared = Executor::new(
        lake.clone(),
        Arc::new(krxflow_core::WeekdayCalendar::default()),
    )
    .with_cancel(cancel.clone())
    .with_observer(Arc::new(MetricsObserver::new(metrics.clone())))
    .with_buffered_records(RECORD_FLUSH_ROWS, RECORD_FLUSH_AGE);
    for name in &a.dags {
        let dag = Arc::new(load_valid(lake, name).await?);
        let Some(schedule) = &dag.spec.schedule else {
            return Err(usage(format!(
                "DAG `{}` has no schedule: several DAGs are replayed in schedule order",
                dag.spec.name
            )));
        };
        let calendar = wiring::calendar(&dag.spec.calendar).map_err(|e| usage(e.to_string()))?;
        let (cron, tz) = (
            schedule.cron_schedule().map_err(usage)?,
            schedule.tz().map_err(usage)?,
        );
        let ticker = Ticker::new(cron, tz, calendar.clone());
        // `between` is (after, until]: start one second early so midnight ticks count.
        let after = start - chrono::Duration::seconds(1);
        for tick in ticker.between(after, end - chrono::Duration::seconds(1)) {
            plan.push((tick.at, runners.len(), tick.ds));
        }
        runners.push((
            dag,
            calendar.clone(),
            shared.clone().with_calendar(calendar),
        ));
    }
    plan.sort();
    if plan.is_empty() {
        return Err(usage(format!(
            "no scheduled run of these DAGs in {from}..{to}"
        )));
    }
    let reprocess = reprocess_of(a.reprocess);
    if a.dry_run {
        for (at, i, ds) in &plan {
            println!("{at}  {}  {ds}", runners[*i].0.spec.name);
        }
        if !a.per_day {
            let dags: Vec<_> = runners
                .iter()
                .map(|(d, c, _)| (d.clone(), c.clone()))
                .collect();
            let (batched, per_day) = shared.plan_range_batch(&dags);
            println!("once over the range: {}", batched.join(", "));
            for (task, why) in per_day {
                println!("day by day: {task} ({why})");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupt: finishing the running partition, starting no new one");
                cancel.cancel();
            }
        })
    };
    // Each scheduled run's id, fixed up front: the range batch records its attempts under it.
    let runs: Vec<ReplayRun> = plan
        .iter()
        .map(|(_, i, ds)| ReplayRun {
            dag: *i,
            ds: *ds,
            run_id: new_run_id(&runners[*i].0.spec.name, *ds),
        })
        .collect();
    let dags: Vec<_> = runners
        .iter()
        .map(|(d, c, _)| (d.clone(), c.clone()))
        .collect();
    // What already succeeded, from one scan of the engine tables instead of a query per run.
    let known = shared.succeeded_by_run(&dags, &runs).await?;
    let mut settled = vec![BTreeMap::new(); runs.len()];
    if !a.per_day {
        if !ctx.json {
            eprintln!("running the tasks that do not depend on the loop once over the range …");
        }
        let started = std::time::Instant::now();
        let batch = shared
            .run_range_batch(&dags, &runs, &known, reprocess)
            .await?;
        tracing::info!(
            batched = ?batch.batched,
            per_day = ?batch.per_day,
            secs = started.elapsed().as_secs_f64(),
            "range batch"
        );
        if !ctx.json && !batch.batched.is_empty() {
            eprintln!(
                "ran {} tasks once over the range in {:.1} s: {}",
                batch.batched.len(),
                started.elapsed().as_secs_f64(),
                batch.batched.join(", ")
            );
        }
        settled = batch.settled;
    }
    let bar = ProgressBar::new(plan.len() as u64);
    if ctx.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    // dag -> state -> partitions
    let mut states: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut bad = 0usize;
    for ((((_, i, ds), run), done), known) in plan.iter().zip(&runs).zip(settled).zip(known) {
        if cancel.is_cancelled() {
            break;
        }
        let (dag, _, exec) = &runners[*i];
        let mut opts = RunOptions::new(*ds);
        opts.reprocess = reprocess;
        opts.trigger = "backfill".into();
        opts.run_id = Some(run.run_id.clone());
        opts.settled = done;
        opts.known_succeeded = Some(known);
        let report = match exec.run(dag.clone(), opts).await {
            Ok(r) => r,
            Err(e) => {
                // What ran before the engine error keeps its records.
                if let Err(f) = shared.flush_records().await {
                    tracing::warn!("engine records not committed: {f}");
                }
                return Err(e.into());
            }
        };
        let failed = report
            .tasks
            .iter()
            .any(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed));
        let state = if failed {
            bad += 1;
            "failed".to_string()
        } else {
            report.state.to_string()
        };
        *states
            .entry(dag.spec.name.clone())
            .or_default()
            .entry(state.clone())
            .or_default() += 1;
        bar.inc(1);
        bar.set_message(format!("{} {ds} {state}", dag.spec.name));
    }
    bar.finish_and_clear();
    watcher.abort();
    shared.flush_records().await?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&states)?);
    } else {
        println!(
            "replayed {} scheduled runs of {} DAGs, {from}..{to}",
            plan.len(),
            runners.len()
        );
        let rows: Vec<Vec<String>> = states
            .iter()
            .flat_map(|(dag, by)| {
                by.iter()
                    .map(move |(state, n)| vec![dag.clone(), state.clone(), n.to_string()])
            })
            .collect();
        println!("{}", output::table(&["dag", "state", "runs"], &rows));
    }
    if let Some(url) = ctx.pushgateway.as_deref() {
        push_metrics(metrics, url, "", "backfill").await;
    }
    Ok(if bad == 0 && !cancel.is_cancelled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
