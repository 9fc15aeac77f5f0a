//! `quorum delete PROJECT`: the project and everything of it are removed in
//! one transaction (DeleteProject); refused while hosts hold copies of it.

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: &str) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .delete_project(v1::DeleteProjectRequest { project: project.to_owned() })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let deleted = output::Deleted {
        project: project.to_owned(),
        n_work_units: response.n_work_units,
        n_results: response.n_results,
    };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &deleted)?;
    } else {
        writeln!(out, "{}", output::deleted_line(&deleted))?;
    }
    out.flush()?;
    Ok(())
}
