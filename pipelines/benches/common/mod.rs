//! Helpers shared by the pipeline benchmarks (each bench uses a subset).
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Timed repetitions per measurement; the median is reported.
pub const RUNS: usize = 3;

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians of [`RUNS`] alternating timings of `bare` (the baseline) and `through` (the same
/// work through krxflow), after one untimed warm-up of each (session creation, first-run
/// allocations). Alternating keeps drift in machine load from favouring either side.
pub fn compare(mut bare: impl FnMut(), mut through: impl FnMut()) -> (Duration, Duration) {
    bare();
    through();
    let (mut b, mut t) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        let s = Instant::now();
        bare();
        b.push(s.elapsed());
        let s = Instant::now();
        through();
        t.push(s.elapsed());
    }
    (median(b), median(t))
}
