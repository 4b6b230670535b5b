//! Injected operator failures, for the reliability tests only (`op=Q` in
//! `KRXFLOW_TEST_FAULTS`, see `krxflow_lake::store`): each operator run fails with probability
//! Q as a transient error, half the time before the operator runs and half the time after it
//! ran and produced its outputs, which are then thrown away, as when a worker dies between
//! computing and committing. Whatever the operator did on the side (an artifact saved) stays;
//! the retry must still end as a run without the fault would.

use std::sync::atomic::{AtomicU64, Ordering};

use krxflow_core::{ConfiguredOp, InputBatches, OpError, OpResult, OutputBatches, TaskContext};
use krxflow_lake::store::{FAULTS_ENV, FaultConfig, faults};

/// Keeps the operators' draws apart from the store's.
const STREAM: u64 = 0x6f70_6661_756c_7473;

/// Operator runs decided so far in this process.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs `op`, or fails it on purpose when the fault configuration says so.
pub(crate) async fn run(
    op: &dyn ConfiguredOp,
    ctx: &TaskContext,
    inputs: InputBatches,
) -> OpResult<OutputBatches> {
    // A bad setting has already stopped the lake from opening; unset means no faults.
    let config = faults().ok().flatten().filter(|c| c.op > 0.0);
    let Some(config) = config else {
        return op.run(ctx, inputs).await;
    };
    match decide(&config, RUNS.fetch_add(1, Ordering::Relaxed)) {
        None => op.run(ctx, inputs).await,
        Some(when) => {
            if when == When::After {
                op.run(ctx, inputs).await?;
            }
            tracing::debug!(target: "krxflow_exec::faults", task = %ctx.task, ds = %ctx.ds, ?when, "injected operator fault");
            Err(OpError::transient(format!(
                "operator {} failed on purpose {} it ran ({FAULTS_ENV}: op={})",
                ctx.task,
                when.word(),
                config.op
            )))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

impl When {
    fn word(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

/// Whether operator run number `n` fails, and when.
fn decide(config: &FaultConfig, n: u64) -> Option<When> {
    if !config.fails(STREAM, n, config.op) {
        return None;
    }
    Some(if config.fails(STREAM.rotate_left(17), n, 0.5) {
        When::After
    } else {
        When::Before
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_the_configured_share_of_runs_fails_both_before_and_after_running() {
        let config = FaultConfig {
            rate: 0.0,
            op: 0.3,
            seed: 3,
        };
        let draws: Vec<Option<When>> = (0..10_000).map(|n| decide(&config, n)).collect();
        let failed = draws.iter().flatten().count();
        let after = draws
            .iter()
            .flatten()
            .filter(|w| **w == When::After)
            .count();
        assert!((2_800..3_200).contains(&failed), "{failed} of 10000");
        assert!(
            (failed * 4 / 10..failed * 6 / 10).contains(&after),
            "{after} of {failed}"
        );
        let none = FaultConfig { op: 0.0, ..config };
        assert!((0..1000).all(|n| decide(&none, n).is_none()));
    }
}
