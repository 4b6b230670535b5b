//! Statistics over exactly one window of rows, shared by the feature operators: every value is
//! computed from the rows its formula names, so it never depends on where a read started.

/// The `n` values ending at `t`, when there are `n`.
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
