//! `krxflow`: validate and run YAML DAGs over a Delta lake, inspect runs, lineage and tables.
//!
//! Thin by design: parses arguments, wires the engine crates and the pipeline operators,
//! prints. Exit codes: 0 ok, 1 a run failed, 2 invalid input or usage.

mod backfill;
mod commands;
mod output;
mod serve;
mod wiring;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "krxflow",
    version,
    about = "DAG-orchestrated KRX stock prediction pipeline"
)]
struct Cli {
    /// Lake root: a path, file:// or s3:// URL.
    #[arg(
        long,
        global = true,
        env = "KRXFLOW_LAKE",
        default_value = "./storage/lake"
    )]
    lake: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Push the metrics of a one-shot command (`run`, `backfill`) to this Prometheus
    /// Pushgateway when it ends (e.g. http://127.0.0.1:9091).
    #[arg(long, global = true, env = "KRXFLOW_PUSHGATEWAY")]
    pushgateway: Option<String>,
    /// Log level filter (e.g. info, debug, krxflow_exec=debug).
    #[arg(
        long,
        global = true,
        env = "KRXFLOW_LOG",
        default_value = "warn,buoyant_kernel::snapshot::builder=off,deltalake_core::operations::merge=error"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate DAG files; reports every problem with file:line:col. Exit 2 when invalid.
    Validate {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Run a DAG for one partition (trading day).
    Run {
        /// DAG file, or a DAG name looked up as dags/NAME.yaml.
        dag: String,
        /// Trading day YYYY-MM-DD, or `latest` (the latest trading day whose 15:30 KST close has
        /// passed).
        #[arg(long)]
        date: String,
        /// Which tasks run again when their fingerprint already succeeded.
        #[arg(long, value_enum, default_value_t = ReprocessArg::Missing)]
        reprocess: ReprocessArg,
        /// Tasks running at once (default: cores).
        #[arg(long)]
        max_parallel: Option<usize>,
    },
    /// One DAG run per trading day of a range; resumable (the same command again finishes the
    /// rest) and recorded in `_krxflow.backfills`. Exit 1 if any partition failed.
    Backfill {
        /// DAG file, or a DAG name looked up as dags/NAME.yaml.
        dag: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// missing: partitions not yet done; failed: only failed ones; all: every partition.
        #[arg(long, value_enum, default_value_t = ReprocessArg::Missing)]
        reprocess: ReprocessArg,
        /// Partitions running at once (1 when a task has depends_on_past).
        #[arg(long, default_value_t = 2)]
        parallel: usize,
        /// Print the planned partitions and what would run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Backfills recorded in the lake, latest state first.
    Backfills,
    /// The scheduler daemon: runs every DAG in a folder on its cron schedule (6-field cron
    /// with seconds, or 5-field without), one instance per lake, with /metrics /healthz /runs.
    Serve {
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
    },
    /// Recent DAG runs and their task states.
    Runs {
        #[arg(long)]
        dag: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Walk a table's lineage back through the exact input versions to its sources.
    Lineage {
        table: String,
        /// Partition whose output to start from (default: the latest).
        #[arg(long)]
        ds: Option<String>,
        /// Count the rows of this key (e.g. a ticker) in every version along the way.
        #[arg(long)]
        key: Option<String>,
    },
    /// Read-only SQL over every lake table (`table@v3` reads version 3).
    Sql {
        query: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List registered operators with their params and port schemas.
    Ops,
    /// List lake tables with their versions and row counts.
    Tables,
    /// Compact tables (all, engine tables included, when none is named): their small files
    /// are bin-packed into few large ones; no row changes. Writes also compact a table by
    /// themselves once it holds 16 files.
    Compact {
        tables: Vec<String>,
        /// Only tables holding at least this many files.
        #[arg(long, default_value_t = 2)]
        min_files: usize,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprocessArg {
    Missing,
    Failed,
    All,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(match e.downcast_ref::<commands::UsageError>() {
                Some(_) => 2,
                None => 1,
            })
        }
    }
}
