//! Cron ticks in a DAG's time zone, filtered by its trading calendar.
//!
//! A tick at instant `t` runs partition `ds` = the local date of `t` in the DAG's time zone;
//! a tick whose local date is not a trading day is skipped (KRX holidays, weekends). Ticks
//! missed while the scheduler was down follow the DAG's [`Catchup`] policy.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use krxflow_core::Calendar;

/// What to do with ticks that came due while the scheduler was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    /// Run only the most recent missed tick.
    #[default]
    Latest,
    /// Run every missed tick, oldest first.
    All,
    /// Run no missed tick; wait for the next one.
    None,
}

/// One scheduled run: when it fired and the trading day it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub at: DateTime<Utc>,
    pub ds: NaiveDate,
}

/// Most ticks looked at in one call (a per-second cron over a long outage stays bounded).
const MAX_SCAN: usize = 100_000;

/// A DAG's schedule: cron expression, time zone, calendar.
#[derive(Debug, Clone)]
pub struct Ticker {
    cron: cron::Schedule,
    tz: Tz,
    calendar: Arc<dyn Calendar>,
}

impl Ticker {
    pub fn new(cron: cron::Schedule, tz: Tz, calendar: Arc<dyn Calendar>) -> Self {
        Self { cron, tz, calendar }
    }

    fn tick_at(&self, at: DateTime<Tz>) -> Option<Tick> {
        let ds = at.date_naive();
        self.calendar.is_trading_day(ds).then(|| Tick {
            at: at.with_timezone(&Utc),
            ds,
        })
    }

    /// The first tick strictly after `after` that falls on a trading day.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Tick> {
        self.cron
            .after(&after.with_timezone(&self.tz))
            .take(MAX_SCAN)
            .find_map(|t| self.tick_at(t))
    }

    /// Trading-day ticks in `(after, until]`, oldest first.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Tick> {
        self.cron
            .after(&after.with_timezone(&self.tz))
            .take(MAX_SCAN)
            .take_while(|t| t.with_timezone(&Utc) <= until)
            .filter_map(|t| self.tick_at(t))
            .collect()
    }

    /// The ticks to run now, given the last tick handled and the catch-up policy. A tick is
    /// on time when it is at most `grace` old; older ones were missed.
    pub fn due(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        catchup: Catchup,
        grace: chrono::Duration,
    ) -> Vec<Tick> {
        let ticks = self.between(last, now);
        match catchup {
            Catchup::All => ticks,
            Catchup::Latest => ticks.last().copied().into_iter().collect(),
            Catchup::None => ticks.into_iter().filter(|t| now - t.at <= grace).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KrxCalendar;
    use std::str::FromStr;

    fn ticker(expr: &str) -> Ticker {
        Ticker::new(
            cron::Schedule::from_str(expr).unwrap(),
            chrono_tz::Asia::Seoul,
            Arc::new(KrxCalendar::new()),
        )
    }

    fn kst(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_local_timezone(chrono_tz::Asia::Seoul)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_1600_kst_tick_is_0700_utc_and_runs_that_trading_day() {
        let t = ticker("0 0 16 * * Mon-Fri");
        let next = t.next_after(kst("2024-12-16 15:59:59")).unwrap();
        assert_eq!(next.at, kst("2024-12-16 16:00:00"));
        assert_eq!(next.at.to_rfc3339(), "2024-12-16T07:00:00+00:00");
        assert_eq!(next.ds, d("2024-12-16"));
    }

    #[test]
    fn ticks_on_krx_holidays_are_skipped() {
        // Chuseok 2024-09-16..18: the Friday 13th tick is followed by Thursday the 19th.
        let t = ticker("0 0 16 * * Mon-Fri");
        let next = t.next_after(kst("2024-09-13 16:00:00")).unwrap();
        assert_eq!(next.ds, d("2024-09-19"));
        // Year-end closing day: Dec 31 2024 is a Tuesday and closed.
        let days: Vec<NaiveDate> = t
            .between(kst("2024-12-27 17:00:00"), kst("2025-01-03 17:00:00"))
            .iter()
            .map(|t| t.ds)
            .collect();
        assert_eq!(days, [d("2024-12-30"), d("2025-01-02"), d("2025-01-03")]);
    }

    #[test]
    fn catchup_latest_runs_only_the_newest_missed_tick() {
        let t = ticker("0 0 16 * * Mon-Fri");
        let (last, now) = (kst("2024-12-09 16:00:00"), kst("2024-12-13 18:00:00"));
        let grace = chrono::Duration::seconds(60);
        let latest = t.due(last, now, Catchup::Latest, grace);
        assert_eq!(
            latest.iter().map(|t| t.ds).collect::<Vec<_>>(),
            [d("2024-12-13")]
        );
        let all = t.due(last, now, Catchup::All, grace);
        assert_eq!(all.len(), 4, "10th..13th");
        assert!(all.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
        assert!(t.due(last, now, Catchup::None, grace).is_empty());
        // On time: a tick 10 s old still runs under `none`.
        let on_time = t.due(last, kst("2024-12-13 16:00:10"), Catchup::None, grace);
        assert_eq!(on_time.len(), 1);
    }

    #[test]
    fn nothing_is_due_before_the_first_tick() {
        let t = ticker("0 0 16 * * Mon-Fri");
        let due = t.due(
            kst("2024-12-16 16:00:00"),
            kst("2024-12-16 23:59:00"),
            Catchup::All,
            chrono::Duration::seconds(60),
        );
        assert!(due.is_empty());
    }
}
