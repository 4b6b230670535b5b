//! Long–short books, traded: at a base day's close a book is rebalanced by its rule, pays a
//! round trip on the share of each leg it replaced, and earns the codes' h-day returns, long
//! the one leg and short the other. At horizon h, h staggered books are held, each rebalanced
//! every h trading days (one a day: Jegadeesh and Titman's overlapping portfolios), so a
//! base day's legs are compared with, and replace, those formed h days before. Two rules:
//!
//! - `quintiles`: hold the day's top and bottom fifth by predicted return (the gross
//!   long–short of [`crate::cross_section`], every day rebuilt);
//! - `dropout`: Qlib's `TopkDropoutStrategy` on each leg: hold a fifth of the codes, and each
//!   day sell at most `n_drop` of them, those ranking among the `n_drop` worst of the held and
//!   the best candidates together, for the best candidates (a code without a forecast that day
//!   is sold as well).
//!
//! A day whose forecasts do not order the codes (fewer than five, or all equal) trades
//! nothing and earns nothing: the book carries its legs to the next day that does. Borrowing
//! costs of the short leg are not included.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::Serialize;

use crate::cross_section::{self, Days, Pick, SeriesStats};

/// How a book picks its legs each day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The day's top and bottom fifth.
    Quintiles,
    /// Qlib's TopkDropout: a fifth held, at most `n_drop` replaced a leg a day.
    Dropout,
}

impl Rule {
    pub const ALL: [Rule; 2] = [Rule::Quintiles, Rule::Dropout];

    /// The name the report and the CSVs give the book.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quintiles => "quintiles",
            Self::Dropout => "dropout",
        }
    }
}

/// How the books trade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BookConfig {
    /// A round trip (a buy and its later sale, or a short sale and its cover) as a fraction of
    /// the value traded.
    pub round_trip_cost: f64,
    /// The dropout book's most codes replaced per leg and day.
    pub n_drop: usize,
}

/// One base day of a model's book.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookDay {
    pub horizon: u32,
    pub model: String,
    pub book: String,
    pub date: NaiveDate,
    /// Mean h-day return of the long leg minus the short leg's.
    pub gross: f64,
    /// The share of each leg bought that day against the legs formed h days before, averaged
    /// over the two (1 when the book is built).
    pub turnover: f64,
    /// `gross` less the round trip on both legs' replaced shares.
    pub net: f64,
    /// `net / h` summed from the start of the range (the staggered books' return).
    pub cumulative_net: f64,
}

/// A model's book over the range, per day: the h-day figures divided by h.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Book {
    pub horizon: u32,
    pub model: String,
    pub book: String,
    pub days: usize,
    pub gross_mean: f64,
    /// t of the mean over blocks of h consecutive base days (their returns overlap within).
    pub gross_t: f64,
    /// The share of a leg replaced per rebalance (every h days).
    pub turnover: f64,
    pub net_mean: f64,
    pub net_t: f64,
}

/// The legs held: codes, sorted.
type Leg<'a> = Vec<&'a str>;

/// The next long leg by a rule, from the codes held and the day's codes ranked best first.
fn next_leg<'a>(rule: Rule, n_drop: usize, held: &[&'a str], ranked: &[&'a str]) -> Leg<'a> {
    let k = ranked.len() / 5;
    let mut next: Vec<&'a str> = match rule {
        Rule::Quintiles => ranked[..k].to_vec(),
        Rule::Dropout => dropout(held, ranked, k, n_drop),
    };
    next.sort_unstable();
    next
}

/// Qlib's TopkDropout: `held` (sorted) against the day's `ranked` codes, `k` to hold.
fn dropout<'a>(held: &[&'a str], ranked: &[&'a str], k: usize, n_drop: usize) -> Vec<&'a str> {
    let is_held = |c: &&str| held.binary_search(c).is_ok();
    // Held codes with a forecast today, best first (the others are sold).
    let mut last: Vec<&'a str> = ranked.iter().copied().filter(is_held).collect();
    // A universe that shrank below what was held: the worst extras go first.
    last.truncate(k);
    let candidates: Vec<&'a str> = ranked.iter().copied().filter(|c| !is_held(c)).collect();
    let room = k - last.len();
    let today = &candidates[..(n_drop + room).min(candidates.len())];
    // The held codes among the n_drop worst of the held and today's candidates together.
    let mut comb: Vec<&'a str> = last.iter().chain(today).copied().collect();
    let position = |c: &&str| ranked.iter().position(|r| r == c).unwrap_or(usize::MAX);
    comb.sort_by_key(position);
    let worst: BTreeSet<&str> = comb.iter().rev().take(n_drop).copied().collect();
    let sell = last.iter().filter(|c| worst.contains(*c)).count();
    let buy = (sell + room).min(today.len());
    last.retain(|c| !worst.contains(c));
    last.extend(&today[..buy]);
    last
}

/// The share of `now` (sorted) not in `before` (sorted).
fn bought(before: &[&str], now: &[&str]) -> f64 {
    if now.is_empty() {
        return 0.0;
    }
    let new = now
        .iter()
        .filter(|c| before.binary_search(c).is_err())
        .count();
    new as f64 / now.len() as f64
}

fn mean_return(leg: &[&str], picks: &[Pick<'_>]) -> f64 {
    let r: Vec<f64> = picks
        .iter()
        .filter(|p| leg.binary_search(&p.2).is_ok())
        .map(|p| p.1)
        .collect();
    r.iter().sum::<f64>() / r.len().max(1) as f64
}

/// One model's book by `rule` over its days ([`cross_section::by_day`]) at `horizon`.
pub fn trade<'a>(
    model: &str,
    rule: Rule,
    horizon: u32,
    days: &Days<'a>,
    cfg: &BookConfig,
) -> Vec<BookDay> {
    let h = horizon.max(1) as usize;
    let mut out = Vec::new();
    // The legs formed on each of the last h base days, oldest first.
    let mut formed: std::collections::VecDeque<(Leg<'a>, Leg<'a>)> = Default::default();
    let mut cumulative = 0.0;
    for (&date, picks) in days {
        // Worst first, ties in code order: the legs of the cross-section's long–short.
        let Some(picks) = cross_section::ordered(picks) else {
            continue;
        };
        let worst: Vec<&str> = picks.iter().map(|p| p.2).collect();
        let best: Vec<&str> = worst.iter().rev().copied().collect();
        // The book this day rebalances: the one formed h base days ago, if any yet.
        let before = if formed.len() == h {
            formed.pop_front()
        } else {
            None
        };
        let (long, short) = before
            .as_ref()
            .map_or((&[][..], &[][..]), |(l, s)| (l.as_slice(), s.as_slice()));
        let next_long = next_leg(rule, cfg.n_drop, long, &best);
        let next_short = next_leg(rule, cfg.n_drop, short, &worst);
        let (bought_long, bought_short) = if before.is_some() {
            (bought(long, &next_long), bought(short, &next_short))
        } else {
            (1.0, 1.0)
        };
        let gross = mean_return(&next_long, &picks) - mean_return(&next_short, &picks);
        let net = gross - cfg.round_trip_cost * (bought_long + bought_short);
        cumulative += net / h as f64;
        formed.push_back((next_long, next_short));
        out.push(BookDay {
            horizon,
            model: model.to_string(),
            book: rule.name().to_string(),
            date,
            gross,
            turnover: (bought_long + bought_short) / 2.0,
            net,
            cumulative_net: cumulative,
        });
    }
    out
}

/// Per day: the mean of an h-day series divided by h, and the t of that mean over blocks of h
/// consecutive base days (overlapping h-day returns are correlated within a block, not much
/// across blocks). `None` with fewer than two blocks.
fn per_day(values: &[f64], h: usize) -> Option<(f64, f64)> {
    let blocks: Vec<f64> = values
        .chunks(h)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let s: SeriesStats = cross_section::stats(&blocks)?;
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some((mean / h as f64, s.t))
}

/// A book's days summarised; `None` with fewer than two blocks of h days.
pub fn summarise(days: &[BookDay]) -> Option<Book> {
    let first = days.first()?;
    let h = first.horizon.max(1) as usize;
    let of = |f: fn(&BookDay) -> f64| -> Vec<f64> { days.iter().map(f).collect() };
    let (gross_mean, gross_t) = per_day(&of(|d| d.gross), h)?;
    let (net_mean, net_t) = per_day(&of(|d| d.net), h)?;
    Some(Book {
        horizon: first.horizon,
        model: first.model.clone(),
        book: first.book.clone(),
        days: days.len(),
        gross_mean,
        gross_t,
        turnover: of(|d| d.turnover).iter().sum::<f64>() / days.len() as f64,
        net_mean,
        net_t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::fixture::outcome;
    use crate::input::Outcome;

    /// Ten codes a day; `order[r]` is the code ranked r-th worst, and each code realises
    /// its number in percent.
    fn days(orders: &[(u64, [usize; 10])]) -> Vec<Outcome> {
        let mut rows = Vec::new();
        for (day, order) in orders {
            for (rank, code) in order.iter().enumerate() {
                rows.push(outcome(
                    &format!("C{code}"),
                    *day,
                    rank as f64 / 100.0,
                    *code as f64 / 100.0,
                ));
            }
        }
        rows.sort_by(|a, b| (a.base_date, &a.code).cmp(&(b.base_date, &b.code)));
        rows
    }

    const CFG: BookConfig = BookConfig {
        round_trip_cost: 0.002,
        n_drop: 1,
    };

    #[test]
    fn the_quintile_book_pays_for_every_code_it_replaces() {
        // Day 0: long {C8, C9}, short {C0, C1}. Day 1: C7 replaces C9 (long). Day 2: all
        // predictions equal, no trade. Day 3: the legs swap sides, against day 1's.
        let mut rows = days(&[
            (0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            (1, [0, 1, 2, 3, 4, 5, 6, 9, 8, 7]),
            (3, [9, 7, 2, 3, 4, 5, 6, 8, 0, 1]),
        ]);
        rows.extend((0..10).map(|c| outcome(&format!("C{c}"), 2, 0.01, 0.0)));
        let refs: Vec<&Outcome> = rows.iter().collect();
        let refs = cross_section::by_day(&refs);
        let book = trade("m", Rule::Quintiles, 1, &refs, &CFG);
        let turnover: Vec<f64> = book.iter().map(|d| d.turnover).collect();
        assert_eq!(turnover, vec![1.0, 0.25, 1.0]);
        // Day 0: (9 + 8) / 2 − (0 + 1) / 2 = 8 percent, less 2 × 0.2% for building both legs.
        assert!((book[0].gross - 0.08).abs() < 1e-12);
        assert!((book[0].net - (0.08 - 0.004)).abs() < 1e-12);
        // Day 1: long {C7, C8} = 7.5%, short {C0, C1} = 0.5%; C7 bought: half the long leg.
        assert!((book[1].gross - 0.07).abs() < 1e-12);
        assert!((book[1].net - (0.07 - 0.001)).abs() < 1e-12);
        let total: f64 = book.iter().map(|d| d.net).sum();
        assert!((book[2].cumulative_net - total).abs() < 1e-12);
        let s = summarise(&book).unwrap();
        assert_eq!((s.days, s.book.as_str()), (3, "quintiles"));
        assert!((s.turnover - 0.75).abs() < 1e-12);
    }

    #[test]
    fn the_dropout_book_replaces_at_most_n_drop_codes_a_leg_a_day() {
        // Twenty codes so each leg holds four; the ranking turns upside down on day 1.
        let mut rows = Vec::new();
        for day in 0..3u64 {
            for c in 0..20usize {
                let rank = if day == 0 { c } else { 19 - c };
                rows.push(outcome(&format!("C{c:02}"), day, rank as f64 / 100.0, 0.0));
            }
        }
        rows.sort_by(|a, b| (a.base_date, &a.code).cmp(&(b.base_date, &b.code)));
        let refs: Vec<&Outcome> = rows.iter().collect();
        let refs = cross_section::by_day(&refs);
        let book = trade("m", Rule::Dropout, 1, &refs, &CFG);
        let turnover: Vec<f64> = book.iter().map(|d| d.turnover).collect();
        assert_eq!(
            turnover,
            vec![1.0, 0.25, 0.25],
            "one of four codes a leg a day"
        );
        let full = trade("m", Rule::Quintiles, 1, &refs, &CFG);
        assert_eq!(
            full[1].turnover, 1.0,
            "the quintile book rebuilds both legs"
        );
    }

    #[test]
    fn at_h_days_each_day_rebalances_the_book_formed_h_days_before() {
        // h = 2: days 0 and 1 build two books; day 2 ranks as day 0 did, so the book it
        // rebalances (day 0's) needs no trade; day 3 ranks as day 0, against day 1's book.
        let same = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let other = [9, 8, 2, 3, 4, 5, 6, 7, 1, 0];
        let mut rows: Vec<Outcome> = days(&[(0, same), (1, other), (2, same), (3, same)])
            .into_iter()
            .map(|o| Outcome { horizon: 2, ..o })
            .collect();
        rows.sort_by(|a, b| (a.base_date, &a.code).cmp(&(b.base_date, &b.code)));
        let refs: Vec<&Outcome> = rows.iter().collect();
        let refs = cross_section::by_day(&refs);
        let book = trade("m", Rule::Quintiles, 2, &refs, &CFG);
        let turnover: Vec<f64> = book.iter().map(|d| d.turnover).collect();
        assert_eq!(turnover, vec![1.0, 1.0, 0.0, 1.0]);
        assert_eq!(book[2].net, book[2].gross, "no trade, no cost");
        // The cumulative curve is per day: each h-day return counts 1/h.
        let total: f64 = book.iter().map(|d| d.net / 2.0).sum();
        assert!((book[3].cumulative_net - total).abs() < 1e-12);
        let s = summarise(&book).unwrap();
        let gross: f64 = book.iter().map(|d| d.gross).sum::<f64>() / 4.0;
        assert!((s.gross_mean - gross / 2.0).abs() < 1e-12);
        assert_eq!((s.horizon, s.days), (2, 4));
    }

    #[test]
    fn dropout_sells_a_held_code_without_a_forecast_and_keeps_a_held_one_that_still_ranks() {
        let ranked = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
        // Held {A, Z}: Z has no forecast today, so it goes; A ranks best and stays; the best
        // candidate, B, fills the room.
        let next = dropout(&["A", "Z"], &ranked, 2, 1);
        assert_eq!(next, vec!["A", "B"]);
        // Held {B, J}: J ranks last of the held and the best candidate (A): sold for A.
        let mut next = dropout(&["B", "J"], &ranked, 2, 1);
        next.sort_unstable();
        assert_eq!(next, vec!["A", "B"]);
        // Held {A, B}: nothing better to buy; the worst of comb is the candidate C.
        assert_eq!(dropout(&["A", "B"], &ranked, 2, 1), vec!["A", "B"]);
    }
}
