//! Statistics over exactly one window of rows, shared by the feature operators: every value is
//! computed from the rows its formula names, so it never depends on where a read started.
//!
//! The `*_rows` kernels compute one window per output row "vertically": the accumulator of row
//! `t` receives the window's values in the same order as the scalar [`mean`] and
//! [`sample_sd`] would add them, so each row gets the scalar functions' bits, while the loop
//! over rows is independent per row and vectorises.

use std::collections::VecDeque;
use std::ops::Range;

/// The `n` values ending at `t`, when there are `n`.
#[cfg(test)]
pub(crate) fn last_n(x: &[f64], t: usize, n: usize) -> Option<&[f64]> {
    (t + 1 >= n).then(|| &x[t + 1 - n..=t])
}

pub(crate) fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n - 1), two passes over exactly the window.
pub(crate) fn sample_sd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)).sqrt()
}

/// The rows of `rows` whose `n`-row window ending at them lies inside `x` (starting at
/// `min_start` at the earliest): the rows a rolling kernel writes.
pub(crate) fn full_windows(rows: Range<usize>, n: usize, min_start: usize) -> Range<usize> {
    let lo = rows.start.max(min_start + n - 1);
    lo.min(rows.end)..rows.end
}

/// `out[k]` = [`mean`] of the `n` values of `x` ending at row `rows.start + k`; every row of
/// `rows` must have a full window (see [`full_windows`]).
pub(crate) fn mean_rows(x: &[f64], n: usize, rows: Range<usize>, out: &mut [f64]) {
    debug_assert_eq!(out.len(), rows.len());
    if rows.is_empty() {
        return;
    }
    let base = rows.start + 1 - n;
    // The first add of a float sum is exact whatever the start, so starting from the first
    // value gives `Iterator::sum`'s bits.
    out.copy_from_slice(&x[base..base + rows.len()]);
    for i in 1..n {
        let col = &x[base + i..base + i + rows.len()];
        for (o, v) in out.iter_mut().zip(col) {
            *o += v;
        }
    }
    let n = n as f64;
    for o in out.iter_mut() {
        *o /= n;
    }
}

/// `sd[k]` = [`sample_sd`] of the window that `mean` (from [`mean_rows`]) describes.
pub(crate) fn sd_rows(x: &[f64], n: usize, rows: Range<usize>, mean: &[f64], sd: &mut [f64]) {
    debug_assert_eq!(sd.len(), rows.len());
    if rows.is_empty() {
        return;
    }
    let base = rows.start + 1 - n;
    for i in 0..n {
        let col = &x[base + i..base + i + rows.len()];
        for ((s, v), m) in sd.iter_mut().zip(col).zip(mean) {
            let d = (v - m) * (v - m);
            *s = if i == 0 { d } else { *s + d };
        }
    }
    let div = n as f64 - 1.0;
    for s in sd.iter_mut() {
        *s = (*s / div).sqrt();
    }
}

/// `out[k]` = the largest (`max`) or smallest value of the `n` values of `x` ending at row
/// `rows.start + k` (NaN ignored, like folding with `f64::max` / `f64::min`), one pass with a
/// monotonic queue. Extremes are exact, so the value does not depend on where the pass began.
pub(crate) fn extreme_rows(x: &[f64], n: usize, rows: Range<usize>, max: bool, out: &mut [f64]) {
    debug_assert_eq!(out.len(), rows.len());
    if rows.is_empty() {
        return;
    }
    let key = |v: f64| match (v.is_nan(), max) {
        (true, true) => f64::NEG_INFINITY,
        (true, false) => f64::INFINITY,
        (false, _) => v,
    };
    // Indices whose values are strictly monotone from the front (the window's extreme).
    let mut queue: VecDeque<usize> = VecDeque::with_capacity(n);
    let start = rows.start + 1 - n;
    for t in start..rows.end {
        let v = key(x[t]);
        while let Some(&back) = queue.back() {
            let b = key(x[back]);
            if (max && b <= v) || (!max && b >= v) {
                queue.pop_back();
            } else {
                break;
            }
        }
        queue.push_back(t);
        if let Some(&front) = queue.front()
            && front + n <= t
        {
            queue.pop_front();
        }
        if t >= rows.start
            && let Some(&front) = queue.front()
        {
            out[t - rows.start] = key(x[front]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series with ties, a NaN and large offsets (where a running sum would drift).
    fn series() -> Vec<f64> {
        (0..400)
            .map(|i| {
                if i == 77 {
                    f64::NAN
                } else {
                    1e6 + ((i * 37 % 101) as f64).sin() * 3.0 + (i % 7) as f64
                }
            })
            .collect()
    }

    #[test]
    fn row_kernels_give_the_scalar_windows_bits() {
        let x: Vec<f64> = series()
            .into_iter()
            .map(|v| if v.is_nan() { 1.0 } else { v })
            .collect();
        for n in [1, 2, 5, 20, 60, 250] {
            let rows = full_windows(3..x.len(), n, 0);
            let mut m = vec![0.0; rows.len()];
            let mut s = vec![0.0; rows.len()];
            mean_rows(&x, n, rows.clone(), &mut m);
            sd_rows(&x, n, rows.clone(), &m, &mut s);
            for (k, t) in rows.enumerate() {
                let w = last_n(&x, t, n).unwrap();
                assert_eq!(m[k].to_bits(), mean(w).to_bits(), "mean n={n} t={t}");
                if n > 1 {
                    assert_eq!(s[k].to_bits(), sample_sd(w).to_bits(), "sd n={n} t={t}");
                }
            }
        }
    }

    #[test]
    fn extremes_match_a_fold_over_each_window_whatever_the_first_row() {
        let x = series();
        for n in [1, 3, 250] {
            for first in [0, 10, 300] {
                let rows = full_windows(first..x.len(), n, 0);
                let mut hi = vec![0.0; rows.len()];
                let mut lo = vec![0.0; rows.len()];
                extreme_rows(&x, n, rows.clone(), true, &mut hi);
                extreme_rows(&x, n, rows.clone(), false, &mut lo);
                for (k, t) in rows.enumerate() {
                    let w = last_n(&x, t, n).unwrap();
                    let want_hi = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let want_lo = w.iter().copied().fold(f64::INFINITY, f64::min);
                    assert_eq!(hi[k], want_hi, "max n={n} t={t}");
                    assert_eq!(lo[k], want_lo, "min n={n} t={t}");
                }
            }
        }
    }

    #[test]
    fn full_windows_starts_where_the_first_window_fills() {
        assert_eq!(full_windows(0..10, 5, 0), 4..10);
        assert_eq!(full_windows(6..10, 5, 0), 6..10);
        assert_eq!(full_windows(0..3, 5, 0), 3..3);
        assert_eq!(full_windows(0..30, 20, 1), 20..30);
    }
}
