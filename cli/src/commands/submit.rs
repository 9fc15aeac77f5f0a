//! `quorum submit MANIFEST`: loads the whole project (manifest, app, every
//! work unit) before connecting, then creates it.
//!
//! Below [`ONE_CALL_BYTES`] the project and all its work units go in one
//! `CreateProject` call, which the server runs in one transaction: the
//! submission is atomic. Above, `CreateProject` carries a first batch and
//! `AddWorkUnits` the rest, in batches of at most [`BATCH_WORK_UNITS`] work
//! units and [`ONE_CALL_BYTES`]; if a batch fails (or the CLI is killed),
//! the project exists with the work units added so far, and the error says
//! how many.
//!
//! Input files go first: the coordinator is asked which it lacks
//! (`FindFiles`) and those are uploaded (`UploadFile`, streamed in chunks,
//! each once however many work units name it); a submission run again
//! uploads only what is still missing.
//!
//! Submitting a manifest whose project exists already completes it: if it
//! runs the same app, the work units it does not have yet (by name) are
//! added, so an interrupted submission run again ends with every work unit
//! exactly once.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use anyhow::Context as _;
use prost::Message as _;
use quorum_proto::v1;
use sha2::Digest as _;

use super::Context;
use crate::client::Coordinator;
use crate::manifest::{AppArgs, FuzzyFormat, LocalFile, Manifest, Project, Validator, WorkUnit};
use crate::output;
use crate::progress::{Progress, ProgressMode};

/// The largest encoded request the CLI sends in one call (the gRPC limit on
/// both sides is 64 MiB; the margin covers framing).
pub const ONE_CALL_BYTES: usize = 48 * 1024 * 1024;

/// The most work units per `AddWorkUnits` call (and in the first batch of a
/// split submission).
pub const BATCH_WORK_UNITS: usize = 10_000;

/// Tag of `CreateProjectRequest.work_units`.
const CREATE_WORK_UNITS_TAG: u32 = 7;

pub async fn run(ctx: &Context, manifest_path: &Path, signing_key: Option<&Path>) -> anyhow::Result<()> {
    // Everything is read and checked before the first byte goes out.
    let project = Manifest::read(manifest_path).and_then(Manifest::load_project)?;
    let signed = match signing_key.or(project.manifest.signing_key()) {
        Some(path) => Some(crate::signing::sign(&crate::signing::read_key(path)?, &project.app_module)),
        None => None,
    };
    let coordinator = ctx.connect().await?;
    let submitted = submit(&coordinator, project, signed, ctx.progress).await?;
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &submitted)?;
    } else {
        writeln!(out, "{}", output::submitted_line(&submitted))?;
    }
    out.flush()?;
    Ok(())
}

/// Creates the project on the coordinator with all its work units.
/// With `signed`, the app goes with its signature and the project's public key.
pub async fn submit(
    coordinator: &Coordinator,
    project: Project,
    signed: Option<crate::signing::Signed>,
    progress: ProgressMode,
) -> anyhow::Result<output::Submitted> {
    let name = project.manifest.name().to_string();
    let local_digest = hex::encode(sha2::Sha256::digest(&project.app_module));
    let files = project.files.iter().chain(project.work_units.iter().flat_map(|unit| unit.files.iter()));
    upload_files(coordinator, &name, files, progress).await?;
    // An earlier submission of this manifest may have been interrupted:
    // complete it, if the project is the same.
    if let Some(status) = existing_project(coordinator, &name).await? {
        let units = project.work_units.into_iter().map(work_unit_input).collect();
        return resume(coordinator, &name, &local_digest, status, units, progress).await;
    }
    let mut request = create_request(&project.manifest, project.app_module, project.validator_module);
    request.files = file_refs(&project.files);
    if let Some(signed) = signed {
        request.app_signature = signed.signature;
        request.app_public_key = signed.public_key;
    }
    let mut work_units: Vec<v1::WorkUnitInput> = project.work_units.into_iter().map(work_unit_input).collect();
    let n_total = work_units.len();
    let sizes: Vec<usize> = work_units
        .iter()
        .map(|work_unit| prost::encoding::message::encoded_len(CREATE_WORK_UNITS_TAG, work_unit))
        .collect();
    let plan = plan(request.encoded_len(), &sizes)
        .map_err(|problem| anyhow::anyhow!("cannot submit project '{name}': {problem}"))?;
    let rest = work_units.split_off(plan.first);
    request.work_units = work_units;

    tracing::info!(
        project = %name,
        n_work_units = n_total,
        n_calls = 1 + plan.batches.len(),
        "submitting"
    );
    let created =
        coordinator.client().create_project(request).await.map_err(|status| coordinator.error(status))?.into_inner();
    if created.app_digest != local_digest {
        tracing::warn!(
            server = %created.app_digest,
            local = %local_digest,
            "the coordinator's app digest differs from the local SHA-256"
        );
    }
    let n_added =
        add_work_units(coordinator, &name, rest, &plan.batches, created.n_work_units, n_total, progress).await?;
    Ok(output::Submitted {
        project: name,
        project_id: created.project_id,
        app_digest: created.app_digest,
        n_work_units: n_added,
        resumed: false,
        n_work_units_present: 0,
    })
}

/// Adds `units` in the calls `batches` plans (ranges over `units`), after
/// `n_added` of the submission's `n_total` went in already.
async fn add_work_units(
    coordinator: &Coordinator,
    name: &str,
    units: Vec<v1::WorkUnitInput>,
    batches: &[Range<usize>],
    mut n_added: u64,
    n_total: usize,
    progress: ProgressMode,
) -> anyhow::Result<u64> {
    // One call needs no progress; a long submission shows each batch.
    let mode = if batches.is_empty() { ProgressMode::Off } else { progress };
    let mut progress = Progress::new(mode, "submit", name, "work units added");
    progress.update(n_added, n_total as u64, "submitting");
    let mut units = units.into_iter();
    for batch in batches {
        let batch_units: Vec<v1::WorkUnitInput> = units.by_ref().take(batch.len()).collect();
        let response = coordinator
            .client()
            .add_work_units(v1::AddWorkUnitsRequest { project: name.to_owned(), work_units: batch_units, policy: None })
            .await
            .map_err(|status| coordinator.error(status))
            .with_context(|| {
                format!(
                    "project '{name}' has only {n_added} of the {n_total} work units of this submission; \
                     run the same `quorum submit` again to add the rest"
                )
            })?
            .into_inner();
        n_added += response.n_work_units;
        tracing::info!(project = %name, n_added, n_total, "added work units");
        progress.update(n_added, n_total as u64, "submitting");
    }
    progress.finish();
    Ok(n_added)
}

/// The status of project `name`, or None if there is none.
async fn existing_project(coordinator: &Coordinator, name: &str) -> anyhow::Result<Option<v1::ProjectStatus>> {
    match coordinator.client().get_status(v1::GetStatusRequest { project: name.to_owned() }).await {
        Ok(response) => Ok(response.into_inner().projects.into_iter().next()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(coordinator.error(status)),
    }
}

/// Completes an existing project with the manifest's work units it does not
/// have yet (by name), if it runs the same app: an interrupted submission
/// run again ends with every work unit exactly once. A work unit it has
/// under the same name with another input size is refused.
async fn resume(
    coordinator: &Coordinator,
    name: &str,
    local_digest: &str,
    status: v1::ProjectStatus,
    units: Vec<v1::WorkUnitInput>,
    progress: ProgressMode,
) -> anyhow::Result<output::Submitted> {
    let n_total = units.len();
    anyhow::ensure!(
        status.app_digest == local_digest,
        "project '{name}' already exists with another app (sha256 {}; this manifest's app is {local_digest}): \
         give the project another name, or `quorum delete {name}` first",
        status.app_digest
    );
    anyhow::ensure!(
        status.state != "cancelled",
        "project '{name}' already exists and is cancelled: give the project another name, or `quorum delete {name}` first"
    );
    let mut present: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut after_id = 0;
    loop {
        let page = coordinator
            .client()
            .list_work_units(v1::ListWorkUnitsRequest { project: name.to_owned(), after_id, limit: 0 })
            .await
            .map_err(|status| coordinator.error(status))?
            .into_inner()
            .work_units;
        let Some(last) = page.last() else { break };
        anyhow::ensure!(last.id > after_id, "the coordinator returned work units out of id order after id {after_id}");
        after_id = last.id;
        present.extend(page.into_iter().map(|work_unit| (work_unit.name, work_unit.input_size)));
    }
    let mut missing = Vec::new();
    let mut n_present = 0;
    for unit in units {
        match present.get(&unit.name) {
            None => missing.push(unit),
            Some(&size) if size == unit.input.len() as u64 => n_present += 1,
            Some(&size) => anyhow::bail!(
                "project '{name}' already has a work unit '{}' with another input ({size} bytes; this manifest's has \
                 {}): it is not the same submission; give the project another name, or `quorum delete {name}` first",
                output::escape(&unit.name),
                unit.input.len()
            ),
        }
    }
    tracing::info!(project = %name, n_present, n_missing = missing.len(), "completing an existing project");
    let sizes: Vec<usize> = missing
        .iter()
        .map(|work_unit| prost::encoding::message::encoded_len(CREATE_WORK_UNITS_TAG, work_unit))
        .collect();
    // Every call an AddWorkUnits: plan as if the first call carried nothing else.
    let plan = plan(ONE_CALL_BYTES, &sizes)
        .map_err(|problem| anyhow::anyhow!("cannot submit to project '{name}': {problem}"))?;
    let n_added = add_work_units(coordinator, name, missing, &plan.batches, 0, n_total - n_present, progress).await?;
    Ok(output::Submitted {
        project: name.to_owned(),
        project_id: status.project_id,
        app_digest: status.app_digest,
        n_work_units: n_added,
        resumed: true,
        n_work_units_present: n_present as u64,
    })
}

/// A work unit as the protocol carries it, with its own arguments and variables.
fn work_unit_input(work_unit: WorkUnit) -> v1::WorkUnitInput {
    v1::WorkUnitInput {
        name: work_unit.name,
        input: work_unit.input,
        args: work_unit.app_args.args().to_vec(),
        env: env_to_proto(&work_unit.app_args),
        files: file_refs(&work_unit.files),
    }
}

fn file_refs(files: &[LocalFile]) -> Vec<v1::FileRef> {
    files
        .iter()
        .map(|file| v1::FileRef {
            name: file.name.clone(),
            digest: file.digest.clone(),
            size: file.size,
            p2p_meta: Vec::new(),
        })
        .collect()
}

/// Most digests asked about per `FindFiles` call.
const FIND_FILES_BATCH: usize = 10_000;
/// Uploads smaller than this in all show no progress.
const UPLOAD_PROGRESS_BYTES: u64 = 64 << 20;
/// Size of the chunks an upload streams.
const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// Uploads the files among `files` the coordinator lacks, each content once.
async fn upload_files<'a>(
    coordinator: &Coordinator,
    project: &str,
    files: impl Iterator<Item = &'a LocalFile>,
    progress: ProgressMode,
) -> anyhow::Result<()> {
    let mut unique: Vec<&LocalFile> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for file in files {
        if seen.insert(file.digest.as_str()) {
            unique.push(file);
        }
    }
    if unique.is_empty() {
        return Ok(());
    }
    let mut missing = std::collections::HashSet::new();
    for batch in unique.chunks(FIND_FILES_BATCH) {
        let digests = batch.iter().map(|file| file.digest.clone()).collect();
        let response = coordinator
            .client()
            .find_files(v1::FindFilesRequest { digests })
            .await
            .map_err(|status| coordinator.error(status))?
            .into_inner();
        missing.extend(response.missing);
    }
    let to_send: Vec<&LocalFile> = unique.into_iter().filter(|file| missing.contains(&file.digest)).collect();
    let total: u64 = to_send.iter().map(|file| file.size).sum();
    tracing::info!(project, n_files = to_send.len(), bytes = total, "uploading input files");
    // Small uploads take no time worth showing.
    let mode = if total < UPLOAD_PROGRESS_BYTES { ProgressMode::Off } else { progress };
    let mut bar = Progress::new(mode, "upload", project, "bytes of input files uploaded");
    let mut sent = 0u64;
    for file in to_send {
        upload_file(coordinator, project, file)
            .await
            .with_context(|| format!("cannot upload input file {:?} ({})", file.name, file.path.display()))?;
        sent += file.size;
        bar.update(sent, total, "uploading");
    }
    bar.finish();
    Ok(())
}

/// Streams one file to the coordinator, read in chunks as the call sends them.
async fn upload_file(coordinator: &Coordinator, project: &str, file: &LocalFile) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::UploadFileRequest>(4);
    let (path, digest, size, project) = (file.path.clone(), file.digest.clone(), file.size, project.to_owned());
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut source = tokio::fs::File::open(&path).await?;
        let mut first = Some(v1::UploadFileRequest { project, digest, size, data: Vec::new() });
        loop {
            let mut data = vec![0u8; UPLOAD_CHUNK_BYTES];
            let mut filled = 0;
            while filled < data.len() {
                let n = source.read(&mut data[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            data.truncate(filled);
            let done = filled < UPLOAD_CHUNK_BYTES;
            let message = match first.take() {
                Some(first) => v1::UploadFileRequest { data, ..first },
                None if data.is_empty() => break,
                None => v1::UploadFileRequest { data, ..Default::default() },
            };
            if tx.send(message).await.is_err() || done {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    });
    let result = coordinator.client().upload_file(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    reader.await.context("the file reader panicked")?.context("reading the file")?;
    result.map_err(|status| coordinator.error(status))?;
    Ok(())
}

/// Environment variables as the protocol carries them, in name order.
fn env_to_proto(app_args: &AppArgs) -> Vec<v1::EnvVar> {
    app_args.env().iter().map(|(name, value)| v1::EnvVar { name: name.clone(), value: value.clone() }).collect()
}

fn create_request(
    manifest: &Manifest,
    app_module: Vec<u8>,
    validator_module: Option<Vec<u8>>,
) -> v1::CreateProjectRequest {
    let policy = manifest.policy();
    let limits = manifest.limits();
    v1::CreateProjectRequest {
        name: manifest.name().to_string(),
        app_module,
        policy: Some(v1::ReplicationPolicy {
            min_quorum: policy.min_quorum(),
            target_results: policy.target_results(),
            max_error_results: policy.max_error_results(),
            max_total_results: policy.max_total_results(),
            deadline_secs: policy.deadline().as_secs(),
            max_success_results: policy.max_success_results(),
            adaptive_replication: policy.adaptive_replication(),
            priority: policy.priority(),
        }),
        limits: Some(v1::Limits {
            fuel: limits.fuel(),
            memory_bytes: limits.memory_bytes(),
            output_bytes: limits.output_bytes(),
            wall_time_ms: u64::try_from(limits.wall_time().as_millis()).unwrap_or(u64::MAX),
            stderr_bytes: limits.stderr_bytes(),
            input_files_bytes: manifest.file_limits().0,
            output_files_bytes: manifest.file_limits().1,
        }),
        validator: match manifest.validator() {
            Validator::Bitwise => v1::ValidatorKind::Bitwise,
            Validator::Fuzzy { .. } => v1::ValidatorKind::Fuzzy,
            Validator::Custom { .. } => v1::ValidatorKind::Custom,
        }
        .into(),
        fuzzy: match manifest.validator() {
            Validator::Fuzzy { format, relative_tolerance, absolute_tolerance } => Some(v1::FuzzyValidator {
                format: match format {
                    FuzzyFormat::Whitespace => v1::FuzzyFormat::Whitespace,
                    FuzzyFormat::Json => v1::FuzzyFormat::Json,
                }
                .into(),
                relative_tolerance: *relative_tolerance,
                absolute_tolerance: *absolute_tolerance,
            }),
            Validator::Bitwise | Validator::Custom { .. } => None,
        },
        validator_module: validator_module.unwrap_or_default(),
        nan_canonicalization: manifest.nan_canonicalization(),
        work_units: Vec::new(),
        app_signature: Vec::new(),
        app_public_key: Vec::new(),
        seed: manifest.seed(),
        args: manifest.app_args().args().to_vec(),
        env: env_to_proto(manifest.app_args()),
        // The caller fills them in, hashed (`Project::files`).
        files: Vec::new(),
        checkpointing: manifest.checkpointing(),
    }
}

/// How the work units are split between calls.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// How many work units go in `CreateProject`.
    first: usize,
    /// The index ranges of the following `AddWorkUnits` calls.
    batches: Vec<Range<usize>>,
}

/// Splits work units of the given encoded sizes: all in the first call when
/// the whole request fits [`ONE_CALL_BYTES`], else batches that fit both
/// limits. `base` is the encoded size of `CreateProject` without work units.
fn plan(base: usize, sizes: &[usize]) -> Result<Plan, String> {
    if base > ONE_CALL_BYTES {
        return Err(format!(
            "the app and settings take {base} bytes, more than the {ONE_CALL_BYTES} bytes of one call"
        ));
    }
    if base + sizes.iter().sum::<usize>() <= ONE_CALL_BYTES {
        return Ok(Plan { first: sizes.len(), batches: Vec::new() });
    }
    // A project name is at most 64 bytes: AddWorkUnits has the same budget
    // less a little.
    const ADD_OVERHEAD: usize = 128;
    if let Some((index, size)) = sizes.iter().enumerate().find(|&(_, &size)| size + ADD_OVERHEAD > ONE_CALL_BYTES) {
        return Err(format!(
            "work unit #{} takes {size} bytes, more than the {ONE_CALL_BYTES} bytes of one call",
            index + 1
        ));
    }
    let take = |start: usize, budget: usize| {
        let mut used = 0;
        let mut end = start;
        while end < sizes.len() && end - start < BATCH_WORK_UNITS && used + sizes[end] <= budget {
            used += sizes[end];
            end += 1;
        }
        end
    };
    let first = take(0, ONE_CALL_BYTES - base);
    let mut batches = Vec::new();
    let mut start = first;
    while start < sizes.len() {
        let end = take(start, ONE_CALL_BYTES - ADD_OVERHEAD);
        batches.push(start..end);
        start = end;
    }
    Ok(Plan { first, batches })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn check(base: usize, sizes: &[usize], expected: Result<Plan, &str>) {
        let actual = plan(base, sizes);
        match expected {
            Ok(plan) => assert_eq!(actual, Ok(plan)),
            Err(fragment) => {
                let error = actual.expect_err("an impossible plan");
                assert!(error.contains(fragment), "{error}");
            }
        }
    }

    #[test]
    fn small_submissions_are_one_call() {
        check(1000, &[10; 200], Ok(Plan { first: 200, batches: vec![] }));
        // Many small work units still go in one call when they fit.
        check(1000, &[20; 100_000], Ok(Plan { first: 100_000, batches: vec![] }));
        check(ONE_CALL_BYTES - 10, &[10], Ok(Plan { first: 1, batches: vec![] }));
    }

    #[test]
    // A plan of one `AddWorkUnits` batch is a Vec holding one Range.
    #[allow(clippy::single_range_in_vec_init)]
    fn large_submissions_are_split() {
        // 60 units of 1 MiB with a 10 MiB app: 38 fit beside the app, then 22.
        check(10 * MIB, &[MIB; 60], Ok(Plan { first: 38, batches: vec![38..60] }));
        // Count limit: 25,000 units of 2 KiB are 48.8 MiB.
        check(100, &[2048; 25_000], Ok(Plan { first: 10_000, batches: vec![10_000..20_000, 20_000..25_000] }));
        // An app that leaves no room: the work units all go in AddWorkUnits.
        check(ONE_CALL_BYTES - 5, &[10, 10], Ok(Plan { first: 0, batches: vec![0..2] }));
    }

    #[test]
    fn impossible_submissions_are_refused() {
        check(ONE_CALL_BYTES + 1, &[], Err("the app and settings take"));
        check(10, &[10, ONE_CALL_BYTES], Err("work unit #2 takes"));
    }

    #[test]
    fn create_request_carries_the_manifest() {
        let manifest = Manifest::parse(
            "name = \"p\"\napp = \"a.wat\"\nnan_canonicalization = true\n\
             [limits]\nwall_time = \"2s\"\n[work_units]\nrange = { start = 0, end = 4, chunk = 2 }\n",
            Path::new("dir/project.toml"),
        )
        .expect("a valid manifest");
        let request = create_request(&manifest, vec![0, 1], None);
        assert_eq!(
            format!("{request:?}"),
            "CreateProjectRequest { name: \"p\", app_module: [0, 1], policy: Some(ReplicationPolicy { \
             min_quorum: 2, target_results: 2, max_error_results: 3, max_total_results: 8, \
             deadline_secs: 3600, max_success_results: 0, adaptive_replication: false, priority: 0 }), limits: Some(Limits { fuel: 100000000000, memory_bytes: 268435456, \
             output_bytes: 1048576, wall_time_ms: 2000, stderr_bytes: 0, input_files_bytes: 0, output_files_bytes: 0 }), validator: Bitwise, nan_canonicalization: true, \
             work_units: [], fuzzy: None, validator_module: [], app_signature: [], app_public_key: [], seed: None, args: [], env: [], files: [], checkpointing: false }"
        );
    }
}
