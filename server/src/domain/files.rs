//! Input and output files of work units: their names, the set an app sees
//! as `/input`, the limits on them, and the digest that makes a result's
//! output files part of its comparison.
//!
//! A file is content-addressed: its SHA-256 [`Digest`] names its bytes,
//! which the coordinator keeps in its file store (beside the database), once
//! however many projects and work units use them. A project's **shared**
//! files are seen by every work unit's app; a work unit's **own** files only
//! by its copies. Both appear read-only as `/input/NAME`. An app of a project
//! that allows output files writes them in `/output`; they are reported with
//! the result, and two results agree only if their output files do too
//! (same names, same bytes), whatever the validator says of stdout.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::Digest;

/// The longest file name, in bytes (as most file systems allow).
pub const MAX_NAME_BYTES: usize = 255;
/// The most files a work unit's app may see (shared and own together).
pub const MAX_INPUT_FILES: usize = 1000;
/// The most output files one result may report.
pub const MAX_OUTPUT_FILES: usize = 100;

/// Why a file, a set of files or a limit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("file name {0:?} is not allowed: {1}")]
    BadName(String, &'static str),
    #[error("file {name:?}: digest {digest:?} is not 64 lowercase hex digits (a SHA-256)")]
    BadDigest { name: String, digest: String },
    #[error("file {0:?} is given twice")]
    Duplicate(String),
    #[error("file {0:?} is both a shared file of the project and a file of the work unit")]
    Shadows(String),
    #[error("{count} files: at most {MAX_INPUT_FILES} input files per work unit")]
    TooManyInputs { count: usize },
    #[error("{count} output files: at most {MAX_OUTPUT_FILES}")]
    TooManyOutputs { count: usize },
    #[error("the input files of {who} total {total} bytes, over the project's input_files limit of {limit} bytes")]
    InputsOverLimit { who: String, total: u64, limit: u64 },
    #[error("the output files total {total} bytes, over the project's output_files limit of {limit} bytes")]
    OutputsOverLimit { total: u64, limit: u64 },
    #[error("{field} of {value} bytes is over the most the coordinator allows, {max} bytes")]
    LimitTooLarge { field: &'static str, value: u64, max: u64 },
}

/// A file's name as the app sees it under `/input` or `/output`: one path
/// component, 1 to 255 bytes, no `/`, no NUL or other control character,
/// neither `.` nor `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

impl FileName {
    pub fn parse(name: &str) -> Result<FileName, FileError> {
        let bad = |why| Err(FileError::BadName(name.to_owned(), why));
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > MAX_NAME_BYTES {
            return bad("it is longer than 255 bytes");
        }
        if name == "." || name == ".." {
            return bad("it is a reference to a directory");
        }
        if name.contains('/') || name.contains('\\') {
            return bad("it holds a path separator (a file name is one path component)");
        }
        if name.chars().any(char::is_control) {
            return bad("it holds a control character");
        }
        Ok(FileName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One input file of a work unit: the name the app sees and the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub name: FileName,
    pub digest: Digest,
    pub size: u64,
}

impl InputFile {
    /// From what a client sent, checked.
    pub fn parse(name: &str, digest: &str, size: u64) -> Result<InputFile, FileError> {
        let name = FileName::parse(name)?;
        let digest = Digest::parse(digest)
            .ok_or_else(|| FileError::BadDigest { name: name.as_str().to_owned(), digest: digest.to_owned() })?;
        Ok(InputFile { name, digest, size })
    }
}

/// A set of input files with unique names (a project's shared files, or a
/// work unit's own), in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputFiles(Vec<InputFile>);

impl InputFiles {
    /// Checks that names are unique and the count is within [`MAX_INPUT_FILES`].
    pub fn new(mut files: Vec<InputFile>) -> Result<InputFiles, FileError> {
        if files.len() > MAX_INPUT_FILES {
            return Err(FileError::TooManyInputs { count: files.len() });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = files.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(FileError::Duplicate(pair[0].name.as_str().to_owned()));
        }
        Ok(InputFiles(files))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &InputFile> {
        self.0.iter()
    }

    pub fn total_bytes(&self) -> u64 {
        self.0.iter().map(|file| file.size).fold(0, u64::saturating_add)
    }

    /// What a work unit's app sees: the project's shared files and the work
    /// unit's own, whose names must differ, within `limit` bytes in all.
    /// `who` names the work unit in the error.
    pub fn merge(shared: &InputFiles, own: &InputFiles, limit: u64, who: &str) -> Result<InputFiles, FileError> {
        if let Some(file) = own.iter().find(|file| shared.iter().any(|s| s.name == file.name)) {
            return Err(FileError::Shadows(file.name.as_str().to_owned()));
        }
        let files: Vec<InputFile> = shared.iter().chain(own.iter()).cloned().collect();
        let merged = InputFiles::new(files)?;
        let total = merged.total_bytes();
        if total > limit {
            return Err(FileError::InputsOverLimit { who: who.to_owned(), total, limit });
        }
        Ok(merged)
    }
}

/// A project's limits on files, per work unit: the total size of the input
/// files its app sees, and of the output files one result may report (0:
/// the project has no output files, and its apps get no `/output`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimits {
    pub input_bytes: u64,
    pub output_bytes: u64,
}

impl FileLimits {
    /// A project that says nothing: 1 GiB of inputs, no output files.
    pub const DEFAULT: FileLimits = FileLimits { input_bytes: Self::DEFAULT_INPUT_BYTES, output_bytes: 0 };
    /// Input files' total when the project does not say.
    pub const DEFAULT_INPUT_BYTES: u64 = 1 << 30;
    /// The largest input total a project may ask volunteers to hold.
    pub const MAX_INPUT_BYTES: u64 = 64 << 30;
    /// The largest output files' total: they are stored with the result.
    pub const MAX_OUTPUT_BYTES: u64 = 32 << 20;

    /// From requested values; an input limit of 0 means the default.
    pub fn new(input_bytes: u64, output_bytes: u64) -> Result<FileLimits, FileError> {
        let input_bytes = if input_bytes == 0 { Self::DEFAULT_INPUT_BYTES } else { input_bytes };
        if input_bytes > Self::MAX_INPUT_BYTES {
            return Err(FileError::LimitTooLarge {
                field: "input_files",
                value: input_bytes,
                max: Self::MAX_INPUT_BYTES,
            });
        }
        if output_bytes > Self::MAX_OUTPUT_BYTES {
            return Err(FileError::LimitTooLarge {
                field: "output_files",
                value: output_bytes,
                max: Self::MAX_OUTPUT_BYTES,
            });
        }
        Ok(FileLimits { input_bytes, output_bytes })
    }
}

/// One output file a result reports: its name under `/output` and its bytes'
/// digest and size (the coordinator computes both from the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub name: FileName,
    pub digest: Digest,
    pub size: u64,
}

/// Checks a result's output files against the project's limit: unique
/// names, at most [`MAX_OUTPUT_FILES`], `limit` bytes in all. Returns them in
/// name order.
pub fn check_outputs(mut files: Vec<OutputFile>, limit: u64) -> Result<Vec<OutputFile>, FileError> {
    if files.len() > MAX_OUTPUT_FILES {
        return Err(FileError::TooManyOutputs { count: files.len() });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = files.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(FileError::Duplicate(pair[0].name.as_str().to_owned()));
    }
    let total = files.iter().map(|file| file.size).fold(0, u64::saturating_add);
    if total > limit {
        return Err(FileError::OutputsOverLimit { total, limit });
    }
    Ok(files)
}

/// The digest that stands for a result's whole output when it wrote output
/// files: SHA-256 over stdout's digest and each file's name and digest, in
/// name order. Without output files it is stdout's digest itself, so results
/// of projects without files compare as they always did.
pub fn output_digest(stdout_digest: &Digest, files: &[OutputFile]) -> Digest {
    if files.is_empty() {
        return stdout_digest.clone();
    }
    let sorted: BTreeMap<&str, &str> = files.iter().map(|file| (file.name.as_str(), file.digest.as_str())).collect();
    let mut hasher = Sha256::new();
    hasher.update(b"quorum output v1\n");
    hasher.update(stdout_digest.as_str().as_bytes());
    for (name, digest) in sorted {
        hasher.update(b"\n");
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(digest.as_bytes());
    }
    Digest::from_hex(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, tag: char, size: u64) -> InputFile {
        InputFile::parse(name, &tag.to_string().repeat(64), size).unwrap()
    }

    #[test]
    fn names_are_one_printable_path_component() {
        for good in ["data.txt", "reference genome.fa", "é", ".hidden", "a..b"] {
            assert!(FileName::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "/etc", "a\\b", "a\0b", "tab\tname", &"x".repeat(256)] {
            assert!(matches!(FileName::parse(bad), Err(FileError::BadName(..))), "{bad:?}");
        }
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(InputFile::parse("a", &"a".repeat(64), 1).is_ok());
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64)] {
            assert!(matches!(InputFile::parse("a", bad, 1), Err(FileError::BadDigest { .. })), "{bad:?}");
        }
    }

    #[test]
    fn a_set_has_unique_names_in_order() {
        let set = InputFiles::new(vec![file("b", 'b', 1), file("a", 'a', 2)]).unwrap();
        let names: Vec<&str> = set.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(set.total_bytes(), 3);
        assert_eq!(InputFiles::new(vec![file("a", 'a', 1), file("a", 'b', 1)]), Err(FileError::Duplicate("a".into())));
    }

    #[test]
    fn merging_refuses_shadowing_and_totals_over_the_limit() {
        let shared = InputFiles::new(vec![file("ref", 'a', 100)]).unwrap();
        let own = InputFiles::new(vec![file("chunk", 'b', 50)]).unwrap();
        let merged = InputFiles::merge(&shared, &own, 150, "wu-1").unwrap();
        assert_eq!(merged.total_bytes(), 150);
        assert!(matches!(InputFiles::merge(&shared, &own, 149, "wu-1"), Err(FileError::InputsOverLimit { .. })));
        let clash = InputFiles::new(vec![file("ref", 'c', 1)]).unwrap();
        assert_eq!(InputFiles::merge(&shared, &clash, 1000, "wu-1"), Err(FileError::Shadows("ref".into())));
    }

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(FileLimits::new(0, 0).unwrap().input_bytes, FileLimits::DEFAULT_INPUT_BYTES);
        assert!(FileLimits::new(FileLimits::MAX_INPUT_BYTES + 1, 0).is_err());
        assert!(FileLimits::new(0, FileLimits::MAX_OUTPUT_BYTES + 1).is_err());
    }

    fn output(name: &str, tag: char, size: u64) -> OutputFile {
        OutputFile {
            name: FileName::parse(name).unwrap(),
            digest: Digest::parse(&tag.to_string().repeat(64)).unwrap(),
            size,
        }
    }

    #[test]
    fn outputs_are_checked_against_the_limit() {
        let files = check_outputs(vec![output("b", 'b', 5), output("a", 'a', 5)], 10).unwrap();
        assert_eq!(files[0].name.as_str(), "a");
        assert!(matches!(check_outputs(vec![output("a", 'a', 11)], 10), Err(FileError::OutputsOverLimit { .. })));
        assert!(matches!(
            check_outputs(vec![output("a", 'a', 1), output("a", 'b', 1)], 10),
            Err(FileError::Duplicate(_))
        ));
    }

    #[test]
    fn the_output_digest_covers_stdout_and_every_file() {
        let stdout = Digest::parse(&"0".repeat(64)).unwrap();
        assert_eq!(output_digest(&stdout, &[]), stdout, "no files: stdout's digest, as before files");
        let one = output_digest(&stdout, &[output("a", 'a', 1), output("b", 'b', 1)]);
        let reordered = output_digest(&stdout, &[output("b", 'b', 1), output("a", 'a', 1)]);
        assert_eq!(one, reordered);
        assert_ne!(one, output_digest(&stdout, &[output("a", 'a', 1), output("b", 'c', 1)]));
        assert_ne!(one, output_digest(&stdout, &[output("a", 'a', 1), output("c", 'b', 1)]));
        assert_ne!(one, output_digest(&stdout, &[output("a", 'a', 1)]));
        let other_stdout = Digest::parse(&"1".repeat(64)).unwrap();
        assert_ne!(one, output_digest(&other_stdout, &[output("a", 'a', 1), output("b", 'b', 1)]));
    }
}
