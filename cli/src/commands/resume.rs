//! `quorum resume PROJECT [--batch ID]`: paused batches of a project are
//! scheduled again (the coordinator pauses a batch whose first results are
//! mostly errors).

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: &str, batch: Option<i64>) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .resume_batch(v1::ResumeBatchRequest { project: project.to_owned(), batch_id: batch.unwrap_or(0) })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let resumed = output::Resumed { project: project.to_owned(), n_batches_resumed: response.n_batches_resumed };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &resumed)?;
    } else {
        writeln!(out, "{}", output::resumed_line(&resumed))?;
    }
    out.flush()?;
    Ok(())
}
