//! Each feature's formula over the rows of one code: the [`Feature`] a name in
//! [`FEATURES`](crate::tables::FEATURES) stands for, filled as a column over that code's
//! [`CodeBars`] (rolling windows through the row kernels of [`super::window`], which give each
//! row the bits of the scalar formula over exactly its window).

use std::ops::Range;

use super::indicators::Series;
use super::window::{extreme_rows, full_windows, mean, mean_rows, sd_rows};

/// A feature column, resolved once from its name in [`FEATURES`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Feature {
    Ret(usize),
    LogRet(usize),
    MaRatio(usize),
    Rsi,
    Macd,
    MacdSignal,
    MacdHist,
    BbPctB,
    Atr,
    Vol20,
    VolumeZ20,
    TurnoverChg,
    HlRange,
    GapOpen,
    CloseLoc,
    High52w,
    Low52w,
    Dow,
    MktRet(usize),
    Beta60,
    RelStrength20,
    SentN,
    SentMean,
    SentWeighted,
    SentPos,
    SentNeg,
    SentDecay3,
}

impl Feature {
    pub(super) fn of(name: &str) -> Option<Self> {
        use Feature::*;
        Some(match name {
            "ret_1d" => Ret(1),
            "ret_3d" => Ret(3),
            "ret_5d" => Ret(5),
            "ret_10d" => Ret(10),
            "ret_20d" => Ret(20),
            "logret_1d" => LogRet(1),
            "logret_5d" => LogRet(5),
            "logret_20d" => LogRet(20),
            "ma5_ratio" => MaRatio(5),
            "ma20_ratio" => MaRatio(20),
            "ma60_ratio" => MaRatio(60),
            "rsi14" => Rsi,
            "macd" => Macd,
            "macd_signal" => MacdSignal,
            "macd_hist" => MacdHist,
            "bb_pctb" => BbPctB,
            "atr14_norm" => Atr,
            "vol_20d" => Vol20,
            "volume_z20" => VolumeZ20,
            "turnover_chg" => TurnoverChg,
            "hl_range" => HlRange,
            "gap_open" => GapOpen,
            "close_loc" => CloseLoc,
            "dist_52w_high" => High52w,
            "dist_52w_low" => Low52w,
            "dow" => Dow,
            "mkt_ret_1d" => MktRet(1),
            "mkt_ret_5d" => MktRet(5),
            "beta_60d" => Beta60,
            "rel_strength_20d" => RelStrength20,
            "sent_n_articles" => SentN,
            "sent_mean" => SentMean,
            "sent_weighted" => SentWeighted,
            "sent_pos_ratio" => SentPos,
            "sent_neg_ratio" => SentNeg,
            "sent_decay3" => SentDecay3,
            _ => return None,
        })
    }
}

/// `None` for zero, like SQL `nullif(x, 0)`.
fn nonzero(x: f64) -> Option<f64> {
    (x != 0.0).then_some(x)
}

/// One `sentiment_daily` row's features.
#[derive(Debug, Clone, Copy)]
pub(super) struct DaySentiment {
    pub(super) n: f64,
    pub(super) mean: Option<f64>,
    pub(super) weighted: Option<f64>,
    pub(super) pos: Option<f64>,
    pub(super) neg: Option<f64>,
}

/// One code's bars (a contiguous slice of the sorted input) and what its rows look up.
pub(super) struct CodeBars<'a> {
    pub(super) date: &'a [i32],
    pub(super) open: &'a [f64],
    pub(super) high: &'a [f64],
    pub(super) low: &'a [f64],
    pub(super) close: &'a [f64],
    pub(super) volume: &'a [f64],
    /// close[t]/close[t-1] - 1 (NaN at t = 0, never read there).
    pub(super) ret1: Vec<f64>,
    /// Index returns (1, 5, 20 rows back) on each row's date; `None` without an index table.
    pub(super) mkt: Option<Vec<Option<[Option<f64>; 3]>>>,
    /// The day's sentiment row; `None` without a sentiment table.
    pub(super) sent: Option<Vec<Option<DaySentiment>>>,
    pub(super) rsi: Series,
    pub(super) macd: Series,
    pub(super) signal: Series,
    pub(super) hist: Series,
    pub(super) atr: Series,
}

/// One output column's rows for one code: values and validity (`false` = null; the value of a
/// null row stays as it was, 0.0).
pub(super) struct ColumnRows<'o> {
    pub(super) values: &'o mut [f64],
    pub(super) valid: &'o mut [bool],
}

impl ColumnRows<'_> {
    fn set(&mut self, k: usize, v: f64) {
        self.values[k] = v;
        self.valid[k] = true;
    }

    /// Row by row: `f(t)` for each row `t` of `rows`.
    fn each(&mut self, rows: Range<usize>, f: impl Fn(usize) -> Option<f64>) {
        for (k, t) in rows.enumerate() {
            if let Some(v) = f(t) {
                self.set(k, v);
            }
        }
    }

    fn series(&mut self, rows: Range<usize>, s: &Series) {
        self.each(rows, |t| s[t]);
    }
}

impl CodeBars<'_> {
    fn lag_close(&self, t: usize, k: usize) -> Option<f64> {
        t.checked_sub(k).map(|i| self.close[i])
    }

    fn mkt(&self, t: usize, k: usize) -> Option<f64> {
        let j = match k {
            1 => 0,
            5 => 1,
            _ => 2,
        };
        self.mkt.as_ref()?[t].and_then(|m| m[j])
    }

    fn sent(&self, t: usize) -> Option<&DaySentiment> {
        self.sent.as_ref()?[t].as_ref()
    }

    /// cov(ret_1d, mkt_ret_1d) / var(mkt_ret_1d) over the last 60 rows, when all 60 have both.
    fn beta60(&self, t: usize) -> Option<f64> {
        const N: usize = 60;
        if t < N {
            return None;
        }
        let mut r = [0.0; N];
        let mut m = [0.0; N];
        for (k, i) in (t + 1 - N..=t).enumerate() {
            r[k] = self.ret1[i];
            m[k] = self.mkt(i, 1)?;
        }
        let (mr, mm) = (mean(&r), mean(&m));
        let cov = r
            .iter()
            .zip(&m)
            .map(|(a, b)| (a - mr) * (b - mm))
            .sum::<f64>();
        let var = m.iter().map(|b| (b - mm) * (b - mm)).sum::<f64>();
        // Both sums share the divisor n - 1.
        Some(cov / nonzero(var)?)
    }

    /// Rolling mean and sample sd of `x` over `n` rows for the rows of `rows` whose window is
    /// full (starting at `min_start`): (the first such row's offset in `rows`, means, sds).
    fn mean_sd(
        x: &[f64],
        n: usize,
        rows: Range<usize>,
        min_start: usize,
    ) -> (usize, Vec<f64>, Vec<f64>) {
        let w = full_windows(rows.clone(), n, min_start);
        let (mut m, mut s) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        mean_rows(x, n, w.clone(), &mut m);
        sd_rows(x, n, w.clone(), &m, &mut s);
        (w.start - rows.start, m, s)
    }

    /// Fills `out` (one slot per row of `rows`) with feature `f`.
    pub(super) fn fill(&self, f: Feature, rows: Range<usize>, out: &mut ColumnRows<'_>) {
        let c = self.close;
        match f {
            Feature::Ret(k) => out.each(rows, |t| Some(c[t] / self.lag_close(t, k)? - 1.0)),
            Feature::LogRet(k) => out.each(rows, |t| Some((c[t] / self.lag_close(t, k)?).ln())),
            Feature::MaRatio(n) => {
                let w = full_windows(rows.clone(), n, 0);
                let off = w.start - rows.start;
                let means = &mut out.values[off..];
                mean_rows(c, n, w.clone(), means);
                for (k, t) in w.enumerate() {
                    out.set(off + k, c[t] / out.values[off + k] - 1.0);
                }
            }
            Feature::Rsi => out.series(rows, &self.rsi),
            Feature::Macd => out.series(rows, &self.macd),
            Feature::MacdSignal => out.series(rows, &self.signal),
            Feature::MacdHist => out.series(rows, &self.hist),
            Feature::Atr => out.series(rows, &self.atr),
            Feature::BbPctB => {
                let (off, m, s) = Self::mean_sd(c, 20, rows.clone(), 0);
                for (k, (m, sd)) in m.iter().zip(&s).enumerate() {
                    let t = rows.start + off + k;
                    out.set(off + k, (c[t] - (m - 2.0 * sd)) / (4.0 * sd));
                }
            }
            Feature::Vol20 => {
                // ret_1d exists from row 1 on.
                let (off, _, s) = Self::mean_sd(&self.ret1, 20, rows, 1);
                for (k, sd) in s.into_iter().enumerate() {
                    out.set(off + k, sd);
                }
            }
            Feature::VolumeZ20 => {
                let v = self.volume;
                let (off, m, s) = Self::mean_sd(v, 20, rows.clone(), 0);
                for (k, (m, sd)) in m.iter().zip(&s).enumerate() {
                    let t = rows.start + off + k;
                    if let Some(sd) = nonzero(*sd) {
                        out.set(off + k, (v[t] - m) / sd);
                    }
                }
            }
            Feature::TurnoverChg => out.each(rows, |t| {
                let prev = t.checked_sub(1)?;
                let turnover = |i: usize| c[i] * self.volume[i];
                Some(turnover(t) / nonzero(turnover(prev))? - 1.0)
            }),
            Feature::HlRange => out.each(rows, |t| Some((self.high[t] - self.low[t]) / c[t])),
            Feature::GapOpen => {
                out.each(rows, |t| Some(self.open[t] / self.lag_close(t, 1)? - 1.0))
            }
            Feature::CloseLoc => out.each(rows, |t| {
                let range = self.high[t] - self.low[t];
                (range > 0.0).then(|| (c[t] - self.low[t]) / range)
            }),
            Feature::High52w | Feature::Low52w => {
                let max = matches!(f, Feature::High52w);
                let x = if max { self.high } else { self.low };
                let w = full_windows(rows.clone(), 250, 0);
                let off = w.start - rows.start;
                extreme_rows(x, 250, w.clone(), max, &mut out.values[off..]);
                for (k, t) in w.enumerate() {
                    out.set(off + k, c[t] / out.values[off + k] - 1.0);
                }
            }
            // 1970-01-01 was a Thursday (4); 0 = Sunday.
            Feature::Dow => out.each(rows, |t| Some(f64::from((self.date[t] + 4).rem_euclid(7)))),
            Feature::MktRet(k) => out.each(rows, |t| self.mkt(t, k)),
            Feature::Beta60 => out.each(rows, |t| self.beta60(t)),
            Feature::RelStrength20 => out.each(rows, |t| {
                Some(c[t] / self.lag_close(t, 20)? - 1.0 - self.mkt(t, 20)?)
            }),
            Feature::SentN => {
                if self.sent.is_some() {
                    out.each(rows, |t| Some(self.sent(t).map_or(0.0, |s| s.n)));
                }
            }
            Feature::SentMean => out.each(rows, |t| self.sent(t)?.mean),
            Feature::SentWeighted => out.each(rows, |t| self.sent(t)?.weighted),
            Feature::SentPos => out.each(rows, |t| self.sent(t)?.pos),
            Feature::SentNeg => out.each(rows, |t| self.sent(t)?.neg),
            Feature::SentDecay3 => {
                if self.sent.is_some() {
                    out.each(rows, |t| {
                        let w = |k: usize| {
                            t.checked_sub(k)
                                .and_then(|i| self.sent(i))
                                .and_then(|s| s.weighted)
                                .unwrap_or(0.0)
                        };
                        Some(w(0) + 0.5 * w(1) + 0.25 * w(2))
                    });
                }
            }
        }
    }
}
