//! `quorum errors PROJECT`: the project's failed copies grouped by error
//! message (`ListErrors`), with counts, example work units and the tail of
//! the latest stderr.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use quorum_proto::v1;

use super::Context;
use crate::output;

pub async fn run(ctx: &Context, project: &str, batch: Option<i64>) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let response = coordinator
        .client()
        .list_errors(v1::ListErrorsRequest { project: project.to_owned(), batch_id: batch.unwrap_or(0), limit: 0 })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let errors = output::Errors {
        project: project.to_owned(),
        groups: response.groups.iter().map(output::ErrorGroup::from).collect(),
    };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &errors)?;
    } else {
        let now_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        output::write_error_groups(&mut out, &errors, now_unix_ms)?;
    }
    out.flush()?;
    Ok(())
}
