//! The whole evaluation of a track record over a date range.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use crate::baselines::{self, History};
use crate::books::{self, Book, BookConfig, BookDay};
use crate::bootstrap::{self, BootstrapConfig, HitDiff};
use crate::calibration::{self, Bin};
use crate::cross_section;
use crate::error::{EvalError, EvalResult};
use crate::input::{Close, Dropped, Outcome, Weight};
use crate::series::{self, CumulativeHit, Daily, MeanWeight, Monthly};
use crate::summary::{self, Kind, Summary, VolTerciles};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Config {
    /// The flat band of a direction (the pipeline's, ±0.3%).
    pub flat_band: f64,
    pub bootstrap: BootstrapConfig,
    /// Bins of the reliability diagram.
    pub bins: usize,
    /// How the 1-day long–short books trade ([`books`]).
    pub books: BookConfig,
}

/// What the evaluation reads (see [`crate::input`]).
#[derive(Debug, Default)]
pub struct Input {
    pub outcomes: Vec<Outcome>,
    /// Every close the baselines may need: from well before the range to its end.
    pub closes: Vec<Close>,
    pub weights: Vec<Weight>,
    pub dropped: Dropped,
}

/// A reliability bin of one model and horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub horizon: u32,
    pub model: String,
    pub low: f64,
    pub high: f64,
    pub n: usize,
    pub mean_prob: f64,
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub outcomes: usize,
    pub baseline_rows: usize,
    pub closes: usize,
    pub weights: usize,
    pub dropped: Dropped,
}

/// Everything the report shows; `metrics.json` is this, serialised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub config: Config,
    pub counts: Counts,
    pub horizons: Vec<u32>,
    /// The range's largest drawdown of the codes' equal-weighted index (coverage is reported
    /// for the 60 trading days from its peak).
    pub drawdown: Option<crate::drawdown::Drawdown>,
    pub summaries: Vec<Summary>,
    pub hit_diffs: Vec<HitDiff>,
    pub cumulative_hit: Vec<CumulativeHit>,
    pub monthly: Vec<Monthly>,
    pub rank_ic_daily: Vec<Daily>,
    pub long_short_daily: Vec<Daily>,
    /// The long–short books of the ensemble and each member at every horizon, traded net of
    /// costs.
    pub books: Vec<Book>,
    pub book_days: Vec<BookDay>,
    pub reliability: Vec<ReliabilityBin>,
    pub weights: Vec<MeanWeight>,
}

impl Evaluation {
    pub fn summary(&self, horizon: u32, model: &str) -> Option<&Summary> {
        self.summaries
            .iter()
            .find(|s| s.horizon == horizon && s.model == model)
    }

    pub fn hit_diff(&self, horizon: u32, model: &str, baseline: &str) -> Option<&HitDiff> {
        self.hit_diffs
            .iter()
            .find(|d| d.horizon == horizon && d.model == model && d.baseline == baseline)
    }
}

/// Evaluates the forecasts whose base date is in `from..=to`.
pub fn evaluate(
    input: Input,
    from: NaiveDate,
    to: NaiveDate,
    cfg: &Config,
) -> EvalResult<Evaluation> {
    let mut scored: Vec<Outcome> = input
        .outcomes
        .into_iter()
        .filter(|o| (from..=to).contains(&o.base_date) && !baselines::is_baseline(&o.model))
        .collect();
    // The lake hands rows in no fixed order; sums over them must not depend on it (the same
    // lake gives the same report, to the last bit).
    scored.sort_by(|a, b| {
        (a.horizon, &a.model, a.base_date, &a.code).cmp(&(
            b.horizon,
            &b.model,
            b.base_date,
            &b.code,
        ))
    });
    let mut weights = input.weights;
    weights.sort_by(|a, b| {
        (a.horizon, &a.model, a.as_of)
            .cmp(&(b.horizon, &b.model, b.as_of))
            .then(a.weight.total_cmp(&b.weight))
    });
    if scored.is_empty() {
        return Err(EvalError::Empty(format!(
            "no matured forecast with a base date in {from}..{to} (run the daily batch and match_outcomes over the range first)"
        )));
    }
    let history = History::new(&input.closes);
    let naive = baselines::baselines(&scored, &history, cfg.flat_band);
    let vol: HashMap<(String, NaiveDate), f64> = scored
        .iter()
        .filter_map(|o| {
            Some((
                (o.code.clone(), o.base_date),
                history.at(&o.code, o.base_date)?.vol?,
            ))
        })
        .collect();
    let terciles = VolTerciles::new(vol);
    let drawdown = crate::drawdown::largest(&input.closes, from, to);
    let counts = Counts {
        outcomes: scored.len(),
        baseline_rows: naive.len(),
        closes: input.closes.len(),
        weights: weights.len(),
        dropped: input.dropped,
    };

    // (horizon, kind, model) → rows: ensemble first, then members, then baselines.
    let mut groups: BTreeMap<(u32, Kind, String), Vec<&Outcome>> = BTreeMap::new();
    for o in scored.iter().chain(&naive) {
        groups
            .entry((o.horizon, Kind::of(&o.model), o.model.clone()))
            .or_default()
            .push(o);
    }
    let mut ev = Evaluation {
        from,
        to,
        config: *cfg,
        counts,
        horizons: groups
            .keys()
            .map(|k| k.0)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        drawdown,
        summaries: Vec::new(),
        hit_diffs: Vec::new(),
        cumulative_hit: Vec::new(),
        monthly: Vec::new(),
        rank_ic_daily: Vec::new(),
        long_short_daily: Vec::new(),
        books: Vec::new(),
        book_days: Vec::new(),
        reliability: Vec::new(),
        weights: series::mean_weights(&weights, from, to),
    };
    for ((horizon, kind, model), rows) in &groups {
        let days = cross_section::by_day(rows);
        let cross_section::CrossSection { ic, long_short: ls } = cross_section::daily(&days);
        let ic_values: Vec<f64> = ic.iter().map(|p| p.1).collect();
        let ls_values: Vec<f64> = ls.iter().map(|p| p.1).collect();
        let cal = calibration::calibration(rows, cfg.bins);
        ev.summaries.push(summary::summarise(
            rows,
            cal.as_ref(),
            cross_section::stats(&ic_values),
            cross_section::stats(&ls_values),
            &terciles,
            ev.drawdown.as_ref(),
        ));
        if let Some(c) = cal {
            ev.reliability
                .extend(c.bins.into_iter().map(|b: Bin| ReliabilityBin {
                    horizon: *horizon,
                    model: model.clone(),
                    low: b.low,
                    high: b.high,
                    n: b.n,
                    mean_prob: b.mean_prob,
                    observed: b.observed,
                }));
        }
        ev.cumulative_hit.extend(series::cumulative_hit(rows));
        ev.monthly.extend(series::monthly(rows, &ic));
        ev.rank_ic_daily
            .extend(series::daily(*horizon, model, &ic, 1.0));
        ev.long_short_daily
            .extend(series::daily(*horizon, model, &ls, f64::from(*horizon)));
        if *kind != Kind::Baseline {
            for rule in books::Rule::ALL {
                let days = books::trade(model, rule, *horizon, &days, &cfg.books);
                ev.books.extend(books::summarise(&days));
                ev.book_days.extend(days);
            }
        }
        if *kind != Kind::Baseline {
            for b in baselines::ALL {
                if let Some(base) = groups.get(&(*horizon, Kind::Baseline, b.to_string())) {
                    ev.hit_diffs
                        .extend(bootstrap::hit_diff(rows, base, &cfg.bootstrap));
                }
            }
        }
    }
    Ok(ev)
}

/// A synthetic universe with a known answer: 30 codes over 300 days whose next-day return is
/// 1% × a signal in [−1, 1] plus a market move and noise. `ensemble` forecasts from the signal;
/// `shuffled` from the signal of another code and day.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::bootstrap::SplitMix;
    use crate::input::Direction;

    pub const CODES: usize = 30;
    pub const DAYS: usize = 300;

    pub fn day(d: usize) -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 2).unwrap() + chrono::Days::new(d as u64)
    }

    pub fn universe() -> Input {
        let mut g = SplitMix(42);
        let mut u = move || (g.next() % 1_000_000) as f64 / 1_000_000.0;
        let signal: Vec<Vec<f64>> = (0..CODES)
            .map(|_| (0..DAYS).map(|_| 2.0 * u() - 1.0).collect())
            .collect();
        let market: Vec<f64> = (0..DAYS).map(|_| 0.02 * (u() - 0.5)).collect();
        let mut closes = Vec::new();
        let mut outcomes = Vec::new();
        for c in 0..CODES {
            let code = format!("{c:06}");
            let mut close = 100.0;
            let mut series = vec![close];
            for d in 0..DAYS - 1 {
                close *= 1.0 + 0.01 * signal[c][d] + market[d] + 0.03 * (u() - 0.5);
                series.push(close);
            }
            for (d, &close) in series.iter().enumerate() {
                closes.push(Close {
                    code: code.clone(),
                    date: day(d),
                    close,
                });
            }
            for d in 61..DAYS - 1 {
                let (base, next) = (series[d], series[d + 1]);
                let actual_return = next / base - 1.0;
                let forecast = |model: &str, s: f64| {
                    let r = 0.01 * s;
                    Outcome {
                        model: model.into(),
                        code: code.clone(),
                        base_date: day(d),
                        horizon: 1,
                        base_close: base,
                        point: Some(base * (1.0 + r)),
                        q10: Some(base * (1.0 + r - 0.015)),
                        q90: Some(base * (1.0 + r + 0.015)),
                        predicted: Direction::of_return(r, 0.003),
                        prob_up: Some((0.45 + 0.3 * s).clamp(0.0, 1.0)),
                        actual_return,
                        actual: Direction::of_return(actual_return, 0.003),
                    }
                };
                outcomes.push(forecast("ensemble", signal[c][d]));
                outcomes.push(forecast(
                    "shuffled",
                    signal[(c * 7 + 3) % CODES][(d * 13 + 5) % DAYS],
                ));
            }
        }
        let weights = (61..DAYS)
            .step_by(5)
            .flat_map(|d| {
                [("ensemble_member_a", 0.6), ("ensemble_member_b", 0.4)].map(|(m, w)| Weight {
                    as_of: day(d),
                    horizon: 1,
                    model: m.into(),
                    weight: w,
                })
            })
            .collect();
        Input {
            outcomes,
            closes,
            weights,
            dropped: Dropped::default(),
        }
    }

    /// Model "m"'s 1-day forecast for `code`, `day` days after 2024-03-04: a `predicted`
    /// return (as its point) and the `realised` one.
    pub fn outcome(code: &str, day: u64, predicted: f64, realised: f64) -> Outcome {
        Outcome {
            model: "m".into(),
            code: code.into(),
            base_date: NaiveDate::from_ymd_opt(2024, 3, 4).unwrap() + chrono::Days::new(day),
            horizon: 1,
            base_close: 100.0,
            point: Some(100.0 * (1.0 + predicted)),
            q10: None,
            q90: None,
            predicted: Direction::Up,
            prob_up: None,
            actual_return: realised,
            actual: Direction::of_return(realised, 0.003),
        }
    }

    pub fn config() -> Config {
        Config {
            flat_band: 0.003,
            bootstrap: BootstrapConfig::default(),
            bins: 10,
            books: BookConfig {
                round_trip_cost: 0.002,
                n_drop: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    #[test]
    fn the_ensemble_and_members_are_traded_in_both_books_at_every_horizon() {
        let mut input = universe();
        let three: Vec<Outcome> = input
            .outcomes
            .iter()
            .map(|o| Outcome {
                horizon: 3,
                ..o.clone()
            })
            .collect();
        input.outcomes.extend(three);
        let ev = evaluate(input, day(0), day(DAYS), &config()).unwrap();
        let names: Vec<(u32, &str, &str)> = ev
            .books
            .iter()
            .map(|b| (b.horizon, b.model.as_str(), b.book.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (1, "ensemble", "quintiles"),
                (1, "ensemble", "dropout"),
                (1, "shuffled", "quintiles"),
                (1, "shuffled", "dropout"),
                (3, "ensemble", "quintiles"),
                (3, "ensemble", "dropout"),
                (3, "shuffled", "quintiles"),
                (3, "shuffled", "dropout")
            ]
        );
        let book = |m: &str, b: &str| {
            ev.books
                .iter()
                .find(|x| x.horizon == 1 && x.model == m && x.book == b)
                .unwrap()
        };
        let (full, drop) = (book("ensemble", "quintiles"), book("ensemble", "dropout"));
        // The quintile book's gross is the summary's long–short.
        let s = ev.summary(1, "ensemble").unwrap();
        assert!((full.gross_mean - s.long_short_mean.unwrap()).abs() < 1e-12);
        // Dropout trades a sixth of a leg a day at most (six codes a leg of 30).
        assert!(
            drop.turnover < 0.2 && full.turnover > 0.5,
            "{drop:?} {full:?}"
        );
        assert!(full.gross_mean > 0.0 && drop.gross_mean > 0.0);
        assert!((full.net_mean - (full.gross_mean - 2.0 * 0.002 * full.turnover)).abs() < 1e-12);
    }

    #[test]
    fn a_model_that_sees_the_signal_beats_every_baseline_and_a_shuffled_one_does_not() {
        let ev = evaluate(universe(), day(0), day(DAYS), &config()).unwrap();
        let ens = ev.summary(1, "ensemble").unwrap();
        for b in baselines::ALL {
            let d = ev.hit_diff(1, "ensemble", b).unwrap();
            assert!(d.ci_low > 0.0, "ensemble vs {b}: {d:?}");
        }
        assert!(
            ens.rank_ic.unwrap() > 0.1 && ens.rank_ic_t.unwrap() > 5.0,
            "{ens:?}"
        );
        assert!(ens.long_short_mean.unwrap() > 0.0);
        // Coverage is also reported in the window of the range's largest drawdown.
        let dd = ev.drawdown.as_ref().unwrap();
        assert!(dd.depth < 0.0 && dd.peak < dd.trough && dd.trough <= day(DAYS));
        assert!(ens.coverage_drawdown.is_some());

        let best = ev
            .summaries
            .iter()
            .filter(|s| s.kind == Kind::Baseline)
            .max_by(|a, b| a.hit_rate.total_cmp(&b.hit_rate))
            .unwrap();
        let sh = ev.hit_diff(1, "shuffled", &best.model).unwrap();
        assert!(sh.ci_low < 0.0, "shuffled vs {}: {sh:?}", best.model);
        let s = ev.summary(1, "shuffled").unwrap();
        assert!(s.rank_ic_t.unwrap().abs() < 3.0, "{s:?}");
    }

    #[test]
    fn every_baseline_is_scored_on_the_same_forecasts_and_the_range_filters_base_dates() {
        let ev = evaluate(universe(), day(100), day(149), &config()).unwrap();
        let n = ev.summary(1, "ensemble").unwrap().n;
        assert_eq!(n, CODES * 50);
        for b in baselines::ALL {
            assert_eq!(ev.summary(1, b).unwrap().n, n, "{b}");
        }
        assert_eq!(ev.horizons, [1]);
        assert!(
            ev.weights
                .iter()
                .all(|w| (day(100)..=day(149)).contains(&w.as_of))
        );
    }

    #[test]
    fn appending_later_prices_changes_nothing_before_them() {
        let cut = day(200);
        let mut early = universe();
        early
            .closes
            .retain(|c| c.date <= cut + chrono::Days::new(1));
        early.outcomes.retain(|o| o.base_date < cut);
        let a = evaluate(early, day(0), cut - chrono::Days::new(1), &config()).unwrap();
        let b = evaluate(universe(), day(0), cut - chrono::Days::new(1), &config()).unwrap();
        assert_eq!(a.summaries, b.summaries);
        assert_eq!(a.hit_diffs, b.hit_diffs);
    }

    #[test]
    fn the_order_rows_arrive_in_does_not_change_a_single_bit() {
        let mut shuffled = universe();
        shuffled.outcomes.reverse();
        shuffled.weights.reverse();
        let n = shuffled.outcomes.len();
        shuffled.outcomes.swap(0, n / 2);
        let a = evaluate(universe(), day(0), day(DAYS), &config()).unwrap();
        let b = evaluate(shuffled, day(0), day(DAYS), &config()).unwrap();
        assert!(a == b, "the evaluation depends on row order");
    }

    #[test]
    fn an_empty_range_says_what_to_run() {
        let err = evaluate(universe(), day(400), day(410), &config()).unwrap_err();
        assert!(
            err.to_string()
                .contains("run the daily batch and match_outcomes"),
            "{err}"
        );
    }
}
