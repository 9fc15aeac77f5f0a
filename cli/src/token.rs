//! Where the CLI's API token comes from, in this order: `--token`,
//! `--token-file`, the `QUORUM_TOKEN` environment variable, then the
//! `QUORUM_TOKEN_FILE` one. A token file must be readable by its owner only
//! (like an SSH key): one readable by group or others is refused.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Environment variable holding the token itself.
pub const TOKEN_ENV: &str = "QUORUM_TOKEN";
/// Environment variable naming a file that holds the token.
pub const TOKEN_FILE_ENV: &str = "QUORUM_TOKEN_FILE";

/// A token, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// For clap: a token given on the command line.
pub fn parse_secret(text: &str) -> Result<Secret, String> {
    if text.trim().is_empty() { Err("the token is empty".to_owned()) } else { Ok(Secret::new(text.trim())) }
}

/// The token given by the flags, else by the environment; `None` when no
/// source gives one (calls then go without and the coordinator refuses them).
pub fn resolve(flag: Option<&Secret>, file: Option<&Path>) -> anyhow::Result<Option<Secret>> {
    if let Some(secret) = flag {
        return Ok(Some(secret.clone()));
    }
    if let Some(file) = file {
        return read_file(file).map(Some);
    }
    if let Some(text) = std::env::var_os(TOKEN_ENV) {
        let text = text.into_string().map_err(|_| anyhow::anyhow!("{TOKEN_ENV} is not valid UTF-8"))?;
        return parse_secret(&text).map(Some).map_err(|error| anyhow::anyhow!("{TOKEN_ENV}: {error}"));
    }
    if let Some(path) = std::env::var_os(TOKEN_FILE_ENV) {
        return read_file(&PathBuf::from(path)).map(Some).context(TOKEN_FILE_ENV);
    }
    Ok(None)
}

/// Reads a token file, refusing one that group or others may read.
pub fn read_file(path: &Path) -> anyhow::Result<Secret> {
    let text = read_private(path, "token file")?;
    parse_secret(&text).map_err(|error| anyhow::anyhow!("token file {}: {error}", path.display()))
}

/// Reads a file holding a secret (`what`: "token file", "key file"),
/// refusing one that group or others may read.
pub fn read_private(path: &Path, what: &str) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{what} {} is accessible by group or others (mode {mode:03o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    #[cfg(not(unix))]
    let _ = metadata;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "quorum_abc\n").expect("write");
        let check = |mode: u32, expected: Result<&str, &str>| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let actual =
                read_file(&path).map(|secret| secret.expose().to_owned()).map_err(|error| format!("{error:#}"));
            match expected {
                Ok(token) => assert_eq!(actual.as_deref(), Ok(token), "mode {mode:o}"),
                Err(text) => {
                    assert!(actual.as_ref().is_err_and(|error| error.contains(text)), "mode {mode:o}: {actual:?}")
                }
            }
        };
        check(0o600, Ok("quorum_abc"));
        check(0o400, Ok("quorum_abc"));
        check(0o640, Err("accessible by group or others (mode 640)"));
        check(0o604, Err("accessible by group or others (mode 604)"));
        std::fs::write(&path, "  \n").expect("write");
        check(0o600, Err("the token is empty"));
        assert_eq!(format!("{:?}", Secret::new("quorum_abc")), "Secret(***)");
    }
}
