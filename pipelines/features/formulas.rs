//! Each feature's formula for one row of one code: the [`Feature`] a name in
//! [`FEATURES`](crate::tables::FEATURES) stands for, evaluated over that code's [`CodeBars`].

use super::indicators::Series;
use super::window::{last_n, mean, sample_sd};

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
    pub(super) turnover: Vec<f64>,
    pub(super) mkt: Vec<Option<[Option<f64>; 3]>>,
    pub(super) sent: Vec<Option<DaySentiment>>,
    pub(super) with_sentiment: bool,
    pub(super) rsi: Series,
    pub(super) macd: Series,
    pub(super) signal: Series,
    pub(super) hist: Series,
    pub(super) atr: Series,
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
        self.mkt[t].and_then(|m| m[j])
    }

    fn sent(&self, t: usize) -> Option<&DaySentiment> {
        self.sent[t].as_ref()
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

    pub(super) fn value(&self, f: Feature, t: usize) -> Option<f64> {
        let c = self.close[t];
        match f {
            Feature::Ret(k) => Some(c / self.lag_close(t, k)? - 1.0),
            Feature::LogRet(k) => Some((c / self.lag_close(t, k)?).ln()),
            Feature::MaRatio(n) => Some(c / mean(last_n(self.close, t, n)?) - 1.0),
            Feature::Rsi => self.rsi[t],
            Feature::Macd => self.macd[t],
            Feature::MacdSignal => self.signal[t],
            Feature::MacdHist => self.hist[t],
            Feature::Atr => self.atr[t],
            Feature::BbPctB => {
                let w = last_n(self.close, t, 20)?;
                let sd = sample_sd(w);
                Some((c - (mean(w) - 2.0 * sd)) / (4.0 * sd))
            }
            Feature::Vol20 => (t >= 20).then(|| sample_sd(&self.ret1[t - 19..=t])),
            Feature::VolumeZ20 => {
                let w = last_n(self.volume, t, 20)?;
                Some((self.volume[t] - mean(w)) / nonzero(sample_sd(w))?)
            }
            Feature::TurnoverChg => {
                Some(self.turnover[t] / nonzero(self.turnover[t.checked_sub(1)?])? - 1.0)
            }
            Feature::HlRange => Some((self.high[t] - self.low[t]) / c),
            Feature::GapOpen => Some(self.open[t] / self.lag_close(t, 1)? - 1.0),
            Feature::High52w => {
                let w = last_n(self.high, t, 250)?;
                Some(c / w.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 1.0)
            }
            Feature::Low52w => {
                let w = last_n(self.low, t, 250)?;
                Some(c / w.iter().copied().fold(f64::INFINITY, f64::min) - 1.0)
            }
            // 1970-01-01 was a Thursday (4); 0 = Sunday.
            Feature::Dow => Some(f64::from((self.date[t] + 4).rem_euclid(7))),
            Feature::MktRet(k) => self.mkt(t, k),
            Feature::Beta60 => self.beta60(t),
            Feature::RelStrength20 => Some(c / self.lag_close(t, 20)? - 1.0 - self.mkt(t, 20)?),
            Feature::SentN => self
                .with_sentiment
                .then(|| self.sent(t).map_or(0.0, |s| s.n)),
            Feature::SentMean => self.sent(t)?.mean,
            Feature::SentWeighted => self.sent(t)?.weighted,
            Feature::SentPos => self.sent(t)?.pos,
            Feature::SentNeg => self.sent(t)?.neg,
            Feature::SentDecay3 => self.with_sentiment.then(|| {
                let w = |k: usize| {
                    t.checked_sub(k)
                        .and_then(|i| self.sent(i))
                        .and_then(|s| s.weighted)
                        .unwrap_or(0.0)
                };
                w(0) + 0.5 * w(1) + 0.25 * w(2)
            }),
        }
    }
}
