//! `krxflow backfill`: one DAG run per trading day of a range, with a progress bar.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use krxflow_exec::{
    BackfillOptions, BackfillProgress, Executor, MetricsObserver, PartitionOutcome,
};
use krxflow_metrics::Metrics;

use crate::util::{Ctx, ReprocessArg, load_valid, parse_date, push_metrics, reprocess_of, usage};
use crate::{output, wiring};

/// One DAG run per trading day of a range; resumable (the same command again finishes the
/// rest) and recorded in `_krxflow.backfills`. Exit 1 if any partition failed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG file, or a DAG name looked up as dags/NAME.yaml.
    dag: String,
    #[arg(long)]
    from: String,
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

pub async fn run(a: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, json, pushgateway) = (&ctx.lake, ctx.json, ctx.pushgateway.as_deref());
    let (from, to) = (parse_date(&a.from)?, parse_date(&a.to)?);
    if from > to {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    let dag = load_valid(lake, &a.dag).await?;
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
        let plan = exec.plan_backfill(&dag, &days, reprocess).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            let tasks: Vec<&str> = dag.tasks.iter().map(|t| t.spec.name.as_str()).collect();
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
    let opts = BackfillOptions {
        reprocess,
        parallel: a.parallel.max(1),
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
