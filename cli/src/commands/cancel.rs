//! `quorum cancel PROJECT`: the project's open work units fail as cancelled.

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: &str) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .cancel_project(v1::CancelProjectRequest { project: project.to_owned() })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(
            &mut out,
            &output::Cancelled { project: project.to_owned(), n_work_units_cancelled: response.n_work_units_cancelled },
        )?;
    } else {
        writeln!(out, "cancelled project '{project}': {} open work units cancelled", response.n_work_units_cancelled)?;
    }
    out.flush()?;
    Ok(())
}
