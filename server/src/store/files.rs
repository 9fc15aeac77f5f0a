//! Files in the database: which contents are stored (`files`), the input
//! files of projects and work units, who may download one, and the output
//! files of results. The bytes of input files are in the file store
//! (`crate::file_store`), never in rows; output files, bounded by the
//! project's `output_files` limit, are kept with their result when small,
//! in the file store when larger (the caller puts them there first).

use std::collections::{HashMap, HashSet};

use super::backend::{QueryBuilder, Row, Tx, query};

use super::bulk;
use super::rows::int;
use super::{Error, Result, Store};
use crate::domain::files::{FileName, InputFile, InputFiles, OutputFile};
use crate::domain::{Digest, HostId, ProjectId, ResultId, Timestamp, WorkUnitId};

/// An output file with its bytes, as a host reported it; `data` is `None`
/// when the bytes are in the file store (under the file's digest) instead.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedFile {
    pub file: OutputFile,
    pub data: Option<Vec<u8>>,
}

impl Store {
    /// Records that the file store holds `digest` (`size` bytes), so that
    /// projects may name it. Recording it again changes nothing.
    /// `p2p_meta`: what peers verify its bytes against (kept if already known).
    pub async fn record_file(&self, digest: &Digest, size: u64, p2p_meta: Option<&[u8]>, now: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        query(
            "INSERT INTO files (digest, size, created_at, p2p_meta) VALUES (?, ?, ?, ?) \
             ON CONFLICT (digest) DO UPDATE SET p2p_meta = COALESCE(files.p2p_meta, excluded.p2p_meta)",
        )
        .bind(digest.as_str())
        .bind(int(size))
        .bind(now.0)
        .bind(p2p_meta)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The digests among `digests` that are not stored, in the order given.
    pub async fn missing_files(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut stored = HashSet::new();
        for chunk in digests.chunks(bulk::CHUNK) {
            let mut query = QueryBuilder::new("SELECT digest FROM files WHERE digest IN (");
            let mut separated = query.separated(", ");
            for digest in chunk {
                separated.push_bind(digest.as_str().to_owned());
            }
            separated.push_unseparated(")");
            for row in query.build().persistent(false).fetch_all(&self.pool).await? {
                stored.insert(row.try_get::<String, _>("digest")?);
            }
        }
        Ok(digests.iter().filter(|d| !stored.contains(d.as_str())).cloned().collect())
    }

    /// What peers verify file `digest` against, if it is stored and described.
    pub async fn file_p2p_meta(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let row = query("SELECT p2p_meta FROM files WHERE digest = ?")
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get::<Option<Vec<u8>>, _>("p2p_meta")).transpose()?.flatten())
    }

    /// Whether `host` may download the file `digest`: it holds a copy in
    /// progress whose work unit sees the file (as a shared or an own file).
    pub async fn host_may_download(&self, host: HostId, digest: &Digest) -> Result<bool> {
        let row = query(
            "SELECT EXISTS (SELECT 1 FROM work_unit_files f JOIN results r ON r.work_unit_id = f.work_unit_id \
             WHERE f.digest = ?1 AND r.host_id = ?2 AND r.server_state = 'in_progress') \
             OR EXISTS (SELECT 1 FROM project_files f JOIN results r ON r.project_id = f.project_id \
             WHERE f.digest = ?1 AND r.host_id = ?2 AND r.server_state = 'in_progress') AS allowed",
        )
        .bind(digest.as_str())
        .bind(host.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<bool, _>("allowed")?)
    }

    /// The output files of results, by result, in name order, with their bytes.
    pub async fn result_files(&self, results: &[ResultId]) -> Result<HashMap<ResultId, Vec<ReportedFile>>> {
        let mut files: HashMap<ResultId, Vec<ReportedFile>> = HashMap::new();
        let ids: Vec<i64> = results.iter().map(|r| r.0).collect();
        for chunk in ids.chunks(bulk::CHUNK) {
            let mut query =
                QueryBuilder::new("SELECT result_id, name, digest, size, data FROM result_files WHERE result_id IN ");
            bulk::push_list(&mut query, chunk);
            query.push(" ORDER BY result_id, name");
            for row in query.build().fetch_all(&self.pool).await? {
                let file = OutputFile {
                    name: stored_name(row.try_get("name")?, "result_files")?,
                    digest: stored_digest(row.try_get("digest")?, "result_files")?,
                    size: super::rows::u64_column(&row, "size")?,
                };
                files
                    .entry(ResultId(row.try_get("result_id")?))
                    .or_default()
                    .push(ReportedFile { file, data: row.try_get("data")? });
            }
        }
        Ok(files)
    }
}

fn stored_name(name: String, table: &'static str) -> Result<FileName> {
    FileName::parse(&name).map_err(|error| Error::Corrupt { table, detail: error.to_string() })
}

fn stored_digest(digest: String, table: &'static str) -> Result<Digest> {
    Digest::parse(&digest).ok_or_else(|| Error::Corrupt { table, detail: format!("digest {digest:?}") })
}

/// Checks that every file of `files` was uploaded with the size given.
pub(super) async fn check_uploaded<'f>(tx: &mut Tx<'_>, files: impl IntoIterator<Item = &'f InputFile>) -> Result<()> {
    let mut wanted: HashMap<&str, &InputFile> = HashMap::new();
    for file in files {
        wanted.entry(file.digest.as_str()).or_insert(file);
    }
    let digests: Vec<&str> = wanted.keys().copied().collect();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for chunk in digests.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new("SELECT digest, size FROM files WHERE digest IN (");
        let mut separated = query.separated(", ");
        for digest in chunk {
            separated.push_bind(digest.to_string());
        }
        separated.push_unseparated(")");
        for row in query.build().persistent(false).fetch_all(&mut *tx).await? {
            sizes.insert(row.try_get("digest")?, super::rows::u64_column(&row, "size")?);
        }
    }
    let mut files: Vec<&InputFile> = wanted.into_values().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    for file in files {
        match sizes.get(file.digest.as_str()) {
            None => {
                return Err(Error::FileNotUploaded {
                    name: file.name.as_str().to_owned(),
                    digest: file.digest.to_string(),
                });
            }
            Some(&size) if size != file.size => {
                return Err(Error::FileSizeMismatch {
                    name: file.name.as_str().to_owned(),
                    digest: file.digest.to_string(),
                    given: file.size,
                    stored: size,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Records a project's shared files.
pub(super) async fn insert_project_files(tx: &mut Tx<'_>, project: ProjectId, files: &InputFiles) -> Result<()> {
    let files: Vec<&InputFile> = files.iter().collect();
    for chunk in files.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new("INSERT INTO project_files (project_id, name, digest) ");
        query.push_values(chunk, |mut row, file| {
            row.push_bind(project.0)
                .push_bind(file.name.as_str().to_owned())
                .push_bind(file.digest.as_str().to_owned());
        });
        query.build().persistent(false).execute(&mut *tx).await?;
    }
    Ok(())
}

/// A project's shared files.
pub(super) async fn project_files(tx: &mut Tx<'_>, project: ProjectId) -> Result<InputFiles> {
    let rows = query(
        "SELECT pf.name, pf.digest, f.size FROM project_files pf JOIN files f ON f.digest = pf.digest \
         WHERE pf.project_id = ? ORDER BY pf.name",
    )
    .bind(project.0)
    .fetch_all(&mut *tx)
    .await?;
    let files = rows.iter().map(input_file).collect::<Result<Vec<_>>>()?;
    InputFiles::new(files).map_err(|error| Error::Corrupt { table: "project_files", detail: error.to_string() })
}

fn input_file(row: &Row) -> Result<InputFile> {
    Ok(InputFile {
        name: stored_name(row.try_get("name")?, "input files")?,
        digest: stored_digest(row.try_get("digest")?, "input files")?,
        size: super::rows::u64_column(row, "size")?,
    })
}

/// Records work units' own files.
pub(super) async fn insert_work_unit_files(tx: &mut Tx<'_>, files: &[(WorkUnitId, &InputFile)]) -> Result<()> {
    for chunk in files.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new("INSERT INTO work_unit_files (work_unit_id, name, digest) ");
        query.push_values(chunk, |mut row, (id, file)| {
            row.push_bind(id.0).push_bind(file.name.as_str().to_owned()).push_bind(file.digest.as_str().to_owned());
        });
        query.build().persistent(false).execute(&mut *tx).await?;
    }
    Ok(())
}

/// An input file as a copy gets it: what its app sees, and what peers
/// verify its bytes against (`None`: not known; only the coordinator has it).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedFile {
    pub file: InputFile,
    pub p2p_meta: Option<Vec<u8>>,
}

/// The input files each of `work_units` sees (its project's shared files
/// and its own), in name order; work units without any are absent.
pub(super) async fn work_unit_files(
    tx: &mut Tx<'_>,
    work_units: &[WorkUnitId],
) -> Result<HashMap<WorkUnitId, Vec<AssignedFile>>> {
    let mut files: HashMap<WorkUnitId, Vec<AssignedFile>> = HashMap::new();
    let mut ids: Vec<i64> = work_units.iter().map(|w| w.0).collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(
            "SELECT wf.work_unit_id, wf.name, wf.digest, f.size, f.p2p_meta FROM work_unit_files wf \
             JOIN files f ON f.digest = wf.digest WHERE wf.work_unit_id IN ",
        );
        bulk::push_list(&mut query, chunk);
        query.push(
            " UNION ALL SELECT w.id AS work_unit_id, pf.name, pf.digest, f.size, f.p2p_meta FROM work_units w \
             JOIN project_files pf ON pf.project_id = w.project_id JOIN files f ON f.digest = pf.digest WHERE w.id IN ",
        );
        bulk::push_list(&mut query, chunk);
        for row in query.build().fetch_all(&mut *tx).await? {
            let assigned = AssignedFile { file: input_file(&row)?, p2p_meta: row.try_get("p2p_meta")? };
            files.entry(WorkUnitId(row.try_get("work_unit_id")?)).or_default().push(assigned);
        }
    }
    for list in files.values_mut() {
        list.sort_by(|a, b| a.file.name.cmp(&b.file.name));
    }
    Ok(files)
}

/// Records the output files of successful reports.
pub(super) async fn insert_result_files(tx: &mut Tx<'_>, files: &[(ResultId, &ReportedFile)]) -> Result<()> {
    for chunk in files.chunks(64) {
        let mut query = QueryBuilder::new("INSERT INTO result_files (result_id, name, digest, size, data) ");
        query.push_values(chunk, |mut row, (id, reported)| {
            row.push_bind(id.0)
                .push_bind(reported.file.name.as_str().to_owned())
                .push_bind(reported.file.digest.as_str().to_owned())
                .push_bind(int(reported.file.size))
                .push_bind(reported.data.clone());
        });
        query.push(
            " ON CONFLICT (result_id, name) DO UPDATE SET digest = excluded.digest, size = excluded.size, \
             data = excluded.data",
        );
        query.build().persistent(false).execute(&mut *tx).await?;
    }
    Ok(())
}
