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
    print_statuses(&mut out, ctx, &response.projects)?;
    out.flush()?;
    Ok(())
}

/// Prints statuses as a table followed by what holds each project (when the
/// coordinator said: one project asked for) or else a line per paused batch,
/// or as {"projects":[...]} with `--json`.
pub fn print_statuses(out: &mut dyn Write, ctx: &Context, projects: &[v1::ProjectStatus]) -> std::io::Result<()> {
    if ctx.json {
        output::write_json(
            out,
            &output::Statuses { projects: projects.iter().map(output::ProjectStatus::from).collect() },
        )
    } else if projects.is_empty() {
        writeln!(out, "no projects")
    } else {
        output::status_table(projects).wide(ctx.wide).write(out)?;
        let (explained, others): (Vec<_>, Vec<_>) =
            projects.iter().cloned().partition(|status| !status.holds.is_empty());
        output::write_holds(out, &explained)?;
        output::write_paused_batches(out, &others)
    }
}
