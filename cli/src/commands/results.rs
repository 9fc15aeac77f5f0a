//! `quorum results PROJECT`: the canonical results, paged through
//! `GetCanonicalResults` by work unit id, as jsonl, csv or a table; with
//! `--all`, every result (copy) paged through `ListResults` by result id.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use quorum_proto::v1;

use super::Context;
use crate::client::Coordinator;
use crate::output;
use crate::{CopyState, ResultsFormat};

/// Canonical results asked for per call.
pub const PAGE_SIZE: u32 = 1000;

/// Which copies `quorum results --all` lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyFilter {
    pub state: Option<CopyState>,
    pub batch: Option<i64>,
}

/// Where the records go: `--out FILE` or stdout.
fn output(out_path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match out_path {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?))
        }
        None => Box::new(super::stdout()),
    })
}

pub async fn run(
    ctx: &Context,
    project: &str,
    format: ResultsFormat,
    out_path: Option<&Path>,
    files_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let mut out = output(out_path)?;
    let mut n_results = 0;
    let mut n_files = 0;
    match format {
        ResultsFormat::Table => {
            let results = fetch_all(&coordinator, project).await?;
            n_results = results.len();
            output::results_table(&results).write(&mut out)?;
            if let Some(dir) = files_dir {
                n_files += write_output_files(dir, &results)?;
            }
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
                if let Some(dir) = files_dir {
                    n_files += write_output_files(dir, &page)?;
                }
            }
        }
    }
    out.flush()?;
    if let Some(dir) = files_dir {
        tracing::info!(n_files, dir = %dir.display(), "wrote output files");
    }
    if let Some(path) = out_path {
        tracing::info!(n_results, path = %path.display(), "wrote canonical results");
    }
    Ok(())
}

/// `quorum results --all`: every copy the filter selects, in result id order.
pub async fn run_all(
    ctx: &Context,
    project: &str,
    format: ResultsFormat,
    out_path: Option<&Path>,
    filter: CopyFilter,
) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let mut out = output(out_path)?;
    let mut n_results = 0;
    let mut table = Vec::new();
    if format == ResultsFormat::Csv {
        writeln!(out, "{}", output::COPIES_CSV_HEADER)?;
    }
    let mut after_id = 0;
    while let Some(page) = next_copies(&coordinator, project, filter, after_id).await? {
        after_id = page.last().map_or(after_id, |copy| copy.id);
        n_results += page.len();
        match format {
            ResultsFormat::Table => table.extend(page),
            ResultsFormat::Csv => {
                for copy in &page {
                    output::write_copy_csv_record(&mut out, &output::CopyLine::from(copy))?;
                }
            }
            ResultsFormat::Jsonl => {
                for copy in &page {
                    output::write_json(&mut out, &output::CopyLine::from(copy))?;
                }
            }
        }
    }
    if format == ResultsFormat::Table {
        if table.is_empty() {
            writeln!(out, "no results")?;
        } else {
            output::copies_table(&table).write(&mut out)?;
        }
    }
    out.flush()?;
    if let Some(path) = out_path {
        tracing::info!(n_results, path = %path.display(), "wrote results");
    }
    Ok(())
}

/// The page of copies after `after_id`, or None when there is no more.
async fn next_copies(
    coordinator: &Coordinator,
    project: &str,
    filter: CopyFilter,
    after_id: i64,
) -> anyhow::Result<Option<Vec<v1::ResultInfo>>> {
    let page = coordinator
        .client()
        .list_results(v1::ListResultsRequest {
            project: project.to_owned(),
            work_unit_id: 0,
            after_id,
            limit: PAGE_SIZE,
            state: filter.state.map(|state| state.as_str().to_owned()).unwrap_or_default(),
            batch_id: filter.batch.unwrap_or(0),
        })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner()
        .results;
    if page.is_empty() {
        return Ok(None);
    }
    ensure_increasing(page.iter().map(|copy| copy.id), after_id, "results out of result id order")?;
    Ok(Some(page))
}

/// Paging relies on increasing ids; a page that does not advance would loop
/// forever.
fn ensure_increasing(mut ids: impl Iterator<Item = i64>, after: i64, what: &str) -> anyhow::Result<()> {
    let increasing = ids.try_fold(after, |previous, id| (id > previous).then_some(id)).is_some();
    anyhow::ensure!(increasing, "the coordinator returned {what} after id {after}");
    Ok(())
}

/// Every canonical result of the project, in work unit id order.
/// Writes the output files of `results` under `dir` (DIR/WORK_UNIT/NAME);
/// returns how many.
fn write_output_files(dir: &Path, results: &[v1::CanonicalResult]) -> anyhow::Result<usize> {
    let mut n = 0;
    for result in results.iter().filter(|result| !result.output_files.is_empty()) {
        let plain = |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
        let folder = if plain(&result.work_unit_name) {
            dir.join(&result.work_unit_name)
        } else {
            dir.join(format!("wu-{}", result.work_unit_id))
        };
        std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
        for file in &result.output_files {
            anyhow::ensure!(
                plain(&file.name),
                "the coordinator sent an output file named {:?}, which is not a plain file name",
                file.name
            );
            let path = folder.join(&file.name);
            std::fs::write(&path, &file.data).with_context(|| format!("cannot write {}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

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
    ensure_increasing(
        page.iter().map(|result| result.work_unit_id),
        after_work_unit_id,
        "canonical results out of work unit id order",
    )?;
    Ok(Some(page))
}
