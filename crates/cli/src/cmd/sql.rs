//! `krxflow sql`: read-only SQL over every lake table.

use std::process::ExitCode;

use crate::output::{self, Format};
use crate::util::{Ctx, usage};

/// Read-only SQL over every lake table (`table@v3` reads version 3).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One read-only statement; tables by name, `table@v3` for version 3.
    query: String,
    /// How the rows are printed (`--json` is `--format json`).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    let query = args.query.as_str();
    let format = if ctx.json { Format::Json } else { args.format };
    let (schema, batches) = krxflow_lake::sql::query(lake, query)
        .await
        .map_err(|e| match e {
            krxflow_lake::LakeError::Sql(m) => usage(m),
            other => other.into(),
        })?;
    println!("{}", output::batches(&schema, &batches, format)?);
    Ok(ExitCode::SUCCESS)
}
