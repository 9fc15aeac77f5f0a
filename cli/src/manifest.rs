//! The project manifest, `project.toml`, parsed into domain types.
//!
//! Parse, don't validate: [`Manifest::parse`] turns the TOML text into a
//! [`Manifest`] whose parts ([`ProjectName`], [`Policy`], [`Limits`],
//! [`WorkUnitSource`]) can only be built through constructors that check
//! them, with defaults filled in. Every error names the manifest file, the
//! field and the problem. [`Manifest::load_project`] then reads the app and
//! builds every work unit; nothing is sent anywhere until all of it succeeded.
//! Of the app it checks only that it is a core module exporting `_start` (a
//! WASI command); the coordinator validates it fully.
//!
//! The format (paths relative to the manifest's folder):
//!
//! ```toml
//! name = "primes"                  # required, [A-Za-z0-9_.-]{1,64}
//! app = "primes.wat"               # required, .wasm (as is) or .wat (converted)
//! nan_canonicalization = false     # default false
//! checkpointing = false            # default false: true gives each task a /checkpoint directory
//! seed = 42                        # optional: the project seed random draws derive from
//!                                  #   (default: derived from name); see README
//! args = ["--steps", "100"]        # optional: the app's arguments after argv[0] (the name)
//! [env]                            # optional: the app's environment variables
//! MODE = "fast"
//! [policy]                         # optional, defaults shown
//! min_quorum = 2
//! target_results = 2               # default: min_quorum
//! max_error_results = 3
//! max_total_results = 8            # default: target_results * 4
//! max_success_results = 8         # default: max_total_results
//! deadline = "1h"                  # humantime, whole seconds
//! adaptive_replication = false     # accept one result from a trusted host
//! priority = 0                     # higher first when copies are handed out
//! [limits]                         # optional, defaults shown
//! fuel = 100_000_000_000
//! memory = "256MiB"                # or an integer of bytes, or memory_bytes = N
//! output_bytes = 1048576           # integer or a size string
//! wall_time = "10m"                # humantime
//! stderr_bytes = 0                 # integer or a size string; 0: the worker's 1 MiB
//! input_files = "1GiB"             # input files one work unit's app sees, in all
//! output_files = 0                 # output files one result may report, in all; 0: no /output
//! [files]                          # optional: files every work unit's app sees as /input/NAME
//! "reference.dat" = "data/reference.dat"
//! [validator]                      # optional; kind = "bitwise" (default), "fuzzy" or "custom"
//! # kind = "fuzzy"                 # numbers within a tolerance:
//! # format = "whitespace"          #   or "json"
//! # relative_tolerance = 1e-9      #   |a-b| <= relative * max(|a|,|b|)
//! # absolute_tolerance = 0.0       #   or |a-b| <= absolute
//! # kind = "custom"                # a module compares two outputs:
//! # module = "validator.wat"       #   stdin: u64 LE length + A, u64 LE length + B; exit 0 agree, 1 not
//! kind = "bitwise"                 # the only kind
//! [work_units]                     # required, exactly one source
//! range = { start = 0, end = 1000, chunk = 100 }
//! # jsonl = "inputs.jsonl"
//! # dir = "inputs/"
//! # file = "chunk.dat"             #   with dir: each file is its work unit's /input/chunk.dat
//! #                                #   (its stdin empty), not its stdin
//! ```
//!
//! A `jsonl` file holds one JSON object per line: `name` (optional, default
//! `line-N`), the input as `input` (text) or `input_base64`, and optionally
//! the work unit's own `args` (an array of strings, after the project's) and
//! `env` (an object of strings, overriding the project's variables):
//!
//! ```json
//! {"name": "a", "input": "1 2\n", "args": ["--part", "1"], "env": {"MODE": "slow"}}
//! {"name": "b", "input": "", "files": {"chunk.dat": "chunks/b.dat"}}
//! ```
//!
//! A line's `files` are the work unit's own input files (`/input/NAME`,
//! paths relative to the JSON Lines file's folder), besides the project's
//! `[files]`; their names must differ. Every file is hashed before anything
//! is sent, and uploaded once however many work units name it.
//!
//! The app then sees `argv = [name, project args..., work unit args...]` and
//! the merged variables in name order; nothing of the host's. Rules, for the
//! project's part and for each work unit's part alike (`app_args`): at most
//! 128 arguments, 128 variables and 32 KiB (each argument and `NAME=VALUE`
//! counted with a NUL), no NUL anywhere, variable names not empty and
//! without `=`.
//!
//! This module knows nothing of gRPC: `commands::submit` converts its types.

mod app_args;
mod files;
mod work_units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use app_args::AppArgs;
pub use files::LocalFile;
pub use work_units::{Range, WorkUnit, WorkUnitSource};

/// Default of `policy.min_quorum`.
pub const DEFAULT_MIN_QUORUM: u32 = 2;
/// Default of `policy.max_error_results`.
pub const DEFAULT_MAX_ERROR_RESULTS: u32 = 3;
/// `policy.max_total_results` defaults to `target_results` times this.
pub const DEFAULT_TOTAL_RESULTS_FACTOR: u32 = 4;
/// Default of `policy.deadline`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3600);
/// Default of `limits.fuel`.
pub const DEFAULT_FUEL: u64 = 100_000_000_000;
/// Default of `limits.memory`.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// Default of `limits.output_bytes`.
pub const DEFAULT_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Default of `limits.wall_time`.
pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(600);
/// The smallest memory limit: one WebAssembly page.
const WASM_PAGE_BYTES: u64 = 65_536;

/// Everything that can be wrong with a manifest or the files it names.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read manifest {}", path.display())]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown field, a value of the wrong type;
    /// the message from the TOML parser names the field and its line.
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: {field}: {problem}", path.display())]
    Field { path: PathBuf, field: &'static str, problem: String },
    /// `field` is the manifest field naming the module: `app` or `validator.module`.
    #[error("cannot read {} {} (field `{field}` of {})", role(field), app.display(), manifest.display())]
    ReadApp {
        manifest: PathBuf,
        field: &'static str,
        app: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {}: {problem}", role(field), app.display())]
    App { field: &'static str, app: PathBuf, problem: String },
    #[error("cannot read work unit inputs {}", path.display())]
    ReadInputs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}", path.display())]
    InputLine { path: PathBuf, line: usize, problem: String },
    #[error("{}: {problem}", path.display())]
    Inputs { path: PathBuf, problem: String },
    #[error("cannot read input file {name:?} ({})", path.display())]
    ReadFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A project name: 1 to 64 characters among `A-Z a-z 0-9 _ . -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(name: &str) -> Result<ProjectName, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.len() > 64 {
            return Err(format!("must be 1 to 64 characters long, got {}", name.len()));
        }
        if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
            return Err(format!("{bad:?} is not allowed in {name:?}: use letters, digits, '_', '.' and '-'"));
        }
        Ok(ProjectName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The replication policy of every work unit of a project (BOINC's names).
///
/// Invariants: `1 <= min_quorum <= target_results <= max_total_results`,
/// `deadline` at least one second and a whole number of seconds. The server
/// checks coherence again with its own rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    min_quorum: u32,
    target_results: u32,
    max_error_results: u32,
    max_total_results: u32,
    deadline: Duration,
    /// 0: the coordinator's default (max_total_results).
    max_success_results: u32,
    adaptive_replication: bool,
    /// Higher first when copies are handed out.
    priority: i32,
}

impl Policy {
    /// Builds a policy from the manifest's optional fields, filling defaults.
    /// The error names the field at fault.
    pub fn new(
        min_quorum: Option<u32>,
        target_results: Option<u32>,
        max_error_results: Option<u32>,
        max_total_results: Option<u32>,
        deadline: Option<Duration>,
    ) -> Result<Policy, (&'static str, String)> {
        let min_quorum = min_quorum.unwrap_or(DEFAULT_MIN_QUORUM);
        if min_quorum == 0 {
            return Err(("policy.min_quorum", "must be at least 1".to_owned()));
        }
        let target_results = target_results.unwrap_or(min_quorum);
        if target_results < min_quorum {
            return Err((
                "policy.target_results",
                format!("must be at least min_quorum ({min_quorum}), got {target_results}"),
            ));
        }
        let max_total_results = match max_total_results {
            Some(max) => max,
            None => target_results.saturating_mul(DEFAULT_TOTAL_RESULTS_FACTOR),
        };
        if max_total_results < target_results {
            return Err((
                "policy.max_total_results",
                format!("must be at least target_results ({target_results}), got {max_total_results}"),
            ));
        }
        let deadline = deadline.unwrap_or(DEFAULT_DEADLINE);
        if deadline < Duration::from_secs(1) || deadline.subsec_nanos() != 0 {
            return Err((
                "policy.deadline",
                format!("must be a whole number of seconds, at least 1s, got {}", humantime::format_duration(deadline)),
            ));
        }
        Ok(Policy {
            min_quorum,
            target_results,
            max_error_results: max_error_results.unwrap_or(DEFAULT_MAX_ERROR_RESULTS),
            max_total_results,
            deadline,
            max_success_results: 0,
            adaptive_replication: false,
            priority: 0,
        })
    }

    /// Sets BOINC's `max_success_results` (checked by the coordinator).
    pub fn with_max_success_results(self, max_success_results: Option<u32>) -> Result<Policy, (&'static str, String)> {
        match max_success_results {
            Some(max) if max < self.min_quorum => Err((
                "policy.max_success_results",
                format!("must be at least min_quorum ({}), got {max}", self.min_quorum),
            )),
            _ => Ok(Policy { max_success_results: max_success_results.unwrap_or(0), ..self }),
        }
    }

    /// Sets the priority (higher first).
    pub fn with_priority(self, priority: i32) -> Policy {
        Policy { priority, ..self }
    }

    /// Turns adaptive replication on or off.
    pub fn with_adaptive_replication(self, adaptive_replication: bool) -> Policy {
        Policy { adaptive_replication, ..self }
    }

    pub fn min_quorum(&self) -> u32 {
        self.min_quorum
    }
    pub fn target_results(&self) -> u32 {
        self.target_results
    }
    pub fn max_error_results(&self) -> u32 {
        self.max_error_results
    }
    pub fn max_total_results(&self) -> u32 {
        self.max_total_results
    }
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
    pub fn max_success_results(&self) -> u32 {
        self.max_success_results
    }
    pub fn adaptive_replication(&self) -> bool {
        self.adaptive_replication
    }
    pub fn priority(&self) -> i32 {
        self.priority
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(None, None, None, None, None).expect("the defaults are a coherent policy")
    }
}

/// Sandbox limits of one run of the app.
///
/// Invariants: fuel and output at least 1, memory at least one WebAssembly
/// page (64 KiB), wall time at least 1 ms, stderr at most
/// [`MAX_STDERR_BYTES`] (0: the worker's default, 1 MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    fuel: u64,
    memory_bytes: u64,
    output_bytes: u64,
    wall_time: Duration,
    stderr_bytes: u64,
}

/// Largest `limits.stderr_bytes` the coordinator accepts.
pub const MAX_STDERR_BYTES: u64 = 32 << 20;

impl Limits {
    /// Builds limits from the manifest's optional fields, filling defaults.
    pub fn new(
        fuel: Option<u64>,
        memory_bytes: Option<u64>,
        output_bytes: Option<u64>,
        wall_time: Option<Duration>,
        stderr_bytes: Option<u64>,
    ) -> Result<Limits, (&'static str, String)> {
        let fuel = fuel.unwrap_or(DEFAULT_FUEL);
        if fuel == 0 {
            return Err(("limits.fuel", "must be at least 1".to_owned()));
        }
        let memory_bytes = memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES);
        if memory_bytes < WASM_PAGE_BYTES {
            return Err((
                "limits.memory",
                format!("must be at least one WebAssembly page (64KiB), got {memory_bytes} bytes"),
            ));
        }
        let output_bytes = output_bytes.unwrap_or(DEFAULT_OUTPUT_BYTES);
        if output_bytes == 0 {
            return Err(("limits.output_bytes", "must be at least 1".to_owned()));
        }
        let wall_time = wall_time.unwrap_or(DEFAULT_WALL_TIME);
        if wall_time < Duration::from_millis(1) {
            return Err(("limits.wall_time", "must be at least 1ms".to_owned()));
        }
        let stderr_bytes = stderr_bytes.unwrap_or(0);
        if stderr_bytes > MAX_STDERR_BYTES {
            return Err((
                "limits.stderr_bytes",
                format!("must be at most {MAX_STDERR_BYTES} bytes (32MiB), got {stderr_bytes}"),
            ));
        }
        Ok(Limits { fuel, memory_bytes, output_bytes, wall_time, stderr_bytes })
    }

    pub fn fuel(&self) -> u64 {
        self.fuel
    }
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }
    pub fn wall_time(&self) -> Duration {
        self.wall_time
    }
    /// Largest stderr of one run; 0 leaves it to the worker (1 MiB).
    pub fn stderr_bytes(&self) -> u64 {
        self.stderr_bytes
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(None, None, None, None, None).expect("the defaults are valid limits")
    }
}

/// What a module named in a manifest field is, for messages.
fn role(field: &str) -> &'static str {
    if field == "app" { "app" } else { "validator module" }
}

/// How the results of a work unit are compared.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Validator {
    /// Results agree when their outputs are byte-for-byte equal.
    #[default]
    Bitwise,
    /// Outputs parsed as numbers agree within a tolerance.
    Fuzzy { format: FuzzyFormat, relative_tolerance: f64, absolute_tolerance: f64 },
    /// A WebAssembly module (resolved path) says whether two outputs agree.
    Custom { module: PathBuf },
}

/// How a fuzzy validator reads outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FuzzyFormat {
    /// Whitespace-separated tokens.
    Whitespace,
    /// A JSON value.
    Json,
}

impl Validator {
    /// Builds the validator from its manifest table; the error names the field.
    fn new(table: toml_format::ValidatorTable, base: &Path) -> Result<Validator, (&'static str, String)> {
        use toml_format::ValidatorKindName as Kind;
        let unexpected = |field: &'static str, kind: &str| Err((field, format!("does not apply to kind = \"{kind}\"")));
        match table.kind {
            Kind::Bitwise | Kind::Custom if table.format.is_some() => unexpected("validator.format", table.kind.name()),
            Kind::Bitwise | Kind::Custom if table.relative_tolerance.is_some() => {
                unexpected("validator.relative_tolerance", table.kind.name())
            }
            Kind::Bitwise | Kind::Custom if table.absolute_tolerance.is_some() => {
                unexpected("validator.absolute_tolerance", table.kind.name())
            }
            Kind::Bitwise | Kind::Fuzzy if table.module.is_some() => unexpected("validator.module", table.kind.name()),
            Kind::Bitwise => Ok(Validator::Bitwise),
            Kind::Fuzzy => {
                let tolerance = |field, value: Option<f64>| match value.unwrap_or(0.0) {
                    value if value.is_finite() && value >= 0.0 => Ok(value),
                    value => Err((field, format!("must be a finite number, at least 0, got {value}"))),
                };
                let relative_tolerance = tolerance("validator.relative_tolerance", table.relative_tolerance)?;
                let absolute_tolerance = tolerance("validator.absolute_tolerance", table.absolute_tolerance)?;
                if relative_tolerance == 0.0 && absolute_tolerance == 0.0 {
                    return Err((
                        "validator.relative_tolerance",
                        "a fuzzy validator needs relative_tolerance or absolute_tolerance above 0".to_owned(),
                    ));
                }
                Ok(Validator::Fuzzy {
                    format: table.format.unwrap_or(FuzzyFormat::Whitespace),
                    relative_tolerance,
                    absolute_tolerance,
                })
            }
            Kind::Custom => match table.module {
                Some(module) if !module.as_os_str().is_empty() => Ok(Validator::Custom { module: base.join(module) }),
                _ => Err(("validator.module", "a custom validator needs a .wasm or .wat module".to_owned())),
            },
        }
    }
}

/// A parsed manifest: every field checked, defaults filled, paths resolved
/// against the manifest's folder. Files are not read yet.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
    name: ProjectName,
    app: PathBuf,
    nan_canonicalization: bool,
    /// `checkpointing`: each task gets a `/checkpoint` directory.
    checkpointing: bool,
    /// The project seed (`seed`): work units of the same names draw the same
    /// random numbers in every project given it. `None`: derived by the
    /// coordinator from the project's name.
    seed: Option<u64>,
    policy: Policy,
    limits: Limits,
    validator: Validator,
    work_units: WorkUnitSource,
    /// The private key that signs the app, when the manifest names one.
    signing_key: Option<PathBuf>,
    /// `args` and `[env]`: what every work unit's app gets.
    app_args: AppArgs,
    /// `[files]`: every work unit's app sees them as `/input/NAME`.
    files: Vec<(String, PathBuf)>,
    /// `limits.input_files` and `limits.output_files`, in bytes (0: the
    /// coordinator's default of 1 GiB; no output files).
    input_files_bytes: u64,
    output_files_bytes: u64,
}

/// A project ready to submit: the manifest, the binary app module and every
/// work unit.
#[derive(Debug, Clone)]
pub struct Project {
    pub manifest: Manifest,
    /// The binary WebAssembly module (a .wat app already converted).
    pub app_module: Vec<u8>,
    /// A custom validator's binary module.
    pub validator_module: Option<Vec<u8>>,
    /// The project's shared input files, hashed.
    pub files: Vec<LocalFile>,
    pub work_units: Vec<WorkUnit>,
}

impl Manifest {
    /// Reads and parses the manifest file at `path`.
    pub fn read(path: &Path) -> Result<Manifest, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ReadManifest { path: path.to_owned(), source })?;
        Manifest::parse(&text, path)
    }

    /// Parses manifest text; `path` is the file it came from (for messages and
    /// to resolve relative paths). Does no I/O.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, Error> {
        let raw: toml_format::Manifest = toml::from_str(text).map_err(|error| Error::Syntax {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        let field_error =
            |(field, problem): (&'static str, String)| Error::Field { path: path.to_owned(), field, problem };
        let base = path.parent().unwrap_or(Path::new(""));

        let name = ProjectName::parse(&raw.name).map_err(|problem| field_error(("name", problem)))?;
        if raw.app.as_os_str().is_empty() {
            return Err(field_error(("app", "must name a .wasm or .wat file".to_owned())));
        }
        let policy = Policy::new(
            raw.policy.min_quorum,
            raw.policy.target_results,
            raw.policy.max_error_results,
            raw.policy.max_total_results,
            parse_duration_field("policy.deadline", raw.policy.deadline.as_deref()).map_err(field_error)?,
        )
        .and_then(|policy| policy.with_max_success_results(raw.policy.max_success_results))
        .map_err(field_error)?
        .with_adaptive_replication(raw.policy.adaptive_replication.unwrap_or(false))
        .with_priority(raw.policy.priority.unwrap_or(0));
        let memory_bytes = match (raw.limits.memory, raw.limits.memory_bytes) {
            (Some(_), Some(_)) => {
                return Err(field_error(("limits.memory", "give either memory or memory_bytes, not both".to_owned())));
            }
            (Some(size), None) => Some(size.bytes("limits.memory").map_err(field_error)?),
            (None, bytes) => bytes,
        };
        let output_bytes = match raw.limits.output_bytes {
            Some(size) => Some(size.bytes("limits.output_bytes").map_err(field_error)?),
            None => None,
        };
        let stderr_bytes = match raw.limits.stderr_bytes {
            Some(size) => Some(size.bytes("limits.stderr_bytes").map_err(field_error)?),
            None => None,
        };
        let limits = Limits::new(
            raw.limits.fuel,
            memory_bytes,
            output_bytes,
            parse_duration_field("limits.wall_time", raw.limits.wall_time.as_deref()).map_err(field_error)?,
            stderr_bytes,
        )
        .map_err(field_error)?;
        let work_units = WorkUnitSource::from_toml(raw.work_units, base).map_err(field_error)?;
        let app_args = AppArgs::new(raw.args, raw.env).map_err(field_error)?;
        let files = files::named_paths(raw.files, base).map_err(|problem| field_error(("files", problem)))?;
        let size = |field: &'static str, size: Option<toml_format::Size>| match size {
            Some(size) => size.bytes(field).map_err(field_error),
            None => Ok(0),
        };
        let input_files_bytes = size("limits.input_files", raw.limits.input_files)?;
        let output_files_bytes = size("limits.output_files", raw.limits.output_files)?;

        Ok(Manifest {
            path: path.to_owned(),
            name,
            app: base.join(&raw.app),
            nan_canonicalization: raw.nan_canonicalization,
            checkpointing: raw.checkpointing,
            seed: raw.seed,
            policy,
            limits,
            validator: Validator::new(raw.validator, base).map_err(field_error)?,
            work_units,
            signing_key: match raw.signing_key {
                Some(key) if key.as_os_str().is_empty() => {
                    return Err(field_error((
                        "signing_key",
                        "must name a key file made by `quorum keygen`".to_owned(),
                    )));
                }
                Some(key) => Some(base.join(key)),
                None => None,
            },
            app_args,
            files,
            input_files_bytes,
            output_files_bytes,
        })
    }

    /// Reads the app (and a custom validator's module) and builds every work unit.
    pub fn load_project(self) -> Result<Project, Error> {
        let app_module = self.load_app()?;
        let validator_module = match &self.validator {
            Validator::Custom { module } => Some(self.load_module("validator.module", module)?),
            Validator::Bitwise | Validator::Fuzzy { .. } => None,
        };
        let mut hasher = files::Hasher::default();
        let files =
            self.files.iter().map(|(name, path)| hasher.local_file(name, path)).collect::<Result<Vec<_>, Error>>()?;
        let work_units = self.work_units.work_units(&mut hasher)?;
        files::check_work_units(&files, &work_units, self.input_files_bytes)
            .map_err(|problem| Error::Inputs { path: self.path.clone(), problem })?;
        Ok(Project { manifest: self, app_module, validator_module, files, work_units })
    }

    /// Reads the app: a .wasm file as is, a .wat file converted to binary.
    pub fn load_app(&self) -> Result<Vec<u8>, Error> {
        self.load_module("app", &self.app)
    }

    /// Reads a WASI command module named by manifest field `field`.
    fn load_module(&self, field: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadApp {
            manifest: self.path.clone(),
            field,
            app: path.to_owned(),
            source,
        })?;
        let app_error = |problem: String| Error::App { field, app: path.to_owned(), problem };
        let module = match path.extension().and_then(|extension| extension.to_str()) {
            Some("wasm") => {
                if !bytes.starts_with(b"\0asm") {
                    return Err(app_error("not a WebAssembly binary module (no \\0asm header)".to_owned()));
                }
                bytes
            }
            Some("wat") => wat::Parser::new()
                .parse_bytes(Some(path), &bytes)
                .map(|module| module.into_owned())
                .map_err(|error| app_error(format!("invalid WebAssembly text: {error}")))?,
            _ => return Err(app_error("unknown kind of app: the file name must end in .wasm or .wat".to_owned())),
        };
        check_command_module(&module).map_err(app_error)?;
        Ok(module)
    }

    /// The manifest file this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn name(&self) -> &ProjectName {
        &self.name
    }
    /// The app file, resolved against the manifest's folder.
    pub fn app(&self) -> &Path {
        &self.app
    }
    /// The key that signs the app (`signing_key`), resolved against the manifest's folder.
    pub fn signing_key(&self) -> Option<&Path> {
        self.signing_key.as_deref()
    }
    pub fn nan_canonicalization(&self) -> bool {
        self.nan_canonicalization
    }
    /// Whether the app keeps checkpoints (`checkpointing`).
    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }
    /// The project seed, when the manifest gives one.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn validator(&self) -> &Validator {
        &self.validator
    }
    pub fn work_unit_source(&self) -> &WorkUnitSource {
        &self.work_units
    }
    /// The project's arguments and environment variables (`args`, `[env]`).
    pub fn app_args(&self) -> &AppArgs {
        &self.app_args
    }
    /// `limits.input_files` and `limits.output_files` in bytes (0: not given).
    pub fn file_limits(&self) -> (u64, u64) {
        (self.input_files_bytes, self.output_files_bytes)
    }
}

/// Checks the one thing about the app the CLI can tell without a validator:
/// it is a core WebAssembly module that exports a `_start` function, as a
/// WASI preview 1 command must. The coordinator validates the module fully.
fn check_command_module(module: &[u8]) -> Result<(), String> {
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    const EXPORT_SECTION: u8 = 7;
    const FUNCTION_EXPORT: u8 = 0;
    let malformed = |what: &str| format!("malformed WebAssembly module: {what}");
    if module.get(4..8) != Some(CORE_VERSION) {
        return Err("not a core WebAssembly module (version 1); components are not supported".to_owned());
    }
    let mut reader = Reader { bytes: module, position: 8 };
    while !reader.at_end() {
        let id = reader.byte().ok_or_else(|| malformed("truncated section header"))?;
        let size = reader.u32().ok_or_else(|| malformed("truncated section size"))?;
        let contents = reader.take(size).ok_or_else(|| malformed("truncated section"))?;
        if id != EXPORT_SECTION {
            continue;
        }
        let mut exports = Reader { bytes: contents, position: 0 };
        let count = exports.u32().ok_or_else(|| malformed("truncated export section"))?;
        for _ in 0..count {
            let length = exports.u32().ok_or_else(|| malformed("truncated export name"))?;
            let name = exports.take(length).ok_or_else(|| malformed("truncated export name"))?;
            let kind = exports.byte().ok_or_else(|| malformed("truncated export"))?;
            exports.u32().ok_or_else(|| malformed("truncated export index"))?;
            if name == b"_start" && kind == FUNCTION_EXPORT {
                return Ok(());
            }
        }
    }
    Err("exports no `_start` function: a WASI preview 1 command module needs one".to_owned())
}

/// A cursor over the bytes of a WebAssembly binary.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.position)?;
        self.position += 1;
        Some(byte)
    }

    fn take(&mut self, length: u32) -> Option<&'a [u8]> {
        let end = self.position.checked_add(usize::try_from(length).ok()?)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    /// An unsigned LEB128 integer of at most 32 bits (5 bytes).
    fn u32(&mut self) -> Option<u32> {
        let mut value: u32 = 0;
        for shift in [0, 7, 14, 21, 28] {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

/// Parses an optional humantime duration field.
fn parse_duration_field(field: &'static str, text: Option<&str>) -> Result<Option<Duration>, (&'static str, String)> {
    text.map(|text| {
        humantime::parse_duration(text).map_err(|error| (field, format!("invalid duration {text:?}: {error}")))
    })
    .transpose()
}

/// The manifest exactly as written, for serde. Unknown fields are errors.
mod toml_format {
    use std::fmt;
    use std::path::PathBuf;

    use serde::Deserialize;

    use super::FuzzyFormat;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Manifest {
        pub name: String,
        pub app: PathBuf,
        #[serde(default)]
        pub nan_canonicalization: bool,
        /// The app keeps checkpoints in `/checkpoint`.
        #[serde(default)]
        pub checkpointing: bool,
        /// The project seed of the random draws (the CLI's `seed`).
        #[serde(default)]
        pub seed: Option<u64>,
        #[serde(default)]
        pub policy: Policy,
        #[serde(default)]
        pub limits: Limits,
        #[serde(default)]
        pub validator: ValidatorTable,
        pub work_units: WorkUnits,
        /// The project key that signs the app (made by `quorum keygen`).
        #[serde(default)]
        pub signing_key: Option<PathBuf>,
        /// The app's arguments after argv[0].
        #[serde(default)]
        pub args: Vec<String>,
        /// The app's environment variables.
        #[serde(default)]
        pub env: std::collections::BTreeMap<String, String>,
        /// Files every work unit's app sees as `/input/NAME`: NAME = PATH.
        #[serde(default)]
        pub files: std::collections::BTreeMap<String, PathBuf>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Policy {
        pub min_quorum: Option<u32>,
        pub target_results: Option<u32>,
        pub max_error_results: Option<u32>,
        pub max_total_results: Option<u32>,
        pub max_success_results: Option<u32>,
        pub deadline: Option<String>,
        pub adaptive_replication: Option<bool>,
        pub priority: Option<i32>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub fuel: Option<u64>,
        pub memory: Option<Size>,
        pub memory_bytes: Option<u64>,
        pub output_bytes: Option<Size>,
        pub wall_time: Option<String>,
        pub stderr_bytes: Option<Size>,
        pub input_files: Option<Size>,
        pub output_files: Option<Size>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ValidatorTable {
        #[serde(default)]
        pub kind: ValidatorKindName,
        pub format: Option<FuzzyFormat>,
        pub relative_tolerance: Option<f64>,
        pub absolute_tolerance: Option<f64>,
        pub module: Option<PathBuf>,
    }

    #[derive(Debug, Clone, Copy, Default, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ValidatorKindName {
        #[default]
        Bitwise,
        Fuzzy,
        Custom,
    }

    impl ValidatorKindName {
        pub fn name(self) -> &'static str {
            match self {
                ValidatorKindName::Bitwise => "bitwise",
                ValidatorKindName::Fuzzy => "fuzzy",
                ValidatorKindName::Custom => "custom",
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct WorkUnits {
        pub range: Option<Range>,
        pub jsonl: Option<PathBuf>,
        pub dir: Option<PathBuf>,
        /// With `dir`: each file is its work unit's `/input/NAME`, not its stdin.
        pub file: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Range {
        pub start: u64,
        pub end: u64,
        pub chunk: u64,
    }

    /// A size in bytes: an integer, or a string with a unit ("256MiB").
    #[derive(Debug)]
    pub enum Size {
        Bytes(u64),
        Text(String),
    }

    impl Size {
        pub fn bytes(&self, field: &'static str) -> Result<u64, (&'static str, String)> {
            match self {
                Size::Bytes(bytes) => Ok(*bytes),
                Size::Text(text) => super::parse_size(text).map_err(|problem| (field, problem)),
            }
        }
    }

    impl<'de> Deserialize<'de> for Size {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Size, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = Size;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number of bytes or a size such as \"256MiB\"")
                }
                fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<Size, E> {
                    Ok(Size::Bytes(bytes))
                }
                fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<Size, E> {
                    u64::try_from(bytes)
                        .map(Size::Bytes)
                        .map_err(|_| E::custom(format!("a size cannot be negative, got {bytes}")))
                }
                fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Size, E> {
                    Ok(Size::Text(text.to_owned()))
                }
            }
            deserializer.deserialize_any(Visitor)
        }
    }
}

/// Parses "256MiB", "1 GiB", "64KB", "1048576" or "512B" into bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let invalid = || {
        format!(
            "invalid size {text:?}: expected a number and an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. \"256MiB\""
        )
    };
    let number: u64 = number.replace('_', "").parse().map_err(|_| invalid())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_WAT: &str = r#"(module (func (export "_start")))"#;

    /// Writes `manifest` as project.toml next to an app (app.wat, app.wasm,
    /// bad.wat) and an inputs.jsonl, loads the project and compares a summary
    /// of it, or the error's text (with its causes), with `expected`.
    fn check(manifest: &str, expected: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("app.wat"), APP_WAT).expect("write app.wat");
        std::fs::write(dir.path().join("app.wasm"), wat::parse_str(APP_WAT).expect("valid wat"))
            .expect("write app.wasm");
        std::fs::write(dir.path().join("bad.wat"), "(module (func $f (result i32)").expect("write bad.wat");
        std::fs::write(dir.path().join("bad.wasm"), "not wasm").expect("write bad.wasm");
        std::fs::write(
            dir.path().join("no_start.wat"),
            r#"(module (memory (export "_start") 1) (func (export "main")))"#,
        )
        .expect("write no_start.wat");
        std::fs::write(dir.path().join("component.wat"), "(component)").expect("write component.wat");
        std::fs::write(dir.path().join("inputs.jsonl"), "{\"name\":\"a\",\"input\":\"1\"}\n{\"input\":\"2\"}\n")
            .expect("write inputs.jsonl");
        let path = dir.path().join("project.toml");
        std::fs::write(&path, manifest).expect("write project.toml");

        let actual = match Manifest::read(&path).and_then(Manifest::load_project) {
            Ok(project) => summary(&project),
            Err(error) => {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            }
        };
        let actual = actual.replace(&format!("{}/", dir.path().display()), "DIR/");
        assert!(
            actual.contains(expected),
            "manifest:\n{manifest}\nexpected to contain:\n{expected}\nactual:\n{actual}"
        );
    }

    fn summary(project: &Project) -> String {
        let manifest = &project.manifest;
        let policy = manifest.policy();
        let limits = manifest.limits();
        let first = project
            .work_units
            .first()
            .map_or("-".to_owned(), |wu| format!("{}={:?}", wu.name, String::from_utf8_lossy(&wu.input)));
        let last = project
            .work_units
            .last()
            .map_or("-".to_owned(), |wu| format!("{}={:?}", wu.name, String::from_utf8_lossy(&wu.input)));
        format!(
            "name={} app={} nan={} seed={:?} policy={}/{}/{}/{}/{}s limits={}/{}/{}/{}ms validator={:?} n={} first={first} last={last}",
            manifest.name(),
            if project.app_module.starts_with(b"\0asm") { "wasm" } else { "not-wasm" },
            manifest.nan_canonicalization(),
            manifest.seed(),
            policy.min_quorum(),
            policy.target_results(),
            policy.max_error_results(),
            policy.max_total_results(),
            policy.deadline().as_secs(),
            limits.fuel(),
            limits.memory_bytes(),
            limits.output_bytes(),
            limits.wall_time().as_millis(),
            manifest.validator(),
            project.work_units.len(),
        ) + &if manifest.app_args().is_empty() {
            String::new()
        } else {
            format!(" args={:?} env={:?}", manifest.app_args().args(), manifest.app_args().env())
        }
    }

    const RANGE: &str = "[work_units]\nrange = { start = 0, end = 10, chunk = 4 }\n";

    #[test]
    fn good_manifests() {
        // Defaults everywhere.
        check(
            &format!("name = \"p\"\napp = \"app.wat\"\n{RANGE}"),
            "name=p app=wasm nan=false seed=None policy=2/2/3/8/3600s \
             limits=100000000000/268435456/1048576/600000ms validator=Bitwise n=3 \
             first=0-4=\"0 4\\n\" last=8-10=\"8 10\\n\"",
        );
        // Every field given.
        check(
            &format!(
                "name = \"My_proj.v2-x\"\napp = \"app.wasm\"\nnan_canonicalization = true\nseed = 42\n\
                 [policy]\nmin_quorum = 3\ntarget_results = 4\nmax_error_results = 5\n\
                 max_total_results = 9\ndeadline = \"2h 30m\"\n\
                 [limits]\nfuel = 1_000\nmemory = \"1 MiB\"\noutput_bytes = \"4KB\"\nwall_time = \"1500ms\"\n\
                 [validator]\nkind = \"bitwise\"\n{RANGE}"
            ),
            "name=My_proj.v2-x app=wasm nan=true seed=Some(42) policy=3/4/5/9/9000s \
             limits=1000/1048576/4000/1500ms validator=Bitwise n=3",
        );
        // target_results defaults to min_quorum, max_total_results to 4 times it.
        check(&format!("name = \"p\"\napp = \"app.wat\"\n[policy]\nmin_quorum = 3\n{RANGE}"), "policy=3/3/3/12/3600s");
        check(
            &format!("name = \"p\"\napp = \"app.wat\"\n[policy]\ntarget_results = 5\n{RANGE}"),
            "policy=2/5/3/20/3600s",
        );
        // memory_bytes form, integer sizes.
        check(
            &format!("name = \"p\"\napp = \"app.wat\"\n[limits]\nmemory_bytes = 65536\noutput_bytes = 10\n{RANGE}"),
            "limits=100000000000/65536/10/600000ms",
        );
        check(
            &format!("name = \"p\"\napp = \"app.wat\"\n[limits]\nmemory = 131072\n{RANGE}"),
            "limits=100000000000/131072/1048576/600000ms",
        );
        // A jsonl source, relative to the manifest's folder.
        check(
            "name = \"p\"\napp = \"app.wat\"\n[work_units]\njsonl = \"inputs.jsonl\"\n",
            "n=2 first=a=\"1\" last=line-2=\"2\"",
        );
    }

    #[test]
    fn project_args_and_env() {
        check(
            &format!(
                "name = \"p\"\napp = \"app.wat\"\nargs = [\"--steps\", \"100\", \"\"]\n{RANGE}\
                 [env]\nMODE = \"fast\"\n\"lower.case\" = \"x=y\"\nA = \"\"\n"
            ),
            "n=3 first=0-4=\"0 4\\n\" last=8-10=\"8 10\\n\" \
             args=[\"--steps\", \"100\", \"\"] env={\"A\": \"\", \"MODE\": \"fast\", \"lower.case\": \"x=y\"}",
        );
        let app = "name = \"p\"\napp = \"app.wat\"\n";
        check(&format!("{app}args = \"--steps\"\n{RANGE}"), "invalid type: string \"--steps\", expected a sequence");
        check(&format!("{app}args = [1]\n{RANGE}"), "invalid type: integer `1`, expected a string");
        check(&format!("{app}{RANGE}[env]\nA = 1\n"), "invalid type: integer `1`, expected a string");
        check(
            &format!("{app}args = [\"a\\u0000\"]\n{RANGE}"),
            "project.toml: args: element 0 contains a NUL character",
        );
        check(
            &format!("{app}{RANGE}[env]\n\"A=B\" = \"1\"\n"),
            "project.toml: env: variable name \"A=B\" contains '='",
        );
        check(&format!("{app}{RANGE}[env]\n\"\" = \"1\"\n"), "project.toml: env: a variable name must not be empty");
        check(
            &format!("{app}{RANGE}[env]\nA = \"\\u0000\"\n"),
            "project.toml: env: the value of A contains a NUL character",
        );
        let many = vec!["\"x\""; 129].join(", ");
        check(&format!("{app}args = [{many}]\n{RANGE}"), "project.toml: args: 129 arguments, above the maximum of 128");
        check(
            &format!("{app}args = [\"{}\"]\n{RANGE}", "x".repeat(32 * 1024)),
            "project.toml: args: arguments and environment take 32769 bytes, above the maximum of 32768 (32 KiB)",
        );
        // A jsonl line's own arguments, merged by the coordinator.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("app.wat"), APP_WAT).expect("write app.wat");
        std::fs::write(
            dir.path().join("inputs.jsonl"),
            "{\"name\":\"a\",\"input\":\"\",\"args\":[\"-v\"],\"env\":{\"MODE\":\"slow\"}}\n",
        )
        .expect("write inputs.jsonl");
        let path = dir.path().join("project.toml");
        std::fs::write(
            &path,
            format!("{app}args = [\"-q\"]\n[env]\nMODE = \"fast\"\n[work_units]\njsonl = \"inputs.jsonl\"\n"),
        )
        .expect("write project.toml");
        let project = Manifest::read(&path).and_then(Manifest::load_project).expect("a valid project");
        assert_eq!(project.manifest.app_args().args(), ["-q"]);
        assert_eq!(project.work_units[0].app_args.args(), ["-v"]);
        assert_eq!(project.work_units[0].app_args.env().get("MODE").map(String::as_str), Some("slow"));
    }

    #[test]
    fn bad_manifests() {
        let app = "name = \"p\"\napp = \"app.wat\"\n";
        // Syntax and shape: the TOML parser names the field.
        check("name = \"p\"\napp = ", "project.toml: TOML parse error at line 2");
        check(&format!("{app}{RANGE}colour = 1\n"), "unknown field `colour`");
        check(&format!("{app}[policy]\nquorum = 2\n{RANGE}"), "unknown field `quorum`");
        check(&format!("app = \"app.wat\"\n{RANGE}"), "missing field `name`");
        check(&format!("name = \"p\"\n{RANGE}"), "missing field `app`");
        check(app, "missing field `work_units`");
        check(&format!("{app}[policy]\nmin_quorum = -1\n{RANGE}"), "min_quorum");
        check(&format!("name = 3\napp = \"app.wat\"\n{RANGE}"), "invalid type: integer `3`");
        check(&format!("{app}seed = -1\n{RANGE}"), "seed");
        check(
            &format!("{app}[validator]\nkind = \"fuzzy\"\n{RANGE}"),
            "validator.relative_tolerance: a fuzzy validator needs relative_tolerance or absolute_tolerance above 0",
        );
        check(
            &format!("{app}[validator]\nkind = \"fuzzy\"\nrelative_tolerance = -1.0\n{RANGE}"),
            "validator.relative_tolerance: must be a finite number, at least 0, got -1",
        );
        check(
            &format!("{app}[validator]\nkind = \"bitwise\"\nmodule = \"v.wat\"\n{RANGE}"),
            "validator.module: does not apply to kind = \"bitwise\"",
        );
        check(&format!("{app}[validator]\nkind = \"custom\"\n{RANGE}"), "validator.module: a custom validator needs");
        check(&format!("{app}[validator]\nkind = \"exact\"\n{RANGE}"), "unknown variant `exact`");
        check(&format!("{app}[limits]\nmemory = -5\n{RANGE}"), "a size cannot be negative, got -5");
        check(&format!("{app}[work_units]\nrange = {{ start = 0, end = 10 }}\n"), "missing field `chunk`");
        // Field checks: file, field, problem.
        check(
            &format!("name = \"a b\"\napp = \"app.wat\"\n{RANGE}"),
            "project.toml: name: ' ' is not allowed in \"a b\"",
        );
        check(
            &format!("name = \"\"\napp = \"app.wat\"\n{RANGE}"),
            "project.toml: name: must be 1 to 64 characters long, got 0",
        );
        check(
            &format!("name = \"{}\"\napp = \"app.wat\"\n{RANGE}", "x".repeat(65)),
            "name: must be 1 to 64 characters long, got 65",
        );
        check(
            &format!("{app}[policy]\nmin_quorum = 0\n{RANGE}"),
            "project.toml: policy.min_quorum: must be at least 1",
        );
        check(
            &format!("{app}[policy]\nmin_quorum = 3\ntarget_results = 2\n{RANGE}"),
            "policy.target_results: must be at least min_quorum (3), got 2",
        );
        check(
            &format!("{app}[policy]\nmax_total_results = 1\n{RANGE}"),
            "policy.max_total_results: must be at least target_results (2), got 1",
        );
        check(&format!("{app}[policy]\ndeadline = \"soon\"\n{RANGE}"), "policy.deadline: invalid duration \"soon\"");
        check(
            &format!("{app}[policy]\ndeadline = \"500ms\"\n{RANGE}"),
            "policy.deadline: must be a whole number of seconds, at least 1s, got 500ms",
        );
        check(&format!("{app}[limits]\nfuel = 0\n{RANGE}"), "limits.fuel: must be at least 1");
        check(
            &format!("{app}[limits]\nstderr_bytes = \"64MiB\"\n{RANGE}"),
            "limits.stderr_bytes: must be at most 33554432 bytes (32MiB), got 67108864",
        );
        check(
            &format!("{app}[limits]\nmemory = \"12 parsecs\"\n{RANGE}"),
            "limits.memory: invalid size \"12 parsecs\"",
        );
        check(
            &format!("{app}[limits]\nmemory = \"1KiB\"\n{RANGE}"),
            "limits.memory: must be at least one WebAssembly page (64KiB), got 1024 bytes",
        );
        check(
            &format!("{app}[limits]\nmemory = \"1MiB\"\nmemory_bytes = 1048576\n{RANGE}"),
            "limits.memory: give either memory or memory_bytes, not both",
        );
        check(&format!("{app}[limits]\noutput_bytes = 0\n{RANGE}"), "limits.output_bytes: must be at least 1");
        check(&format!("{app}[limits]\nwall_time = \"0s\"\n{RANGE}"), "limits.wall_time: must be at least 1ms");
        check(&format!("{app}[work_units]\n"), "work_units: give exactly one source: range, jsonl or dir");
        check(
            &format!("{app}{RANGE}jsonl = \"inputs.jsonl\"\n"),
            "work_units: give exactly one source (range, jsonl or dir), not several",
        );
        // The app.
        check(
            &format!("name = \"p\"\napp = \"missing.wat\"\n{RANGE}"),
            "cannot read app DIR/missing.wat (field `app` of DIR/project.toml): No such file",
        );
        check(&format!("name = \"p\"\napp = \"bad.wat\"\n{RANGE}"), "app DIR/bad.wat: invalid WebAssembly text");
        check(
            &format!("name = \"p\"\napp = \"bad.wasm\"\n{RANGE}"),
            "app DIR/bad.wasm: not a WebAssembly binary module",
        );
        check(
            &format!("name = \"p\"\napp = \"no_start.wat\"\n{RANGE}"),
            "app DIR/no_start.wat: exports no `_start` function: a WASI preview 1 command module needs one",
        );
        check(
            &format!("name = \"p\"\napp = \"component.wat\"\n{RANGE}"),
            "app DIR/component.wat: not a core WebAssembly module (version 1)",
        );
        check(&format!("name = \"p\"\napp = \"project.toml\"\n{RANGE}"), "the file name must end in .wasm or .wat");
        check(&format!("name = \"p\"\napp = \"\"\n{RANGE}"), "project.toml: app: must name a .wasm or .wat file");
        // The work units.
        check(
            &format!("{app}[work_units]\njsonl = \"nope.jsonl\"\n"),
            "cannot read work unit inputs DIR/nope.jsonl: No such file",
        );
        check(
            &format!("{app}[work_units]\nrange = {{ start = 5, end = 5, chunk = 1 }}\n"),
            "work_units.range: empty range: start (5) must be below end (5)",
        );
    }

    #[test]
    fn the_example_manifests_parse_and_their_apps_compile() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let check_example = |name: &str, expected: &str| {
            let path = examples.join(name).join("project.toml");
            let project = Manifest::read(&path)
                .and_then(Manifest::load_project)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            assert!(project.app_module.starts_with(b"\0asm"));
            let text = summary(&project);
            assert!(text.contains(expected), "{text}\ndoes not contain\n{expected}");
        };
        check_example(
            "primes",
            "name=primes app=wasm nan=false seed=None policy=2/2/3/8/3600s \
             limits=100000000000/268435456/1048576/600000ms validator=Bitwise n=200 \
             first=0-50000=\"0 50000\\n\" last=9950000-10000000=\"9950000 10000000\\n\"",
        );
        check_example("integral", "name=integral app=");
        check_example("integral", "nan=true seed=None policy=2/2/3/8/3600s");
        check_example("integral", "n=100 first=0-10000=\"0 10000\\n\"");
    }

    #[test]
    fn example_apps_are_valid_modules() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        for app in ["primes/primes.wat", "integral/integral.wat"] {
            let module = wat::parse_file(examples.join(app)).unwrap_or_else(|error| panic!("{app}: {error}"));
            assert!(module.starts_with(b"\0asm\x01\0\0\0"), "{app}");
            assert_eq!(check_command_module(&module), Ok(()), "{app} exports _start");
        }
    }

    #[test]
    fn sizes() {
        let check = |text: &str, expected: Result<u64, &str>| {
            let actual = parse_size(text);
            match expected {
                Ok(bytes) => assert_eq!(actual, Ok(bytes), "{text}"),
                Err(fragment) => {
                    let error = actual.expect_err(text);
                    assert!(error.contains(fragment), "{text}: {error}");
                }
            }
        };
        check("1048576", Ok(1_048_576));
        check("512B", Ok(512));
        check("256MiB", Ok(256 << 20));
        check(" 2 GiB ", Ok(2 << 30));
        check("64KiB", Ok(65_536));
        check("3KB", Ok(3_000));
        check("1_000MB", Ok(1_000_000_000));
        check("", Err("invalid size"));
        check("MiB", Err("invalid size"));
        check("1.5MiB", Err("invalid size"));
        check("5 mib", Err("invalid size"));
        check("99999999999999GiB", Err("too large"));
    }
}

#[cfg(test)]
mod stderr_limit_tests {
    use super::Limits;

    #[test]
    fn stderr_bytes_defaults_to_the_worker_and_is_capped() {
        assert_eq!(Limits::default().stderr_bytes(), 0, "0: the worker's default");
        assert_eq!(Limits::new(None, None, None, None, Some(4096)).map(|l| l.stderr_bytes()), Ok(4096));
        assert!(Limits::new(None, None, None, None, Some(super::MAX_STDERR_BYTES + 1)).is_err());
    }
}

/// Property tests: the manifest parser never panics, whatever the text.
/// `PROPTEST_CASES` runs more cases by hand (the default is CI's).
#[cfg(test)]
mod fuzz {
    use std::path::Path;

    use proptest::prelude::*;

    use super::Manifest;

    /// Manifest-shaped text: known keys and tables with values of any kind.
    fn manifest_like() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("name"),
            Just("app"),
            Just("nan_canonicalization"),
            Just("seed"),
            Just("signing_key"),
            Just("min_quorum"),
            Just("target_results"),
            Just("max_error_results"),
            Just("max_total_results"),
            Just("max_success_results"),
            Just("deadline"),
            Just("priority"),
            Just("adaptive_replication"),
            Just("fuel"),
            Just("memory"),
            Just("memory_bytes"),
            Just("output_bytes"),
            Just("stderr_bytes"),
            Just("wall_time"),
            Just("kind"),
            Just("format"),
            Just("relative_tolerance"),
            Just("absolute_tolerance"),
            Just("module"),
            Just("range"),
            Just("jsonl"),
            Just("dir"),
            Just("start"),
            Just("end"),
            Just("chunk"),
            Just("args"),
        ];
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| format!("{x:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("\"10s\"".to_owned()),
            Just("\"1 GiB\"".to_owned()),
            Just("{ start = 0, end = 10, chunk = 3 }".to_owned()),
            Just("[\"--steps\", \"100\"]".to_owned()),
            (any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(a, b, c)| format!("{{ start = {a}, end = {b}, chunk = {c} }}")),
        ];
        let line = prop_oneof![
            (key, value).prop_map(|(key, value)| format!("{key} = {value}")),
            prop_oneof![
                Just("[policy]"),
                Just("[limits]"),
                Just("[validator]"),
                Just("[work_units]"),
                Just("[env]"),
                Just("[other]")
            ]
            .prop_map(str::to_owned),
        ];
        proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
            ..ProptestConfig::default()
        })]

        #[test]
        fn parse_never_panics_on_any_text(text in "\\PC{0,200}") {
            let _ = Manifest::parse(&text, Path::new("/nonexistent/project.toml"));
        }

        #[test]
        fn parse_never_panics_on_manifest_like_text(text in manifest_like()) {
            if let Ok(manifest) = Manifest::parse(&text, Path::new("/nonexistent/project.toml")) {
                // A parsed manifest is coherent: its policy's invariants hold.
                let policy = manifest.policy();
                prop_assert!(policy.min_quorum() >= 1);
                prop_assert!(policy.min_quorum() <= policy.target_results());
                prop_assert!(policy.target_results() <= policy.max_total_results());
            }
        }
    }
}
