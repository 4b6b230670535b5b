//! `krxflow serve`: wires the scheduler daemon (krxflow-daemon) to this binary's operators.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use krxflow_core::Calendar;
use krxflow_daemon::{Config, DagSource, Stopped, Validate};
use krxflow_lake::Lake;
use krxflow_metrics::Metrics;
use krxflow_schedule::ScheduleError;

use crate::ray::RayArgs;
use crate::util::{Ctx, usage};
use crate::wiring;

/// The scheduler daemon: runs every DAG in a folder on its cron schedule (6-field cron
/// with seconds, or 5-field without), one instance per lake, with /metrics /healthz /runs.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder of DAG files (*.yaml); re-read on change or SIGHUP.
    #[arg(long, default_value = "dags")]
    dags: std::path::PathBuf,
    /// HTTP address for /metrics, /healthz and /runs (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
    /// Tasks running at once across all DAG runs (default: cores).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// On SIGTERM/Ctrl-C, how long running DAG runs may take to finish before their tasks
    /// are cancelled.
    #[arg(long, default_value = "30s", value_parser = krxflow_dag::parse_duration)]
    grace: std::time::Duration,
    /// If another scheduler holds this lake, wait for its lease instead of exiting.
    #[arg(long)]
    wait: bool,
    /// Lease lifetime: a killed scheduler's lease expires after this long.
    #[arg(long, default_value = "30s", value_parser = krxflow_dag::parse_duration)]
    lease_ttl: std::time::Duration,
    /// How often every table is vacuumed (`krxflow vacuum`); 0 turns it off.
    #[arg(long, default_value = "1d", value_parser = krxflow_dag::parse_duration)]
    vacuum_every: std::time::Duration,
    /// Time travel the vacuum keeps: files any version younger than this needs stay.
    #[arg(long, default_value = "7d", value_parser = krxflow_dag::parse_duration)]
    vacuum_retain: std::time::Duration,
    /// Run each scheduled DAG run as a job on a Ray cluster instead of here.
    #[command(flatten)]
    ray: RayArgs,
}

/// DAG files are validated against this binary's operator registry and catalog.
struct Wiring;

impl DagSource for Wiring {
    async fn validator(&self, lake: &Lake) -> Validate {
        let registry = wiring::registry();
        let known = wiring::known_tables(lake).await;
        Box::new(move |path: &Path| wiring::load(path, &registry, &known))
    }

    fn calendar(&self, name: &str) -> Result<Arc<dyn Calendar>, ScheduleError> {
        wiring::calendar(name)
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let config = Config {
        dags: args.dags,
        listen: args.listen,
        max_parallel: args.max_parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        grace: args.grace,
        wait: args.wait,
        lease_ttl: args.lease_ttl,
        vacuum_every: (!args.vacuum_every.is_zero()).then_some(args.vacuum_every),
        vacuum_retain: args.vacuum_retain,
        runner_for: args.ray.runner_for(ctx)?,
    };
    let metrics = Arc::new(Metrics::new());
    match krxflow_daemon::serve(&ctx.lake, config, &Wiring, metrics).await {
        Ok(Stopped::Drained) => Ok(ExitCode::SUCCESS),
        Ok(Stopped::LeaseLost) => Ok(ExitCode::from(1)),
        Err(e) if e.is_usage() => Err(usage(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: super::Args,
    }

    #[test]
    fn serve_listens_on_loopback_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["serve"]).expect("defaults parse");
        let addr: std::net::SocketAddr = cli.serve.listen.parse().expect("an address");
        assert!(addr.ip().is_loopback(), "{addr}");
        let told = Cli::try_parse_from(["serve", "--listen", "0.0.0.0:9464"]).expect("parse");
        assert_eq!(told.serve.listen, "0.0.0.0:9464");
    }
}
