//! `quorum purge PROJECT`: the inputs of the project's ended work units and
//! the outputs of their non-canonical copies are dropped (PurgeProject).
//! Canonical results stay readable; copies reported later are too late.

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: &str) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .purge_project(v1::PurgeProjectRequest { project: project.to_owned() })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let purged = output::Purged { project: project.to_owned(), n_work_units_purged: response.n_work_units_purged };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &purged)?;
    } else {
        writeln!(out, "{}", output::purged_line(&purged))?;
    }
    out.flush()?;
    Ok(())
}
