//! `krxflow backfills`: the backfills recorded in the lake, latest state first.

use std::process::ExitCode;

use krxflow_exec::backfill::BACKFILLS;

use crate::output::{self, Format};
use crate::util::Ctx;

/// Backfills recorded in the lake, latest state first.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, json) = (&ctx.lake, ctx.json);
    match lake.version(BACKFILLS).await? {
        Some(_) => {}
        None => {
            if json {
                println!("[]");
            } else {
                println!("no backfills recorded");
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (schema, batches) = krxflow_lake::sql::query(
        lake,
        "SELECT backfill_id, dag, \"from\", \"to\", reprocess, parallel, state, total, succeeded, failed, skipped, updated \
         FROM (SELECT *, row_number() OVER (PARTITION BY backfill_id ORDER BY updated DESC) AS rn FROM _krxflow.backfills) \
         WHERE rn = 1 ORDER BY updated DESC",
    )
    .await?;
    let fmt = if json { Format::Json } else { Format::Table };
    println!("{}", output::batches(&schema, &batches, fmt)?);
    Ok(ExitCode::SUCCESS)
}
