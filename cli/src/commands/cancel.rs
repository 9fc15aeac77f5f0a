//! `quorum cancel PROJECT [--batch ID | --work-unit ID...]`: the open work
//! units of the project (CancelProject), of one batch or the listed ones
//! (CancelWorkUnits) fail as cancelled.

use std::io::Write;

use quorum_proto::v1;

use super::Context;
use crate::output;

/// What `quorum cancel` cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole project: it gets no new work.
    Project,
    /// The open work units of one batch.
    Batch(i64),
    /// The listed work units that are still open.
    WorkUnits(Vec<i64>),
}

impl Scope {
    /// The scope of the command line's `--batch` and `--work-unit` (which
    /// clap keeps apart; a batch wins should both come).
    pub fn new(batch: Option<i64>, work_units: Vec<i64>) -> Scope {
        match batch {
            Some(batch) => Scope::Batch(batch),
            None if work_units.is_empty() => Scope::Project,
            None => Scope::WorkUnits(work_units),
        }
    }
}

pub async fn run(ctx: &Context, project: &str, scope: Scope) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let mut client = coordinator.client();
    let call = match &scope {
        Scope::Project => client.cancel_project(v1::CancelProjectRequest { project: project.to_owned() }).await,
        Scope::Batch(batch) => {
            client
                .cancel_work_units(v1::CancelWorkUnitsRequest {
                    project: project.to_owned(),
                    batch_id: *batch,
                    work_unit_ids: Vec::new(),
                })
                .await
        }
        Scope::WorkUnits(ids) => {
            client
                .cancel_work_units(v1::CancelWorkUnitsRequest {
                    project: project.to_owned(),
                    batch_id: 0,
                    work_unit_ids: ids.clone(),
                })
                .await
        }
    };
    let response = call.map_err(|status| coordinator.error(status))?.into_inner();
    let cancelled =
        output::Cancelled { project: project.to_owned(), n_work_units_cancelled: response.n_work_units_cancelled };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &cancelled)?;
    } else {
        writeln!(out, "{}", output::cancelled_line(&cancelled, &scope))?;
    }
    out.flush()?;
    Ok(())
}
