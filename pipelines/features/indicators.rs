//! Recursive price indicators over one code's date-ordered series (Wilder's RSI and ATR, the
//! EMA and MACD): pure maths, each a linear pass, used by `features.build`.

/// Wilder-smoothed RSI over one code's closes.
pub fn rsi_wilder(close: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; close.len()];
    if close.len() <= n || n == 0 {
        return out;
    }
    let (mut gain, mut loss) = (0.0, 0.0);
    for i in 1..=n {
        let d = close[i] - close[i - 1];
        if d > 0.0 { gain += d } else { loss -= d }
    }
    gain /= n as f64;
    loss /= n as f64;
    let rsi = |g: f64, l: f64| {
        if l == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + g / l)
        }
    };
    out[n] = Some(rsi(gain, loss));
    for i in n + 1..close.len() {
        let d = close[i] - close[i - 1];
        gain = (gain * (n as f64 - 1.0) + d.max(0.0)) / n as f64;
        loss = (loss * (n as f64 - 1.0) + (-d).max(0.0)) / n as f64;
        out[i] = Some(rsi(gain, loss));
    }
    out
}

/// Exponential moving average seeded with the first value (alpha = 2/(n+1)).
pub fn ema(x: &[f64], n: usize) -> Vec<f64> {
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut out = Vec::with_capacity(x.len());
    let mut prev = None;
    for &v in x {
        let e = match prev {
            None => v,
            Some(p) => alpha * v + (1.0 - alpha) * p,
        };
        out.push(e);
        prev = Some(e);
    }
    out
}

/// MACD (12, 26, 9): (macd, signal, hist); null until the slow EMA has 26 values and the
/// signal 9 MACD values.
/// A feature series with nulls for lack of history.
pub type Series = Vec<Option<f64>>;

pub fn macd(close: &[f64]) -> (Series, Series, Series) {
    let fast = ema(close, 12);
    let slow = ema(close, 26);
    let line: Vec<f64> = fast.iter().zip(&slow).map(|(f, s)| f - s).collect();
    let n = close.len();
    let mut m = vec![None; n];
    let mut s = vec![None; n];
    let mut h = vec![None; n];
    if n < 26 {
        return (m, s, h);
    }
    let sig = ema(&line[25..], 9);
    for i in 25..n {
        m[i] = Some(line[i]);
        if i >= 25 + 8 {
            let sv = sig[i - 25];
            s[i] = Some(sv);
            h[i] = Some(line[i] - sv);
        }
    }
    (m, s, h)
}

/// Wilder ATR(n) normalised by the close.
pub fn atr_norm(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<Option<f64>> {
    let len = close.len();
    let mut out = vec![None; len];
    if len <= n || n == 0 {
        return out;
    }
    let tr = |i: usize| {
        let pc = close[i - 1];
        (high[i] - low[i])
            .max((high[i] - pc).abs())
            .max((low[i] - pc).abs())
    };
    let mut atr = (1..=n).map(tr).sum::<f64>() / n as f64;
    out[n] = Some(atr / close[n]);
    for i in n + 1..len {
        atr = (atr * (n as f64 - 1.0) + tr(i)) / n as f64;
        out[i] = Some(atr / close[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsi_matches_a_hand_computed_wilder_series() {
        // 15 closes: 14 changes of +1 then -1 alternating, starting +1.
        let closes: Vec<f64> = (0..16).map(|i| 100.0 + (i % 2) as f64).collect();
        let r = rsi_wilder(&closes, 14);
        assert!(r[13].is_none());
        // changes 1..=14: +1,-1,... -> 7 gains of 1 and 7 losses of 1: RSI 50.
        assert!((r[14].unwrap() - 50.0).abs() < 1e-12);
        // change 15 is +1 -> avg_gain = (0.5*13+1)/14, avg_loss = 0.5*13/14.
        let g = (0.5 * 13.0 + 1.0) / 14.0;
        let l = 0.5 * 13.0 / 14.0;
        assert!((r[15].unwrap() - (100.0 - 100.0 / (1.0 + g / l))).abs() < 1e-12);
    }

    #[test]
    fn ema_and_macd_follow_their_recursions() {
        let x = [1.0, 2.0, 3.0];
        let e = ema(&x, 3); // alpha 0.5
        assert_eq!(e, vec![1.0, 1.5, 2.25]);
        let closes: Vec<f64> = (1..=40).map(|i| i as f64).collect();
        let (m, s, h) = macd(&closes);
        assert!(m[24].is_none() && m[25].is_some());
        assert!(s[32].is_none() && s[33].is_some());
        let fast = ema(&closes, 12);
        let slow = ema(&closes, 26);
        assert!((m[30].unwrap() - (fast[30] - slow[30])).abs() < 1e-12);
        assert!((h[35].unwrap() - (m[35].unwrap() - s[35].unwrap())).abs() < 1e-12);
    }

    #[test]
    fn atr_uses_the_true_range_with_wilder_smoothing() {
        let n = 16;
        let close: Vec<f64> = vec![10.0; n];
        let high: Vec<f64> = vec![11.0; n];
        let mut low: Vec<f64> = vec![9.0; n];
        low[15] = 7.0; // true range 4 on the last day
        let a = atr_norm(&high, &low, &close, 14);
        assert!((a[14].unwrap() - 0.2).abs() < 1e-12); // ATR 2 / close 10
        let atr15 = (2.0 * 13.0 + 4.0) / 14.0;
        assert!((a[15].unwrap() - atr15 / 10.0).abs() < 1e-12);
    }
}
