//! How every quorum binary logs: one line per event, filtered by `RUST_LOG`
//! (else the binary's default level), as text for people or as JSON Lines
//! for log collectors (`--log-format json`), on stderr ([`init`]) or in a
//! file rotated by size ([`init_file`], `--log-file`). Text has colours only
//! when stderr is a terminal, so a redirected log holds no ANSI codes, and
//! never in a file.
//!
//! A log that cannot be written (a full disk) loses lines, never the
//! process: nothing here panics or retries on a failed write.

use std::io::{IsTerminal as _, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The format of the log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (the message and the event's fields) and the enclosing `span`s.
    Json,
}

/// A log file and its rotation (`--log-file`, `--log-max-mb`, `--log-keep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLog {
    path: PathBuf,
    /// PATH is renamed PATH.1 at the first line written once it holds more
    /// than this: a file exceeds it by at most one line.
    max_bytes: u64,
    /// Files kept in all, PATH included: PATH, PATH.1 ... PATH.{keep - 1}.
    keep: u32,
}

impl FileLog {
    /// Logs to `path`, rotated past `max_bytes`, `keep` files in all
    /// (both raised to at least 1).
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32) -> FileLog {
        FileLog { path, max_bytes: max_bytes.max(1), keep: keep.max(1) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parses `--log-max-mb`: a positive number of megabytes (1 MB = 1,000,000
/// bytes), fractions allowed (`0.5`), into bytes.
pub fn parse_megabytes(text: &str) -> Result<u64, String> {
    let megabytes: f64 = text.trim().parse().map_err(|_| format!("invalid size {text:?}: expected a number of MB"))?;
    if !(megabytes.is_finite() && megabytes > 0.0) {
        return Err(format!("invalid size {text:?}: must be a positive number of MB"));
    }
    let bytes = (megabytes * 1_000_000.0).round();
    if bytes < 1.0 {
        return Err(format!("invalid size {text:?}: below one byte"));
    }
    // `as` saturates: a size beyond u64 is "never rotate", which is what it says.
    Ok(bytes as u64)
}

/// Installs the global subscriber on stderr: `RUST_LOG` when set and valid,
/// else `default_level` (e.g. "info" for daemons, "warn" for the CLI).
pub fn init(format: LogFormat, default_level: &str) {
    install(format, default_level, std::io::stderr, std::io::stderr().is_terminal());
}

/// As [`init`], into `file` instead of stderr, in the same format. The file
/// (and its directory) is created if missing, mode 0600 (a log names the
/// host's coordinators); an existing one open to others is narrowed to 0600
/// with a warning. Lines are appended; PATH rotates to PATH.1 (PATH.1 to
/// PATH.2, ...; the oldest beyond `keep` is deleted) once it passes the size.
///
/// Fails only when the file cannot be opened now; later failures (a full
/// disk, a deleted directory) lose lines until writing works again.
pub fn init_file(format: LogFormat, default_level: &str, file: &FileLog) -> std::io::Result<()> {
    // Absolute, as file-rotate would resolve a relative one against the
    // working directory at each rotation.
    let path = std::path::absolute(&file.path)?;
    let narrowed = prepare(&path)?;
    let writer = RotatingFile::open(FileLog { path, ..file.clone() })?;
    install(format, default_level, Mutex::new(writer), false);
    if let Some(mode) = narrowed {
        tracing::warn!(file = %file.path.display(), mode = format!("{mode:o}"), "the log file was open to other users; narrowed to owner only");
    }
    Ok(())
}

/// [`init_file`] when given a file, else [`init`]: what a binary with a
/// `--log-file` flag calls once.
pub fn init_to(format: LogFormat, default_level: &str, file: Option<&FileLog>) -> std::io::Result<()> {
    match file {
        Some(file) => init_file(format, default_level, file),
        None => {
            init(format, default_level);
            Ok(())
        }
    }
}

fn install<W>(format: LogFormat, default_level: &str, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // tracing's own report of a failed write would `eprintln!`, which
    // panics on a full disk, in whatever thread logged: it stays off.
    let builder = tracing_subscriber::fmt().with_writer(writer).with_env_filter(filter).log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Creates `path`'s directory and the file (mode 0600) if missing, so that a
/// bad path is an error at start; narrows an existing file open to others.
/// Returns the mode it had when narrowed.
fn prepare(path: &Path) -> std::io::Result<Option<u32>> {
    let context = |error: std::io::Error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display()));
    std::fs::create_dir_all(directory(path)).map_err(context)?;
    let file = open_options().open(path).map_err(context)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(context)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(context)?;
            return Ok(Some(mode));
        }
    }
    drop(file);
    Ok(None)
}

/// How every log file is opened, the rotated ones included: appending,
/// created owner-only.
fn open_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    // file-rotate asks for read (it counts lines for line limits).
    options.read(true).create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// The directory a log file is in ("." for a bare file name).
fn directory(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The log file writer: file-rotate's, behind a guard. file-rotate returns
/// I/O errors, but a few of its paths `expect` or `assert!` (a rotated name
/// that appeared behind its back, a directory it cannot recreate); a panic
/// there must cost log lines, not a task thread (rayon aborts the process on
/// a panic) or the worker's loop.
struct RotatingFile {
    file: FileLog,
    /// `None` after file-rotate panicked; opened again (which rescans the
    /// rotated files) at the next line, once the directory exists.
    rotate: Option<FileRotate<AppendCount>>,
}

impl RotatingFile {
    fn open(file: FileLog) -> std::io::Result<RotatingFile> {
        let rotate = new_rotate(&file)
            .ok_or_else(|| std::io::Error::other(format!("{}: cannot set up log rotation", file.path.display())))?;
        Ok(RotatingFile { file, rotate: Some(rotate) })
    }
}

fn new_rotate(file: &FileLog) -> Option<FileRotate<AppendCount>> {
    let max_bytes = usize::try_from(file.max_bytes).unwrap_or(usize::MAX);
    let rotated = file.keep as usize - 1;
    catch_unwind(AssertUnwindSafe(|| {
        FileRotate::new(
            &file.path,
            AppendCount::new(rotated),
            ContentLimit::BytesSurpassed(max_bytes),
            Compression::None,
            Some(open_options()),
        )
    }))
    .ok()
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.rotate.is_none() && directory(&self.file.path).is_dir() {
            self.rotate = new_rotate(&self.file);
        }
        let Some(rotate) = self.rotate.as_mut() else {
            return Err(std::io::Error::other("the log file is not open"));
        };
        match catch_unwind(AssertUnwindSafe(|| rotate.write(buf))) {
            Ok(written) => written,
            Err(_) => {
                self.rotate = None;
                Err(std::io::Error::other("log rotation failed"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.rotate.as_mut() {
            Some(rotate) => catch_unwind(AssertUnwindSafe(|| rotate.flush()))
                .unwrap_or_else(|_| Err(std::io::Error::other("log flush failed"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes() {
        let check = |text: &str, expected: Result<u64, ()>| {
            assert_eq!(parse_megabytes(text).map_err(|_| ()), expected, "{text}");
        };
        check("10", Ok(10_000_000));
        check("0.5", Ok(500_000));
        check("0.0002", Ok(200));
        check("0.000001", Ok(1));
        for bad in ["0", "-1", "x", "inf", "NaN", "0.0000001", ""] {
            check(bad, Err(()));
        }
    }

    /// The files of `dir`, sorted, with their sizes.
    fn files(dir: &Path) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
            .expect("read the directory")
            .map(|entry| {
                let entry = entry.expect("a directory entry");
                (entry.file_name().to_string_lossy().into_owned(), entry.metadata().expect("metadata").len())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn rotates_by_size_keeping_whole_lines_and_the_kept_count() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("logs").join("worker.log");
        let file = FileLog::new(path.clone(), 100, 3);
        assert_eq!(prepare(&path).expect("prepare"), None);
        let mut writer = RotatingFile::open(file).expect("open");
        let line = |n: usize| format!("line {n:03} of the log, thirty bytes\n");
        for n in 0..40 {
            writer.write_all(line(n).as_bytes()).expect("write");
        }
        let names: Vec<String> = files(&dir.path().join("logs")).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["worker.log", "worker.log.1", "worker.log.2"]);
        for (name, size) in files(&dir.path().join("logs")) {
            assert!(size <= 100 + line(0).len() as u64, "{name} holds {size} bytes");
        }
        // Whole lines only, the newest in PATH, in order across files.
        let newest = std::fs::read_to_string(&path).expect("read");
        assert!(newest.ends_with(&line(39)), "{newest}");
        let older = std::fs::read_to_string(dir.path().join("logs/worker.log.1")).expect("read");
        assert!(older.lines().all(|l| l.starts_with("line ") && l.ends_with("bytes")), "{older}");
        #[cfg(unix)]
        for name in ["worker.log", "worker.log.1", "worker.log.2"] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("logs").join(name)).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_open_to_others_is_narrowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("worker.log");
        std::fs::write(&path, "old line\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(prepare(&path).expect("prepare"), Some(0o644));
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old line\n", "appended to, not truncated");
        assert!(prepare(&dir.path().join("missing-dir-is-created/x.log")).is_ok());
    }

    #[test]
    fn a_panic_in_the_rotation_loses_lines_not_the_process() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("worker.log");
        let mut writer = RotatingFile::open(FileLog::new(path.clone(), 10, 2)).expect("open");
        writer.write_all(b"first line, longer than ten bytes\n").expect("write");
        // A rotated name file-rotate did not see appear: its rename asserts.
        std::fs::write(dir.path().join("worker.log.1"), "put there by someone else\n").expect("write");
        assert!(writer.write_all(b"second line\n").is_err(), "the panic became an error");
        // The next line opens the file again, which sees worker.log.1.
        writer.write_all(b"third line\n").expect("write after the failure");
        assert!(std::fs::read_to_string(&path).expect("read").contains("third line"));
    }
}
