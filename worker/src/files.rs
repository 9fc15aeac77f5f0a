//! Input and output files on the volunteer's disk: the file cache
//! (`files/<digest>` in the state directory) and each task's `/input` and
//! `/output` directories (`tasks/<server key>/<result id>/`).
//!
//! A file is under its digest's name only once all its bytes arrived and
//! their SHA-256 matched: a download goes to `files/<digest>.part`, appended
//! chunk by chunk (an interrupted download resumes from the part's length),
//! and is hashed whole before the rename. A task never sees a part file.
//! The cache is kept within its budget by the same rule as the app cache
//! (`app_cache::to_evict`): least recently used first, never a file a held
//! task needs (BOINC's sticky files).
//!
//! A task's `/input` is a directory of hard links to the cached files, under
//! the names the app sees (a copy where the file system cannot link);
//! `/output` is kept across a resume from a checkpoint, and read back once
//! the task succeeds: regular files directly in it, within the project's
//! limit. Plain blocking `std::fs`: callers use `spawn_blocking`.

use std::collections::HashSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::app_cache::{self, CachedApp};

/// What can go wrong with files on disk.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid file digest {0:?}: expected 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("invalid file name {0:?}: a file name is one path component")]
    InvalidName(String),
    #[error("the downloaded bytes of file {expected} hash to {actual}: discarded, to be downloaded again")]
    DigestMismatch { expected: String, actual: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_owned(), source }
}

fn check_digest(digest: &str) -> Result<(), FileError> {
    if crate::state::is_digest(digest) { Ok(()) } else { Err(FileError::InvalidDigest(digest.to_owned())) }
}

/// A name a coordinator gives a file must be one path component, so that a
/// hostile coordinator cannot make the worker write outside a task's directory.
pub fn check_name(name: &str) -> Result<(), FileError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255;
    if valid { Ok(()) } else { Err(FileError::InvalidName(name.to_owned())) }
}

/// The file cache of a state directory.
#[derive(Debug, Clone)]
pub struct FileCache {
    dir: PathBuf,
}

impl FileCache {
    pub fn new(dir: PathBuf) -> FileCache {
        FileCache { dir }
    }

    fn create(&self) -> Result<(), FileError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))
    }

    /// Where the verified file of `digest` is (whether or not it is there).
    pub fn path(&self, digest: &str) -> Result<PathBuf, FileError> {
        check_digest(digest)?;
        Ok(self.dir.join(digest))
    }

    fn part_path(&self, digest: &str) -> Result<PathBuf, FileError> {
        check_digest(digest)?;
        Ok(self.dir.join(format!("{digest}.part")))
    }

    /// Where a peer-to-peer download of `digest` goes before it is verified
    /// (the p2p engine verifies BLAKE3 ranges; this cache then checks the
    /// project's SHA-256 in [`FileCache::adopt`]).
    pub fn peer_download_path(&self, digest: &str) -> Result<PathBuf, FileError> {
        check_digest(digest)?;
        self.create()?;
        let path = self.dir.join(format!("{digest}.p2p"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(FileError::Io { path, source }),
        }
        Ok(path)
    }

    /// Takes a file downloaded elsewhere (from peers) into the cache once its
    /// SHA-256 is `digest`; otherwise deletes it.
    pub fn adopt(&self, digest: &str, downloaded: &Path) -> Result<u64, FileError> {
        let mut file = fs::File::open(downloaded).map_err(io(downloaded))?;
        let (actual, size) = hash_file(&mut file).map_err(io(downloaded))?;
        drop(file);
        if actual != digest {
            let _ = fs::remove_file(downloaded);
            return Err(FileError::DigestMismatch { expected: digest.to_owned(), actual });
        }
        let path = self.path(digest)?;
        fs::rename(downloaded, &path).map_err(io(&path))?;
        Ok(size)
    }

    /// Whether the file of `digest` is cached (and so verified).
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|path| path.is_file())
    }

    /// How many bytes of `digest` an interrupted download left (to resume from).
    pub fn partial_len(&self, digest: &str) -> Result<u64, FileError> {
        let path = self.part_path(digest)?;
        match fs::metadata(&path) {
            Ok(metadata) => Ok(metadata.len()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(FileError::Io { path, source }),
        }
    }

    /// Opens the part file of `digest` to append to, truncated to `offset`
    /// (what the coordinator resumes from).
    pub fn append(&self, digest: &str, offset: u64) -> Result<fs::File, FileError> {
        self.create()?;
        let path = self.part_path(digest)?;
        let file = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        file.set_len(offset).map_err(io(&path))?;
        Ok(file)
    }

    /// Forgets a download: its part file goes (to start from zero).
    pub fn discard_part(&self, digest: &str) -> Result<(), FileError> {
        let path = self.part_path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FileError::Io { path, source }),
        }
    }

    /// Checks a complete download against its digest (hashing the part file
    /// from disk, chunk by chunk) and puts it under the digest's name. A
    /// mismatch discards the part.
    pub fn finish(&self, digest: &str) -> Result<u64, FileError> {
        let part = self.part_path(digest)?;
        let mut file = fs::File::open(&part).map_err(io(&part))?;
        file.sync_all().map_err(io(&part))?;
        let (actual, size) = hash_file(&mut file).map_err(io(&part))?;
        if actual != digest {
            self.discard_part(digest)?;
            return Err(FileError::DigestMismatch { expected: digest.to_owned(), actual });
        }
        let path = self.path(digest)?;
        fs::rename(&part, &path).map_err(io(&path))?;
        Ok(size)
    }

    /// Marks a cached file as used now, for the eviction order.
    pub fn touch(&self, digest: &str) {
        if let Ok(path) = self.path(digest)
            && let Ok(file) = fs::File::open(&path)
        {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// The cached files (part files count too: they take disk, and are
    /// listed under their digest so that a needed one is not evicted).
    pub fn list(&self) -> Result<Vec<CachedApp>, FileError> {
        let mut files = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(source) => return Err(FileError::Io { path: self.dir.clone(), source }),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let digest = name.strip_suffix(".part").unwrap_or(name);
            if check_digest(digest).is_err() {
                continue;
            }
            let Ok(metadata) = entry.metadata() else { continue };
            let last_used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push(CachedApp { digest: digest.to_owned(), size: metadata.len(), last_used });
        }
        Ok(files)
    }

    /// The digests of the complete (verified) files in the cache.
    pub fn complete(&self) -> HashSet<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return HashSet::new() };
        entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| check_digest(name).is_ok())
            .collect()
    }

    /// Bytes the cache holds.
    pub fn bytes(&self) -> Result<u64, FileError> {
        Ok(self.list()?.iter().map(|file| file.size).sum())
    }

    /// Keeps the cache within `budget` bytes, never evicting a file in
    /// `needed`. Returns the digests evicted.
    pub fn trim(&self, needed: &HashSet<String>, budget: u64) -> Result<Vec<String>, FileError> {
        let cached = self.list()?;
        let evict = app_cache::to_evict(&cached, needed, budget);
        for digest in &evict {
            for path in [self.path(digest)?, self.part_path(digest)?] {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => tracing::warn!(path = %path.display(), %error, "cannot evict a cached file"),
                }
            }
        }
        Ok(evict)
    }
}

/// SHA-256 (hex) and size of a file, read in chunks.
fn hash_file(file: &mut fs::File) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Bytes free for an unprivileged user on the file system of `path`
/// (`None` when it cannot be told).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a valid, writable statvfs.
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let free = u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize));
    (status == 0).then_some(free)
}

/// Appends a chunk to an open part file.
pub fn write_chunk(file: &mut fs::File, chunk: &[u8]) -> std::io::Result<()> {
    file.write_all(chunk)
}

/// The directories of one task's files.
#[derive(Debug, Clone)]
pub struct TaskFiles {
    root: PathBuf,
}

impl TaskFiles {
    pub fn new(root: PathBuf) -> TaskFiles {
        TaskFiles { root }
    }

    pub fn input_dir(&self) -> PathBuf {
        self.root.join("input")
    }

    pub fn output_dir(&self) -> PathBuf {
        self.root.join("output")
    }

    /// Lays out `/input` (the cached files under their names, made anew) and
    /// `/output` (kept if there: a resumed task keeps what it wrote).
    pub fn prepare(&self, cache: &FileCache, inputs: &[(String, String)], output: bool) -> Result<(), FileError> {
        let input = self.input_dir();
        if input.exists() {
            fs::remove_dir_all(&input).map_err(io(&input))?;
        }
        if !inputs.is_empty() {
            fs::create_dir_all(&input).map_err(io(&input))?;
            for (name, digest) in inputs {
                check_name(name)?;
                let source = cache.path(digest)?;
                let target = input.join(name);
                if fs::hard_link(&source, &target).is_err() {
                    fs::copy(&source, &target).map_err(io(&target))?;
                }
            }
        }
        if output {
            let dir = self.output_dir();
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// The files the app wrote in `/output`, in name order, within `limit`
    /// bytes in all; `Err` names what breaks the rule (the task then fails
    /// with it as its error).
    pub fn read_outputs(&self, limit: u64) -> Result<Vec<(String, Vec<u8>)>, String> {
        let dir = self.output_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(format!("cannot read /output: {error}")),
        };
        let mut found = Vec::new();
        let mut total = 0u64;
        for entry in entries {
            let entry = entry.map_err(|error| format!("cannot read /output: {error}"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(|error| format!("/output/{name}: {error}"))?;
            if !kind.is_file() {
                return Err(format!(
                    "/output/{name} is not a regular file: only files directly in /output are reported"
                ));
            }
            let size = entry.metadata().map_err(|error| format!("/output/{name}: {error}"))?.len();
            total = total.saturating_add(size);
            if total > limit {
                return Err(format!(
                    "the output files total more than the project's output_files limit of {limit} bytes"
                ));
            }
            found.push(name);
        }
        found.sort();
        found
            .into_iter()
            .map(|name| {
                let bytes = fs::read(dir.join(&name)).map_err(|error| format!("/output/{name}: {error}"))?;
                Ok((name, bytes))
            })
            .collect()
    }

    /// Removes the task's directories. Missing ones are fine.
    pub fn remove(&self) -> Result<(), FileError> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FileError::Io { path: self.root.clone(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_download_resumes_and_lands_only_once_verified() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(dir.path().join("files"));
        let bytes = b"hello, volunteers".to_vec();
        let d = digest(&bytes);
        assert_eq!(cache.partial_len(&d).unwrap(), 0);
        let mut part = cache.append(&d, 0).unwrap();
        write_chunk(&mut part, &bytes[..5]).unwrap();
        drop(part);
        assert!(!cache.contains(&d), "a part file is not a cached file");
        assert_eq!(cache.partial_len(&d).unwrap(), 5);
        let mut part = cache.append(&d, 5).unwrap();
        write_chunk(&mut part, &bytes[5..]).unwrap();
        drop(part);
        assert_eq!(cache.finish(&d).unwrap(), bytes.len() as u64);
        assert!(cache.contains(&d));
        assert_eq!(fs::read(cache.path(&d).unwrap()).unwrap(), bytes);

        let other = digest(b"other");
        let mut part = cache.append(&other, 0).unwrap();
        write_chunk(&mut part, b"not the other").unwrap();
        drop(part);
        assert!(matches!(cache.finish(&other), Err(FileError::DigestMismatch { .. })));
        assert!(!cache.contains(&other));
        assert_eq!(cache.partial_len(&other).unwrap(), 0, "a bad download starts over");
    }

    #[test]
    fn digests_and_names_cannot_escape() {
        let cache = FileCache::new(PathBuf::from("/tmp/nowhere"));
        assert!(cache.path("../../etc/passwd").is_err());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("data.txt").is_ok());
    }

    #[test]
    fn task_directories_link_inputs_and_read_outputs_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(dir.path().join("files"));
        let bytes = b"reference".to_vec();
        let d = digest(&bytes);
        let mut part = cache.append(&d, 0).unwrap();
        write_chunk(&mut part, &bytes).unwrap();
        drop(part);
        cache.finish(&d).unwrap();

        let task = TaskFiles::new(dir.path().join("tasks/x/1"));
        task.prepare(&cache, &[("ref.txt".into(), d.clone())], true).unwrap();
        assert_eq!(fs::read(task.input_dir().join("ref.txt")).unwrap(), bytes);
        fs::write(task.output_dir().join("b.txt"), b"bb").unwrap();
        fs::write(task.output_dir().join("a.txt"), b"a").unwrap();
        assert_eq!(
            task.read_outputs(3).unwrap(),
            vec![("a.txt".into(), b"a".to_vec()), ("b.txt".into(), b"bb".to_vec())]
        );
        assert!(task.read_outputs(2).unwrap_err().contains("output_files limit"));
        fs::create_dir(task.output_dir().join("sub")).unwrap();
        assert!(task.read_outputs(100).unwrap_err().contains("not a regular file"));

        // Prepared again (a resume): the output written so far stays.
        task.prepare(&cache, &[("ref.txt".into(), d)], true).unwrap();
        assert!(task.output_dir().join("a.txt").exists());
        task.remove().unwrap();
        assert!(!task.input_dir().exists());
    }

    #[test]
    fn the_cache_evicts_least_recently_used_files_but_not_needed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(dir.path().join("files"));
        let mut digests = Vec::new();
        for (i, content) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
            let d = digest(*content);
            let mut part = cache.append(&d, 0).unwrap();
            write_chunk(&mut part, *content).unwrap();
            drop(part);
            cache.finish(&d).unwrap();
            let file = fs::File::open(cache.path(&d).unwrap()).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100 + i as u64)).unwrap();
            digests.push(d);
        }
        assert_eq!(cache.bytes().unwrap(), 12);
        let needed: HashSet<String> = [digests[0].clone()].into();
        let evicted = cache.trim(&needed, 4).unwrap();
        assert_eq!(evicted, vec![digests[1].clone(), digests[2].clone()]);
        assert!(cache.contains(&digests[0]));
    }
}
