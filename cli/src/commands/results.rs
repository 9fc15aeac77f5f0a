//! `quorum results PROJECT`: the canonical results, paged through
//! `GetCanonicalResults` by work unit id, as jsonl, csv or a table.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use quorum_proto::v1;

use super::Context;
use crate::ResultsFormat;
use crate::client::Coordinator;
use crate::output;

/// Canonical results asked for per call.
pub const PAGE_SIZE: u32 = 1000;

pub async fn run(ctx: &Context, project: &str, format: ResultsFormat, out_path: Option<&Path>) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let mut out: Box<dyn Write> = match out_path {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?))
        }
        None => Box::new(super::stdout()),
    };
    let mut n_results = 0;
    match format {
        ResultsFormat::Table => {
            let results = fetch_all(&coordinator, project).await?;
            n_results = results.len();
            output::results_table(&results).write(&mut out)?;
        }
        ResultsFormat::Jsonl | ResultsFormat::Csv => {
            if format == ResultsFormat::Csv {
                writeln!(out, "{}", output::CSV_HEADER)?;
            }
            let mut after_work_unit_id = 0;
            while let Some(page) = next_page(&coordinator, project, after_work_unit_id).await? {
                for result in &page {
                    match format {
                        ResultsFormat::Csv => output::write_csv_record(&mut out, result)?,
                        _ => output::write_json(&mut out, &output::ResultLine::from(result))?,
                    }
                }
                n_results += page.len();
                after_work_unit_id = page.last().map_or(after_work_unit_id, |r| r.work_unit_id);
            }
        }
    }
    out.flush()?;
    if let Some(path) = out_path {
        tracing::info!(n_results, path = %path.display(), "wrote canonical results");
    }
    Ok(())
}

/// Every canonical result of the project, in work unit id order.
pub async fn fetch_all(coordinator: &Coordinator, project: &str) -> anyhow::Result<Vec<v1::CanonicalResult>> {
    let mut results: Vec<v1::CanonicalResult> = Vec::new();
    let mut after_work_unit_id = 0;
    while let Some(page) = next_page(coordinator, project, after_work_unit_id).await? {
        after_work_unit_id = page.last().map_or(after_work_unit_id, |r| r.work_unit_id);
        results.extend(page);
    }
    Ok(results)
}

/// The page after `after_work_unit_id`, or None when there is no more. Stops
/// only on an empty page, so a server that caps the page size below
/// [`PAGE_SIZE`] is still read to the end.
async fn next_page(
    coordinator: &Coordinator,
    project: &str,
    after_work_unit_id: i64,
) -> anyhow::Result<Option<Vec<v1::CanonicalResult>>> {
    let page = coordinator
        .client()
        .get_canonical_results(v1::GetCanonicalResultsRequest {
            project: project.to_owned(),
            after_work_unit_id,
            limit: PAGE_SIZE,
        })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner()
        .results;
    if page.is_empty() {
        return Ok(None);
    }
    // Paging relies on increasing ids; a page that does not advance would
    // loop forever.
    let increasing = page
        .iter()
        .try_fold(after_work_unit_id, |previous, result| {
            (result.work_unit_id > previous).then_some(result.work_unit_id)
        })
        .is_some();
    anyhow::ensure!(
        increasing,
        "the coordinator returned canonical results out of work unit id order after id {after_work_unit_id}"
    );
    Ok(Some(page))
}
