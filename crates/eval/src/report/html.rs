//! `report.html`: one self-contained page (styles and SVG charts inline, no script, no
//! network) with a section per horizon: the metric table, the hit-rate differences to every
//! baseline with their bootstrap intervals, and the charts.

use std::fmt::Write;

use crate::baselines;
use crate::evaluate::Evaluation;
use crate::summary::{Kind, Summary};

use super::charts::Chart;
use super::figures;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "—".to_string(), |x| format!("{x:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "—".to_string(), |x| format!("{:.1}%", x * 100.0))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}tr.ensemble td{font-weight:600}\
tr.baseline td{color:#666}figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}.note{font-size:13px;color:#555}";

fn metrics_table(out: &mut String, rows: &[&Summary]) {
    out.push_str("<table><tr><th>model</th><th>n</th><th>hit rate</th><th>Rank IC</th><th>ICIR</th><th>MAE (return)</th><th>pinball q10 / q50 / q90</th><th>q10–q90 coverage</th><th>coverage by vol tercile (low / mid / high)</th><th>coverage in the drawdown window</th><th>width</th><th>Brier (rel / res / unc)</th><th>long–short mean</th></tr>");
    for s in rows {
        let class = match s.kind {
            Kind::Ensemble => "ensemble",
            Kind::Member => "member",
            Kind::Baseline => "baseline",
        };
        let brier = s.brier.map_or_else(
            || "—".to_string(),
            |b| {
                format!(
                    "{b:.4} ({} / {} / {})",
                    num(s.brier_reliability, 4),
                    num(s.brier_resolution, 4),
                    num(s.brier_uncertainty, 4)
                )
            },
        );
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td><td>{}</td><td>{brier}</td><td>{}</td></tr>",
            escape(&s.model),
            s.n,
            num(Some(s.hit_rate), 3),
            num(s.rank_ic, 4),
            num(s.icir, 3),
            pct(s.mae_return),
            num(s.pinball_q10, 4),
            num(s.pinball_q50, 4),
            num(s.pinball_q90, 4),
            num(s.coverage, 3),
            num(s.coverage_low_vol, 3),
            num(s.coverage_mid_vol, 3),
            num(s.coverage_high_vol, 3),
            num(s.coverage_drawdown, 3),
            pct(s.width),
            s.long_short_mean
                .map_or_else(|| "—".to_string(), |m| format!("{:.3}%", m * 100.0)),
        );
    }
    out.push_str("</table>");
}

fn books_table(out: &mut String, ev: &Evaluation, h: u32) {
    if !ev.books.iter().any(|b| b.horizon == h) {
        return;
    }
    let _ = write!(
        out,
        "<h3>Long–short books at {h} day{}, traded</h3><table><tr><th>model</th><th>book</th><th>days</th><th>gross / day (t)</th><th>turnover / rebalance</th><th>net / day (t)</th></tr>",
        if h == 1 { "" } else { "s" }
    );
    for b in ev.books.iter().filter(|b| b.horizon == h) {
        let class = if b.model == "ensemble" {
            "ensemble"
        } else {
            "member"
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{:.3}% ({:.1})</td><td>{}</td><td>{:.3}% ({:.1})</td></tr>",
            escape(&b.model),
            escape(&b.book),
            b.days,
            b.gross_mean * 100.0,
            b.gross_t,
            pct(Some(b.turnover)),
            b.net_mean * 100.0,
            b.net_t
        );
    }
    out.push_str("</table>");
}

fn diffs_table(out: &mut String, ev: &Evaluation, h: u32) {
    out.push_str("<table><tr><th>model − baseline</th><th>n</th><th>days</th><th>model</th><th>baseline</th><th>difference</th><th>95% interval</th><th>P(not better)</th></tr>");
    for d in ev.hit_diffs.iter().filter(|d| d.horizon == h) {
        let _ = write!(
            out,
            "<tr><td>{} − {}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:+.1} pts</td><td>[{:+.1}, {:+.1}]</td><td>{:.3}</td></tr>",
            escape(&d.model),
            escape(&d.baseline),
            d.n,
            d.days,
            d.model_hit_rate,
            d.baseline_hit_rate,
            d.diff * 100.0,
            d.ci_low * 100.0,
            d.ci_high * 100.0,
            d.p_not_better
        );
    }
    out.push_str("</table>");
}

fn figure(out: &mut String, chart: &Chart, caption: &str) -> crate::EvalResult<()> {
    if !chart.has_data() {
        let _ = write!(
            out,
            "<p class=\"note\">{}: nothing to draw in this range ({}).</p>",
            escape(&chart.title),
            escape(caption)
        );
        return Ok(());
    }
    let _ = write!(
        out,
        "<figure data-chart=\"{}\">{}<figcaption>{}</figcaption></figure>",
        escape(&chart.id),
        chart.render()?,
        escape(caption)
    );
    Ok(())
}

/// The whole page.
pub fn page(ev: &Evaluation) -> crate::EvalResult<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>krxflow evaluation {} .. {}</title><style>{STYLE}</style></head><body>",
        ev.from, ev.to
    );
    let _ = write!(
        out,
        "<h1>krxflow evaluation, {} .. {}</h1><p>{} matured forecasts (base dates in the range, scheduled runs only) against the naive baselines made for the same codes and days from closes known at each base day's close. Direction: up / flat / down with a ±{:.1}% flat band. Hit-rate differences are paired on the same forecasts with a moving-block bootstrap over trading days ({}-day blocks, {} resamples). Rank IC: Spearman across codes per base day of predicted against realised return; ICIR = mean / sd of the daily IC. Long–short: the top minus the bottom quintile's realised h-day return per base day, <b>gross: trading costs are excluded</b>; for h &gt; 1 the daily portfolios overlap. The ensemble and each member are also traded as books <b>net of costs</b>: at h days, h staggered books each rebalanced every h base days (one a day), the share of each leg replaced charged {:.2}% a round trip (<code>krxflow eval --cost-bps</code>), borrowing for the short leg not included; \"quintiles\" holds the day's top and bottom fifth, \"dropout\" (Qlib's TopkDropout) holds a fifth per leg and replaces at most {} code(s) a leg a day (<code>--n-drop</code>).</p>",
        ev.from,
        ev.to,
        ev.counts.outcomes,
        ev.config.flat_band * 100.0,
        ev.config.bootstrap.block_days,
        ev.config.bootstrap.resamples,
        ev.config.books.round_trip_cost * 100.0,
        ev.config.books.n_drop
    );
    match &ev.drawdown {
        Some(dd) => {
            let _ = write!(
                out,
                "<p>The range's largest drawdown of the codes' equal-weighted index: {:.1}% from {} to {}. \"Coverage in the drawdown window\" is over the forecasts made in the {} trading days from {} to {}.</p>",
                dd.depth * 100.0,
                dd.peak,
                dd.trough,
                crate::drawdown::WINDOW_DAYS,
                dd.peak,
                dd.window_end
            );
        }
        None => {
            out.push_str("<p>The codes' index did not fall in this range: no drawdown window.</p>")
        }
    }
    for &h in &ev.horizons {
        let rows: Vec<&Summary> = ev.summaries.iter().filter(|s| s.horizon == h).collect();
        let best = rows
            .iter()
            .filter(|s| s.kind == Kind::Baseline)
            .max_by(|a, b| a.hit_rate.total_cmp(&b.hit_rate));
        let _ = write!(
            out,
            "<h2>Horizon {h} trading day{}</h2>",
            if h == 1 { "" } else { "s" }
        );
        let ensemble_vs_best = best.and_then(|b| Some((b, ev.hit_diff(h, "ensemble", &b.model)?)));
        if let Some((best, ens)) = ensemble_vs_best {
            let _ = write!(
                out,
                "<p>Ensemble hit rate {:.3} against the best naive baseline ({}, {:.3}): {:+.1} points, 95% interval [{:+.1}, {:+.1}].</p>",
                ens.model_hit_rate,
                escape(&best.model),
                ens.baseline_hit_rate,
                ens.diff * 100.0,
                ens.ci_low * 100.0,
                ens.ci_high * 100.0
            );
        }
        metrics_table(&mut out, &rows);
        diffs_table(&mut out, ev, h);
        books_table(&mut out, ev, h);
        for (chart, caption) in figures::for_horizon(ev, h) {
            figure(&mut out, &chart, &caption)?;
        }
    }
    let dropped = if ev.counts.dropped.counts.is_empty() {
        "none".to_string()
    } else {
        ev.counts
            .dropped
            .counts
            .iter()
            .map(|(k, v)| format!("{} ({v})", escape(k)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = write!(
        out,
        "<h2>Inputs</h2><p class=\"note\">{} forecasts, {} baseline forecasts ({}), {} closes, {} weight rows. Rows left out: {dropped}.</p></body></html>",
        ev.counts.outcomes,
        ev.counts.baseline_rows,
        baselines::ALL.join(", "),
        ev.counts.closes,
        ev.counts.weights,
    );
    Ok(out)
}
