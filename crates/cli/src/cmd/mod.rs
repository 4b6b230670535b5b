//! One module per subcommand; each has its `Args` (clap) and `run(args, ctx)`.

pub mod backfill;
pub mod backfills;
pub mod compact;
pub mod eval;
pub mod graph;
pub mod lineage;
pub mod ops;
pub mod pause;
pub mod predict;
pub mod resume;
pub mod run;
pub mod runs;
pub mod serve;
pub mod sql;
pub mod tables;
pub mod vacuum;
pub mod validate;
