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

/// Min / median / max of a set of timings.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(runs: &[Duration]) -> Self {
        let mut v = runs.to_vec();
        v.sort();
        Self {
            min: v.first().copied().unwrap_or_default(),
            median: v.get(v.len() / 2).copied().unwrap_or_default(),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.3} / median {:.3} / max {:.3} s",
            self.min.as_secs_f64(),
            self.median.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

/// The machine a benchmark ran on: CPU model, cores, memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("machine: {model}, {cores} cores, {mem_gib:.0} GiB")
}
