//! `quorum status [PROJECT]`: work unit and result counts of one project or of
//! all of them, its validator, and its paused batches with their reasons.

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: Option<&str>) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .get_status(v1::GetStatusRequest { project: project.unwrap_or_default().to_owned() })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    if let Some(name) = project
        && response.projects.is_empty()
    {
        anyhow::bail!("no project '{name}' on {}", coordinator.url());
    }
    let mut out = super::stdout();
    print_statuses(&mut out, ctx.json, &response.projects)?;
    out.flush()?;
    Ok(())
}

/// Prints statuses as a table followed by a line per paused batch, or as
/// {"projects":[...]} with `json`.
pub fn print_statuses(out: &mut dyn Write, json: bool, projects: &[v1::ProjectStatus]) -> std::io::Result<()> {
    if json {
        output::write_json(
            out,
            &output::Statuses { projects: projects.iter().map(output::ProjectStatus::from).collect() },
        )
    } else if projects.is_empty() {
        writeln!(out, "no projects")
    } else {
        output::status_table(projects).write(out)?;
        output::write_paused_batches(out, projects)
    }
}
