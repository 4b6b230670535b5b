//! `krxflow`: validate and run YAML DAGs over a Delta lake, inspect runs, lineage and tables.
//!
//! Thin by design: parses arguments, wires the engine crates and the pipeline operators,
//! prints. Exit codes: 0 ok, 1 a run failed, 2 invalid input or usage.
//!
//! Each subcommand is a module of `cmd/` with its `Args` and `run`; adding one is that file,
//! its `mod` line in `cmd/mod.rs` and its line in the `Command` list below.
//!
//! Modules only use downwards: `main` → `cmd::*` → `util` → `wiring`; `cmd::*` → `output`.

mod cmd;
mod output;
mod ray;
mod util;
mod wiring;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use krxflow_lake::Lake;

use crate::util::{Ctx, UsageError, usage};

/// DataFusion, Delta and the operators allocate across threads all day; mimalloc made the
/// 250-day loop backfill 15% faster than glibc's malloc (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Memory for the lake's cache of decoded data files, in MiB (0: no cache).
    #[arg(long, global = true, env = "KRXFLOW_LAKE_CACHE_MB", default_value_t = krxflow_lake::DEFAULT_CACHE_BYTES >> 20)]
    lake_cache_mb: usize,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Push the metrics of a one-shot command (`run`, `backfill`) to this Prometheus
    /// Pushgateway when it ends (e.g. http://127.0.0.1:9091).
    #[arg(long, global = true, env = "KRXFLOW_PUSHGATEWAY")]
    pushgateway: Option<String>,
    /// Log level filter (e.g. info, debug, krxflow_exec=debug). By default Delta's own reports
    /// of a commit that lost a race are off: the lake plans such a write again and warns only
    /// when it keeps losing (`commit lost to concurrent writers`).
    #[arg(
        long,
        global = true,
        env = "KRXFLOW_LOG",
        default_value = "warn,buoyant_kernel::snapshot::builder=off,deltalake_core::operations::merge=error,deltalake_core::kernel::transaction=off"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

/// The `Command` enum (its order is the help's) and `Command::run`, which calls
/// `cmd::<module>::run(args, ctx)` for the variant; both from one list.
macro_rules! commands {
    (enum Command { $($variant:ident(cmd::$module:ident::Args)),* $(,)? }) => {
        #[derive(Subcommand, Debug)]
        enum Command {
            $($variant(cmd::$module::Args),)*
        }

        impl Command {
            async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
                match self {
                    $(Command::$variant(args) => cmd::$module::run(args, ctx).await,)*
                }
            }
        }
    };
}

commands! {
    enum Command {
        Validate(cmd::validate::Args),
        Graph(cmd::graph::Args),
        Run(cmd::run::Args),
        Backfill(cmd::backfill::Args),
        Backfills(cmd::backfills::Args),
        Predict(cmd::predict::Args),
        Eval(cmd::eval::Args),
        Serve(cmd::serve::Args),
        Pause(cmd::pause::Args),
        Resume(cmd::resume::Args),
        Runs(cmd::runs::Args),
        Lineage(cmd::lineage::Args),
        Sql(cmd::sql::Args),
        Ops(cmd::ops::Args),
        Tables(cmd::tables::Args),
        Compact(cmd::compact::Args),
        Vacuum(cmd::vacuum::Args),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let lake = Lake::open(&cli.lake, wiring::catalog())
        .map_err(|e| usage(format!("cannot open lake `{}`: {e}", cli.lake)))?
        .with_file_cache(cli.lake_cache_mb.saturating_mul(1 << 20));
    if let Err(e) = lake.probe().await {
        // What to fix, not the store's whole answer (XML and all): that is at `--log debug`.
        tracing::debug!(error = ?e, "lake probe");
        anyhow::bail!("{e}");
    }
    let ctx = Ctx {
        lake,
        json: cli.json,
        pushgateway: cli.pushgateway,
    };
    let code = cli.command.run(&ctx).await;
    // The process ends next: its memory goes back with it (see `main`).
    std::mem::forget(ctx);
    code
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // A closed stdout (`krxflow runs | head`) ends the process quietly, as it does any
        // Unix tool, instead of a panic on the next print. Sockets are unaffected (Rust writes
        // to them with MSG_NOSIGNAL), and an interrupted command is as safe as a killed one:
        // each commit is atomic and a re-run rewrites. `serve` keeps ignoring the signal.
        // SAFETY: called before any thread starts; restores the default disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log piped to a file or another program stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(match e.downcast_ref::<UsageError>() {
                Some(_) => 2,
                None => 1,
            })
        }
    };
    // Exit without tearing down: every write is committed and awaited by now (and every
    // command's own state dropped), so what is left is memory the operating system takes
    // back at once, where freeing it piece by piece (the lake's cache, the runtime's threads,
    // the allocator returning each free page at exit: ~340 `madvise` calls) took 55-75 ms
    // of a 1.4 s full-market day. (`runtime` and the rest of `main` are never dropped.)
    exit_now(status(code))
}

/// The error and its causes, each once: the crates' errors name their cause in their own
/// message (`delta: <cause>`) and keep it as their source too, which `{:#}` would print twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// Flushes what the process printed and ends it without running exit handlers.
fn exit_now(status: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; nothing of Rust's runs after it, and the exit
    // handlers it skips (the allocator's final purge, C++ static destructors of the model
    // runtimes) release nothing the process's end does not.
    unsafe { libc::_exit(status) }
}

/// The status `code` stands for (an `ExitCode` is opaque: found among the byte-sized ones).
fn status(code: ExitCode) -> i32 {
    (0..=u8::MAX)
        .find(|&c| ExitCode::from(c) == code)
        .map_or(1, i32::from)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::{Cli, error_text};

    #[test]
    fn an_error_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let lake = krxflow_lake::LakeError::Io(io);
        let e = anyhow::Error::new(lake).context("writing report/metrics.json");
        assert_eq!(
            error_text(&e),
            "writing report/metrics.json: io: no such file"
        );
        let nested = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&nested), "outer: middle: inner");
    }

    #[test]
    fn every_command_argument_and_option_says_what_it_takes() {
        let cli = Cli::command();
        let mut undocumented = Vec::new();
        for cmd in cli.get_subcommands() {
            if cmd.get_about().is_none() {
                undocumented.push(cmd.get_name().to_string());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && arg.get_help().is_none() {
                    undocumented.push(format!("{} {id}", cmd.get_name()));
                }
            }
        }
        assert!(undocumented.is_empty(), "no help text: {undocumented:?}");
    }
}
