//! The charts of one horizon, built from the evaluation's series.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::evaluate::Evaluation;

use super::charts::{Chart, Series, XAxis, day_number};

/// The models in a fixed colour order; any other model gets a colour after them.
const COLOURS: [&str; 11] = [
    "ensemble",
    "ets",
    "lgbm",
    "linear",
    "chronos",
    "finbert",
    crate::baselines::ALWAYS_UP,
    crate::baselines::ALWAYS_DOWN,
    crate::baselines::ALWAYS_FLAT,
    crate::baselines::MOMENTUM,
    crate::baselines::RANDOM_WALK,
];

fn colour_of(model: &str) -> usize {
    COLOURS.iter().position(|m| *m == model).unwrap_or_else(|| {
        COLOURS.len()
            + model.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            }) % 20
    })
}

/// Series per model, in first-seen order (ensemble, members, baselines).
fn by_model<'a, T: 'a>(
    rows: impl Iterator<Item = &'a T>,
    model: impl Fn(&T) -> &str,
    point: impl Fn(&T) -> Option<(f64, f64)>,
) -> Vec<Series> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        let m = model(r).to_string();
        if !map.contains_key(&m) {
            order.push(m.clone());
        }
        let pts = map.entry(m).or_default();
        pts.extend(point(r));
    }
    order
        .into_iter()
        .filter_map(|name| {
            let points = map.remove(&name)?;
            (!points.is_empty()).then(|| Series {
                color: colour_of(&name),
                name,
                points,
            })
        })
        .collect()
}

fn month_start(month: &str) -> Option<f64> {
    NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .map(day_number)
}

fn chart(id: String, title: String, y_label: &str, x: XAxis, series: Vec<Series>) -> Chart {
    Chart {
        id,
        title,
        y_label: y_label.to_string(),
        x,
        series,
        reference: None,
        diagonal_points: false,
    }
}

/// (chart, caption) pairs for horizon `h`.
pub fn for_horizon(ev: &Evaluation, h: u32) -> Vec<(Chart, String)> {
    let d = |date: NaiveDate| day_number(date);
    let hit = by_model(
        ev.cumulative_hit.iter().filter(|r| r.horizon == h),
        |r| &r.model,
        |r| Some((d(r.date), r.hit_rate)),
    );
    let ic = by_model(
        ev.monthly.iter().filter(|r| r.horizon == h),
        |r| &r.model,
        |r| Some((month_start(&r.month)?, r.rank_ic?)),
    );
    let mut coverage = chart(
        format!("coverage-h{h}"),
        format!("q10–q90 coverage by month, h={h}"),
        "coverage",
        XAxis::Date,
        by_model(
            ev.monthly.iter().filter(|r| r.horizon == h),
            |r| &r.model,
            |r| Some((month_start(&r.month)?, r.coverage?)),
        ),
    );
    coverage.reference = Some(0.8);
    let mut reliability = chart(
        format!("reliability-h{h}"),
        format!("Reliability of P(up), h={h}"),
        "observed share up",
        XAxis::Value,
        by_model(
            ev.reliability.iter().filter(|r| r.horizon == h),
            |r| &r.model,
            |r| Some((r.mean_prob, r.observed)),
        ),
    );
    reliability.diagonal_points = true;
    let weights = by_model(
        ev.weights.iter().filter(|r| r.horizon == h),
        |r| &r.model,
        |r| Some((d(r.as_of), r.weight)),
    );
    let ls = by_model(
        ev.long_short_daily.iter().filter(|r| r.horizon == h),
        |r| &r.model,
        |r| Some((d(r.date), r.cumulative)),
    );
    let mut figures = vec![
        (
            chart(format!("hit-h{h}"), format!("Cumulative hit rate, h={h}"), "hit rate", XAxis::Date, hit),
            "direction hit rate from the start of the range through each base day".into(),
        ),
        (
            chart(format!("ic-h{h}"), format!("Rank IC by month, h={h}"), "mean daily Rank IC", XAxis::Date, ic),
            "mean over the month's base days of the Spearman correlation across codes".into(),
        ),
        (coverage, "share of outcomes inside the model's q10–q90 interval; the target is 0.8".into()),
        (reliability, "P(up) in ten bins against the share of those forecasts that went up (±0.3% band)".into()),
        (
            chart(format!("weights-h{h}"), format!("Learned member weights, h={h}"), "mean weight over codes", XAxis::Date, weights),
            "each member's weight per update day (ensemble_weights), averaged over codes".into(),
        ),
        (
            chart(format!("long-short-h{h}"), format!("Cumulative long–short return, h={h}"), "cumulative return", XAxis::Date, ls),
            "top minus bottom quintile by predicted return, h-day return / h summed over base days; gross, costs excluded".into(),
        ),
    ];
    {
        let n = ev.config.books.n_drop;
        let dropout = format!(
            "holding a fifth a leg and replacing at most {n} code{} a leg a day (Qlib's TopkDropout)",
            if n == 1 { "" } else { "s" }
        );
        for (book, what) in [
            (
                crate::books::Rule::Quintiles,
                "holding the day's top and bottom fifth".to_string(),
            ),
            (crate::books::Rule::Dropout, dropout),
        ] {
            let net = by_model(
                ev.book_days
                    .iter()
                    .filter(|r| r.horizon == h && r.book == book.name()),
                |r| &r.model,
                |r| Some((d(r.date), r.cumulative_net)),
            );
            figures.push((
                chart(format!("book-{}-h{h}", book.name()), format!("Cumulative net return of the {} book, h={h}", book.name()), "cumulative net return", XAxis::Date, net),
                format!(
                    "long–short {what}; {h} staggered book(s), one rebalanced at each base day's close, the share of each leg replaced charged {:.2}% a round trip (borrowing excluded); h-day returns / h summed",
                    ev.config.books.round_trip_cost * 100.0
                ),
            ));
        }
    }
    figures
}
