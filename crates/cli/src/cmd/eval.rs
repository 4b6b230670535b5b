//! `krxflow eval`: the track record over a date range against naive baselines, written as
//! `metrics.json`, CSVs and a self-contained `report.html` (crates/eval). With `--replay`, the
//! daily loop is replayed over the range first (the same replay as `krxflow backfill`).

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use krxflow_eval::bootstrap::BootstrapConfig;
use krxflow_eval::input::{self, Dropped};
use krxflow_eval::summary::Kind;
use krxflow_eval::{Config, Evaluation, Input};
use krxflow_lake::Lake;

use crate::util::{Ctx, parse_date, usage};

/// Judge the matured forecasts of a date range (by base date) against naive baselines —
/// always up, always down, always flat, momentum, a random walk with a 60-day-volatility
/// interval — with block-bootstrap intervals, Rank IC, errors, coverage, calibration, a
/// gross long–short return, and long–short books traded net of costs; writes
/// OUT/report.html, OUT/metrics.json and a CSV per table.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// First base date (default: the earliest matured forecast in the lake).
    #[arg(long)]
    from: Option<String>,
    /// Last base date (default: the latest matured forecast).
    #[arg(long)]
    to: Option<String>,
    /// Where the report goes.
    #[arg(long, default_value = "report")]
    out: PathBuf,
    /// Replay these DAGs over --from..--to first (e.g. daily_batch match_outcomes
    /// retrain_weekly), resuming what is already done.
    #[arg(long, num_args = 1..)]
    replay: Vec<String>,
    /// Trading days per bootstrap block.
    #[arg(long, default_value_t = 10)]
    block_days: usize,
    /// Bootstrap resamples behind each interval.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// What a round trip costs, in basis points of the value traded, for the long–short
    /// books traded net of costs: KRX's transaction tax on sales (0.18% in 2024,
    /// 0.15% from 2025) plus a broker's commission each way (borrowing is not included).
    #[arg(long, default_value_t = 20.0)]
    cost_bps: f64,
    /// The dropout book's most codes replaced per leg and day (Qlib's TopkDropout `n_drop`).
    #[arg(long, default_value_t = 1)]
    n_drop: usize,
}

fn lit(d: NaiveDate) -> String {
    format!("DATE '{d}'")
}

async fn query(lake: &Lake, sql: &str) -> anyhow::Result<Vec<arrow::array::RecordBatch>> {
    Ok(krxflow_lake::sql::query(lake, sql).await?.1)
}

/// The base-date range of the scheduled (not user-triggered) matured forecasts.
async fn outcome_range(lake: &Lake) -> anyhow::Result<Option<(NaiveDate, NaiveDate)>> {
    let b = query(
        lake,
        "SELECT min(base_date) AS lo, max(base_date) AS hi FROM prediction_outcomes WHERE NOT user_triggered",
    )
    .await?;
    Ok(input::date_range(&b)?)
}

/// Reads what the evaluation needs for base dates in `from..=to`.
async fn read(lake: &Lake, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Input> {
    let tables = lake.list_tables().await?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    let mut probs = Vec::new();
    if has("predictions") {
        probs.push("SELECT code, base_date, horizon, 'ensemble' AS model, prob_up FROM predictions WHERE NOT user_triggered");
    }
    if has("prediction_members") {
        probs.push("SELECT code, base_date, horizon, model, prob_up FROM prediction_members");
    }
    let (prob_join, prob_col) = if probs.is_empty() {
        (String::new(), "CAST(NULL AS DOUBLE) AS prob_up")
    } else {
        (
            format!(
                "LEFT JOIN ({}) p ON p.code = o.code AND p.base_date = o.base_date AND p.horizon = o.horizon AND p.model = o.model",
                probs.join(" UNION ALL ")
            ),
            "p.prob_up",
        )
    };
    let outcomes_sql = format!(
        "SELECT o.model, o.code, o.base_date, o.horizon, o.base_close, o.point, o.q10, o.q90, \
         o.predicted_direction, {prob_col}, o.actual_return, o.actual_direction \
         FROM prediction_outcomes o {prob_join} \
         WHERE NOT o.user_triggered AND o.base_date BETWEEN {} AND {}",
        lit(from),
        lit(to)
    );
    let mut dropped = Dropped::default();
    let outcomes = input::outcomes(&query(lake, &outcomes_sql).await?, &mut dropped)?;
    // Closes up to the last base date only: the baselines read nothing later. 100 calendar
    // days before the range give the random walk its 60 trading days of volatility.
    let since = from - chrono::Days::new(100);
    let closes = input::closes(
        &query(
            lake,
            &format!(
                "SELECT code, date, close FROM ohlcv_daily WHERE date BETWEEN {} AND {}",
                lit(since),
                lit(to)
            ),
        )
        .await?,
        &mut dropped,
    )?;
    let weights = if has("ensemble_weights") {
        input::weights(
            &query(
                lake,
                &format!(
                    "SELECT as_of, horizon, model, weight FROM ensemble_weights WHERE as_of BETWEEN {} AND {}",
                    lit(from),
                    lit(to)
                ),
            )
            .await?,
            &mut dropped,
        )?
    } else {
        Vec::new()
    };
    Ok(Input {
        outcomes,
        closes,
        weights,
        dropped,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn print_summary(ev: &Evaluation) {
    for &h in &ev.horizons {
        let rows: Vec<_> = ev.summaries.iter().filter(|s| s.horizon == h).collect();
        let best = rows
            .iter()
            .filter(|s| s.kind == Kind::Baseline)
            .max_by(|a, b| a.hit_rate.total_cmp(&b.hit_rate));
        println!(
            "h={h}  {:<22} {:>7} {:>6} {:>24} {:>8} {:>7} {:>8} {:>7}",
            "model",
            "n",
            "hit",
            best.map_or("vs best baseline".into(), |b| format!("vs {}", b.model)),
            "rank_ic",
            "icir",
            "coverage",
            "brier"
        );
        for s in &rows {
            let vs = best
                .and_then(|b| ev.hit_diff(h, &s.model, &b.model))
                .map_or_else(
                    || "-".into(),
                    |d| {
                        format!(
                            "{:+.1} [{:+.1}, {:+.1}]",
                            d.diff * 100.0,
                            d.ci_low * 100.0,
                            d.ci_high * 100.0
                        )
                    },
                );
            println!(
                "     {:<22} {:>7} {:>6.3} {:>24} {:>8} {:>7} {:>8} {:>7}",
                s.model,
                s.n,
                s.hit_rate,
                vs,
                opt(s.rank_ic, 4),
                opt(s.icir, 3),
                opt(s.coverage, 3),
                opt(s.brier, 4)
            );
        }
        let books: Vec<_> = ev.books.iter().filter(|b| b.horizon == h).collect();
        if !books.is_empty() {
            println!(
                "     {:<30} {:>16} {:>9} {:>17}",
                "long–short book, traded",
                "gross/day (t)",
                "turnover",
                format!("net of {:.2}% (t)", ev.config.books.round_trip_cost * 100.0)
            );
            for b in books {
                println!(
                    "     {:<30} {:>16} {:>9.3} {:>17}",
                    format!("{} ({})", b.model, b.book),
                    format!("{:+.3}% ({:+.1})", b.gross_mean * 100.0, b.gross_t),
                    b.turnover,
                    format!("{:+.3}% ({:+.1})", b.net_mean * 100.0, b.net_t)
                );
            }
        }
        println!();
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    let given = (
        args.from.as_deref().map(parse_date).transpose()?,
        args.to.as_deref().map(parse_date).transpose()?,
    );
    if let (Some(from), Some(to)) = given
        && from > to
    {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    if !(args.cost_bps.is_finite() && (0.0..10_000.0).contains(&args.cost_bps)) {
        return Err(usage(format!(
            "--cost-bps {} is not a cost: basis points of the value traded, 0 up to 10000",
            args.cost_bps
        )));
    }
    if args.n_drop == 0 {
        return Err(usage(
            "--n-drop 0 would never trade: the dropout book replaces 1 or more codes a day",
        ));
    }
    let mut code = ExitCode::SUCCESS;
    if !args.replay.is_empty() {
        let (Some(from), Some(to)) = given else {
            return Err(usage("--replay needs --from and --to"));
        };
        let replay = super::backfill::Args::replay(args.replay.clone(), from, to);
        if super::backfill::run(replay, ctx).await? != ExitCode::SUCCESS {
            eprintln!(
                "eval: some partitions of the replay failed (see `krxflow runs`); evaluating what matured"
            );
            code = ExitCode::from(1);
        }
    }
    let has_outcomes = lake
        .list_tables()
        .await?
        .iter()
        .any(|t| t == "prediction_outcomes");
    let range = if has_outcomes {
        outcome_range(lake).await?
    } else {
        None
    };
    let Some((lo, hi)) = range else {
        return Err(usage(
            "no matured forecasts in the lake: run the daily loop first (krxflow backfill daily_batch match_outcomes --from .. --to .., or krxflow eval --replay ...)",
        ));
    };
    let (from, to) = (given.0.unwrap_or(lo), given.1.unwrap_or(hi));
    if from > to {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    let input = read(lake, from, to).await?;
    let cfg = Config {
        flat_band: krxflow_pipelines::common::direction::FLAT_BAND,
        bootstrap: BootstrapConfig {
            block_days: args.block_days,
            resamples: args.resamples,
            ..BootstrapConfig::default()
        },
        bins: 10,
        books: krxflow_eval::books::BookConfig {
            round_trip_cost: args.cost_bps / 10_000.0,
            n_drop: args.n_drop,
        },
    };
    let ev = krxflow_eval::evaluate(input, from, to, &cfg).map_err(|e| match e {
        krxflow_eval::EvalError::Empty(m) => usage(m),
        other => other.into(),
    })?;
    let files = krxflow_eval::report::write(&ev, &args.out)?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "from": from, "to": to, "out": args.out,
                "files": files, "summaries": ev.summaries, "hit_diffs": ev.hit_diffs,
                "books": ev.books,
                "dropped": ev.counts.dropped,
            })
        );
    } else {
        println!(
            "evaluated {} forecasts with base dates {from}..{to} ({} rows left out)\n",
            ev.counts.outcomes,
            ev.counts.dropped.total()
        );
        print_summary(&ev);
        if let Some(dd) = &ev.drawdown {
            println!(
                "largest drawdown of the codes' index: {:.1}% from {} to {}; q10-q90 coverage of the forecasts made from {} to {} is in summary.csv (coverage_drawdown)",
                dd.depth * 100.0,
                dd.peak,
                dd.trough,
                dd.peak,
                dd.window_end
            );
        }
        println!(
            "hit: direction hit rate (±0.3% band); vs: hit-rate difference in points to the best naive baseline, 95% block-bootstrap interval"
        );
        println!("report: {}", args.out.join("report.html").display());
    }
    Ok(code)
}
