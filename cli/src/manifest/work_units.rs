//! Where a project's work units come from (`[work_units]` of the manifest):
//! a range of integers split into chunks, a JSON Lines file (whose lines may
//! also give a work unit's own `args` and `env`), or a folder with one file
//! per work unit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::app_args::AppArgs;
use super::files::{Hasher, LocalFile, named_paths};
use super::{Error, toml_format};

/// The most work units one manifest may produce (a guard against a typo such
/// as a chunk of 1 over a huge range filling the memory).
pub const MAX_WORK_UNITS: u64 = 10_000_000;

/// One work unit to submit: a name unique within the project, the app's
/// stdin, and its own arguments and environment variables (only a JSON Lines
/// source gives any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnit {
    pub name: String,
    pub input: Vec<u8>,
    pub app_args: AppArgs,
    /// Its own input files, hashed (JSON Lines `files`, or a folder's `file`).
    pub files: Vec<LocalFile>,
}

/// The source of a project's work units; exactly one per manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkUnitSource {
    /// `range = { start, end, chunk }`.
    Range(Range),
    /// `jsonl = "FILE"`: one JSON object per line.
    Jsonl(PathBuf),
    /// `dir = "FOLDER"`: each regular file is one work unit: its stdin, or,
    /// with `file = "NAME"`, its `/input/NAME`.
    Dir(PathBuf, Option<String>),
}

/// Integers `start..end` (end exclusive) split into chunks of `chunk`; the
/// last chunk is shorter when `chunk` does not divide the range. Each work
/// unit's input is "START END\n" and its name "START-END".
///
/// Invariants: `start < end`, `chunk >= 1`, at most [`MAX_WORK_UNITS`] chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    start: u64,
    end: u64,
    chunk: u64,
}

impl Range {
    pub fn new(start: u64, end: u64, chunk: u64) -> Result<Range, String> {
        if start >= end {
            return Err(format!("empty range: start ({start}) must be below end ({end})"));
        }
        if chunk == 0 {
            return Err("chunk must be at least 1".to_owned());
        }
        let range = Range { start, end, chunk };
        if range.len() > MAX_WORK_UNITS {
            return Err(format!(
                "{} work units is too many (at most {MAX_WORK_UNITS}): use a larger chunk",
                range.len()
            ));
        }
        Ok(range)
    }

    /// The number of work units (chunks).
    pub fn len(&self) -> u64 {
        (self.end - self.start).div_ceil(self.chunk)
    }

    /// Always false: a range holds at least one work unit.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The work units, in order.
    pub fn work_units(&self) -> impl Iterator<Item = WorkUnit> + '_ {
        (0..self.len()).map(move |index| {
            let start = self.start + index * self.chunk;
            let end = start.saturating_add(self.chunk).min(self.end);
            WorkUnit {
                name: format!("{start}-{end}"),
                input: format!("{start} {end}\n").into_bytes(),
                app_args: AppArgs::default(),
                files: Vec::new(),
            }
        })
    }
}

impl WorkUnitSource {
    /// Checks the `[work_units]` table: exactly one source, paths resolved
    /// against `base` (the manifest's folder).
    pub(super) fn from_toml(
        raw: toml_format::WorkUnits,
        base: &Path,
    ) -> Result<WorkUnitSource, (&'static str, String)> {
        if let Some(name) = &raw.file {
            if raw.dir.is_none() {
                return Err((
                    "work_units.file",
                    "goes with dir: each file of the folder becomes /input/NAME".to_owned(),
                ));
            }
            super::files::check_name(name).map_err(|problem| ("work_units.file", problem))?;
        }
        match (raw.range, raw.jsonl, raw.dir) {
            (Some(range), None, None) => Range::new(range.start, range.end, range.chunk)
                .map(WorkUnitSource::Range)
                .map_err(|problem| ("work_units.range", problem)),
            (None, Some(jsonl), None) => Ok(WorkUnitSource::Jsonl(base.join(jsonl))),
            (None, None, Some(dir)) => Ok(WorkUnitSource::Dir(base.join(dir), raw.file)),
            (None, None, None) => Err(("work_units", "give exactly one source: range, jsonl or dir".to_owned())),
            _ => Err(("work_units", "give exactly one source (range, jsonl or dir), not several".to_owned())),
        }
    }

    /// Builds every work unit, reading the files the source names. Fails on
    /// the first problem (unreadable file, bad line, duplicate name) or when
    /// there is no work unit at all.
    /// Builds every work unit, hashing their files with `hasher`.
    pub fn work_units(&self, hasher: &mut Hasher) -> Result<Vec<WorkUnit>, Error> {
        match self {
            WorkUnitSource::Range(range) => Ok(range.work_units().collect()),
            WorkUnitSource::Jsonl(path) => read_jsonl(path, hasher),
            WorkUnitSource::Dir(path, file) => read_dir(path, file.as_deref(), hasher),
        }
    }
}

/// One line of a jsonl source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    name: Option<String>,
    input: Option<String>,
    input_base64: Option<String>,
    /// Arguments after the project's.
    #[serde(default)]
    args: Vec<String>,
    /// Variables overriding the project's.
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    /// The work unit's own input files: NAME = PATH (relative to the file's folder).
    #[serde(default)]
    files: std::collections::BTreeMap<String, PathBuf>,
}

/// Reads a JSON Lines file: one object per line, blank lines skipped, names
/// "line-N" (N counted from 1) when not given.
fn read_jsonl(path: &Path, hasher: &mut Hasher) -> Result<Vec<WorkUnit>, Error> {
    let base = path.parent().unwrap_or(Path::new(""));
    let bytes = std::fs::read(path).map_err(|source| Error::ReadInputs { path: path.to_owned(), source })?;
    let mut work_units = Vec::new();
    // Name -> the line that used it first.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line_number = index + 1;
        let line_error = |problem: String| Error::InputLine { path: path.to_owned(), line: line_number, problem };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: JsonlLine =
            serde_json::from_slice(line).map_err(|error| line_error(format!("invalid JSON work unit: {error}")))?;
        let input = match (parsed.input, parsed.input_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|error| line_error(format!("invalid input_base64: {error}")))?,
            (None, None) => {
                return Err(line_error("missing input: give \"input\" (text) or \"input_base64\"".to_owned()));
            }
            (Some(_), Some(_)) => {
                return Err(line_error("give either \"input\" or \"input_base64\", not both".to_owned()));
            }
        };
        let name = match parsed.name {
            Some(name) if name.is_empty() => {
                return Err(line_error("\"name\" must not be empty".to_owned()));
            }
            Some(name) => name,
            None => format!("line-{line_number}"),
        };
        if let Some(first) = seen.insert(name.clone(), line_number) {
            return Err(line_error(format!("duplicate work unit name {name:?} (first on line {first})")));
        }
        let app_args = AppArgs::new(parsed.args, parsed.env)
            .map_err(|(field, problem)| line_error(format!("{field}: {problem}")))?;
        let files = named_paths(parsed.files, base)
            .map_err(|problem| line_error(format!("files: {problem}")))?
            .into_iter()
            .map(|(name, path)| hasher.local_file(&name, &path))
            .collect::<Result<Vec<_>, Error>>()?;
        work_units.push(WorkUnit { name, input, app_args, files });
    }
    if work_units.is_empty() {
        return Err(Error::Inputs {
            path: path.to_owned(),
            problem: "no work units: the file has no JSON lines".to_owned(),
        });
    }
    Ok(work_units)
}

/// Reads a folder: each regular file (symbolic links followed) is one work
/// unit named by its file name, in name order. Subfolders are skipped.
fn read_dir(path: &Path, as_file: Option<&str>, hasher: &mut Hasher) -> Result<Vec<WorkUnit>, Error> {
    let read_error = |path: &Path, source| Error::ReadInputs { path: path.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|source| read_error(path, source))? {
        let entry = entry.map_err(|source| read_error(path, source))?;
        let file_path = entry.path();
        let metadata = std::fs::metadata(&file_path).map_err(|source| read_error(&file_path, source))?;
        if !metadata.is_file() {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|name| Error::Inputs {
            path: path.to_owned(),
            problem: format!("file name {name:?} is not valid UTF-8, so it cannot name a work unit"),
        })?;
        files.push((name, file_path));
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Inputs {
            path: path.to_owned(),
            problem: "no work units: the folder has no regular files".to_owned(),
        });
    }
    files
        .into_iter()
        .map(|(name, file_path)| match as_file {
            Some(file_name) => {
                let file = hasher.local_file(file_name, &file_path)?;
                Ok(WorkUnit { name, input: Vec::new(), app_args: AppArgs::default(), files: vec![file] })
            }
            None => {
                let input = std::fs::read(&file_path).map_err(|source| read_error(&file_path, source))?;
                Ok(WorkUnit { name, input, app_args: AppArgs::default(), files: Vec::new() })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_splitting() {
        let check = |(start, end, chunk): (u64, u64, u64), expected: &str| {
            let actual = match Range::new(start, end, chunk) {
                Ok(range) => {
                    let units: Vec<String> = range
                        .work_units()
                        .map(|wu| format!("{}={:?}", wu.name, String::from_utf8_lossy(&wu.input)))
                        .collect();
                    assert_eq!(units.len() as u64, range.len());
                    units.join(" ")
                }
                Err(error) => format!("error: {error}"),
            };
            assert_eq!(actual, expected, "range {start}..{end} chunk {chunk}");
        };
        check((0, 10, 5), r#"0-5="0 5\n" 5-10="5 10\n""#);
        check((0, 10, 4), r#"0-4="0 4\n" 4-8="4 8\n" 8-10="8 10\n""#);
        check((7, 8, 100), r#"7-8="7 8\n""#);
        check((3, 6, 1), r#"3-4="3 4\n" 4-5="4 5\n" 5-6="5 6\n""#);
        check(
            (u64::MAX - 3, u64::MAX, 2),
            "18446744073709551612-18446744073709551614=\"18446744073709551612 18446744073709551614\\n\" \
             18446744073709551614-18446744073709551615=\"18446744073709551614 18446744073709551615\\n\"",
        );
        check((5, 5, 1), "error: empty range: start (5) must be below end (5)");
        check((6, 5, 1), "error: empty range: start (6) must be below end (5)");
        check((0, 10, 0), "error: chunk must be at least 1");
        check((0, 100_000_000, 1), "error: 100000000 work units is too many (at most 10000000): use a larger chunk");
    }

    #[test]
    fn the_primes_range_has_200_work_units() {
        let range = Range::new(0, 10_000_000, 50_000).expect("valid range");
        assert_eq!(range.len(), 200);
        let last = range.work_units().last().expect("200 work units");
        assert_eq!(last.name, "9950000-10000000");
    }

    /// Writes `content` as inputs.jsonl and compares the work units, or the
    /// error, with `expected`.
    fn check_jsonl(content: &str, expected: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("inputs.jsonl");
        std::fs::write(&path, content).expect("write inputs.jsonl");
        let actual = match WorkUnitSource::Jsonl(path).work_units(&mut Hasher::default()) {
            Ok(units) => describe(&units),
            Err(error) => error.to_string(),
        };
        let actual = actual.replace(&format!("{}/", dir.path().display()), "DIR/");
        assert!(actual.contains(expected), "jsonl:\n{content}\nexpected to contain: {expected}\nactual: {actual}");
    }

    fn describe(units: &[WorkUnit]) -> String {
        units
            .iter()
            .map(|wu| {
                let mut text = format!("{}={:?}", wu.name, wu.input);
                if !wu.app_args.is_empty() {
                    text.push_str(&format!(" args={:?} env={:?}", wu.app_args.args(), wu.app_args.env()));
                }
                text
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn jsonl_source() {
        check_jsonl(
            "{\"name\":\"a\",\"input\":\"hi\"}\n\n{\"input_base64\":\"AAEC\"}\n  \n{\"input\":\"\"}",
            "a=[104, 105] line-3=[0, 1, 2] line-5=[]",
        );
        check_jsonl(
            "{\"name\":\"a\",\"input\":\"1\"}\n{\"name\":\"a\",\"input\":\"2\"}\n",
            "DIR/inputs.jsonl:2: duplicate work unit name \"a\" (first on line 1)",
        );
        check_jsonl("{\"input\":\"1\"}\n{\"input\": 1\n", "DIR/inputs.jsonl:2: invalid JSON work unit:");
        check_jsonl(
            "{\"input\":\"1\",\"colour\":\"red\"}\n",
            "DIR/inputs.jsonl:1: invalid JSON work unit: unknown field `colour`",
        );
        check_jsonl(
            "{\"name\":\"x\"}\n",
            "DIR/inputs.jsonl:1: missing input: give \"input\" (text) or \"input_base64\"",
        );
        check_jsonl(
            "{\"input\":\"1\",\"input_base64\":\"AA==\"}\n",
            "DIR/inputs.jsonl:1: give either \"input\" or \"input_base64\", not both",
        );
        check_jsonl("{\"input_base64\":\"not base64!\"}\n", "DIR/inputs.jsonl:1: invalid input_base64:");
        check_jsonl("{\"name\":\"\",\"input\":\"1\"}\n", "DIR/inputs.jsonl:1: \"name\" must not be empty");
        check_jsonl("\n\n", "DIR/inputs.jsonl: no work units: the file has no JSON lines");
        check_jsonl("[1, 2]\n", "DIR/inputs.jsonl:1: invalid JSON work unit: invalid type");
    }

    #[test]
    fn jsonl_args_and_env() {
        check_jsonl(
            "{\"name\":\"a\",\"input\":\"\",\"args\":[\"--part\",\"1\"],\"env\":{\"Z\":\"z\",\"B\":\"b\"}}\n\
             {\"name\":\"b\",\"input\":\"\",\"args\":[]}\n{\"input\":\"\",\"env\":{\"ONLY\":\"\"}}\n",
            "a=[] args=[\"--part\", \"1\"] env={\"B\": \"b\", \"Z\": \"z\"} b=[] line-3=[] args=[] env={\"ONLY\": \"\"}",
        );
        check_jsonl(
            "{\"input\":\"\"}\n{\"input\":\"\",\"args\":[\"ok\",\"a\\u0000b\"]}\n",
            "DIR/inputs.jsonl:2: args: element 1 contains a NUL character",
        );
        check_jsonl(
            "{\"input\":\"\",\"env\":{\"A=B\":\"1\"}}\n",
            "DIR/inputs.jsonl:1: env: variable name \"A=B\" contains '='",
        );
        check_jsonl(
            "{\"input\":\"\",\"env\":{\"\":\"1\"}}\n",
            "DIR/inputs.jsonl:1: env: a variable name must not be empty",
        );
        check_jsonl(
            "{\"input\":\"\",\"args\":\"--flag\"}\n",
            "DIR/inputs.jsonl:1: invalid JSON work unit: invalid type: string",
        );
        check_jsonl(
            "{\"input\":\"\",\"env\":{\"A\":1}}\n",
            "DIR/inputs.jsonl:1: invalid JSON work unit: invalid type: integer",
        );
    }

    #[test]
    fn dir_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inputs = dir.path().join("inputs");
        std::fs::create_dir(&inputs).expect("create inputs");
        std::fs::create_dir(inputs.join("subfolder")).expect("create subfolder");
        std::fs::write(inputs.join("subfolder/ignored"), "x").expect("write");
        std::fs::write(inputs.join("b.txt"), "bee").expect("write");
        std::fs::write(inputs.join("a.txt"), "ay").expect("write");
        std::fs::write(inputs.join("c"), [0u8, 255]).expect("write");

        let units =
            WorkUnitSource::Dir(inputs.clone(), None).work_units(&mut Hasher::default()).expect("a folder with files");
        assert_eq!(describe(&units), "a.txt=[97, 121] b.txt=[98, 101, 101] c=[0, 255]");

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("create empty");
        let error =
            WorkUnitSource::Dir(empty.clone(), None).work_units(&mut Hasher::default()).expect_err("an empty folder");
        assert_eq!(error.to_string(), format!("{}: no work units: the folder has no regular files", empty.display()));

        let missing = dir.path().join("missing");
        let error = WorkUnitSource::Dir(missing.clone(), None)
            .work_units(&mut Hasher::default())
            .expect_err("a missing folder");
        assert_eq!(error.to_string(), format!("cannot read work unit inputs {}", missing.display()));
    }
}
