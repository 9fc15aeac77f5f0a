//! Input files a manifest names: the project's shared files (`[files]`,
//! seen by every work unit's app as `/input/NAME`) and work units' own
//! (`"files"` in a JSON Lines source, or `file = "NAME"` with a folder
//! source: each file of the folder is its work unit's `/input/NAME`). Each is
//! checked and hashed (SHA-256, read in chunks, never whole in memory)
//! before anything is sent; the same path is hashed once however many work
//! units name it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Error;

/// The longest file name, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// A file to send: the name the app sees, where it is here, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of its bytes.
    pub digest: String,
    pub size: u64,
}

/// A file name as the app sees it under `/input`: one path component, 1 to
/// 255 bytes, no control character, neither `.` nor `..` (the coordinator
/// applies the same rule).
pub fn check_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 255 bytes"
    } else if name == "." || name == ".." {
        "it is a reference to a directory"
    } else if name.contains('/') || name.contains('\\') {
        "it holds a path separator (a file name is one path component)"
    } else if name.chars().any(char::is_control) {
        "it holds a control character"
    } else {
        return Ok(());
    };
    Err(format!("file name {name:?} is not allowed: {problem}"))
}

/// Checks the names of a `NAME = PATH` table and resolves its paths against `base`.
pub fn named_paths(table: BTreeMap<String, PathBuf>, base: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    table
        .into_iter()
        .map(|(name, path)| {
            check_name(&name)?;
            if path.as_os_str().is_empty() {
                return Err(format!("file {name:?}: the path is empty"));
            }
            Ok((name, base.join(path)))
        })
        .collect()
}

/// Checks what the coordinator would refuse of the work units' files, before
/// anything is sent: an own file named as a shared one, and inputs totalling
/// more than `limit` bytes (0: the coordinator's default, checked there).
pub fn check_work_units(shared: &[LocalFile], work_units: &[super::WorkUnit], limit: u64) -> Result<(), String> {
    let shared_bytes: u64 = shared.iter().map(|file| file.size).sum();
    for unit in work_units {
        if let Some(file) = unit.files.iter().find(|own| shared.iter().any(|s| s.name == own.name)) {
            return Err(format!(
                "work unit {:?}: file {:?} is both a shared file of the project and a file of the work unit",
                unit.name, file.name
            ));
        }
        let total = shared_bytes + unit.files.iter().map(|file| file.size).sum::<u64>();
        if limit > 0 && total > limit {
            return Err(format!(
                "work unit {:?}: its input files total {total} bytes, over the project's input_files limit of {limit} bytes",
                unit.name
            ));
        }
    }
    Ok(())
}

/// Hashes files, each path once.
#[derive(Debug, Default)]
pub struct Hasher {
    known: HashMap<PathBuf, (String, u64)>,
}

impl Hasher {
    /// The file at `path`, hashed, under `name`.
    pub fn local_file(&mut self, name: &str, path: &Path) -> Result<LocalFile, Error> {
        let read_error = |source| Error::ReadFile { name: name.to_owned(), path: path.to_owned(), source };
        let (digest, size) = match self.known.get(path) {
            Some(known) => known.clone(),
            None => {
                let metadata = std::fs::metadata(path).map_err(read_error)?;
                if !metadata.is_file() {
                    return Err(Error::ReadFile {
                        name: name.to_owned(),
                        path: path.to_owned(),
                        source: std::io::Error::other("not a regular file"),
                    });
                }
                let hashed = hash(path).map_err(read_error)?;
                self.known.insert(path.to_owned(), hashed.clone());
                hashed
            }
        };
        Ok(LocalFile { name: name.to_owned(), path: path.to_owned(), digest, size })
    }
}

/// SHA-256 (hex) and size of the file at `path`, read in chunks.
fn hash(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_component() {
        for good in ["data.txt", "ref genome.fa", ".hidden"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "../etc", "a\\b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn files_are_hashed_once_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        std::fs::write(&path, b"abc").unwrap();
        let mut hasher = Hasher::default();
        let file = hasher.local_file("data.txt", &path).unwrap();
        assert_eq!(file.digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(file.size, 3);
        std::fs::write(&path, b"changed").unwrap();
        assert_eq!(hasher.local_file("other", &path).unwrap().digest, file.digest, "hashed once");
        let missing = hasher.local_file("gone", &dir.path().join("gone")).unwrap_err().to_string();
        assert!(missing.contains("gone"), "{missing}");
    }
}
