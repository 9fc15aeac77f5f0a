//! One module per command. Each `run` is a thin adapter: load or parse its
//! input, call the coordinator through `client::Coordinator`, print through
//! `output`.

pub mod cancel;
pub mod credit;
pub mod delete;
pub mod demo;
pub mod errors;
pub mod hosts;
pub mod purge;
pub mod results;
pub mod resume;
pub mod retry;
pub mod status;
pub mod submit;
pub mod wait;

use std::io::{BufWriter, Stdout};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::client::Coordinator;
use crate::token::Secret;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Context {
    /// The coordinator's URL (`--server`, `QUORUM_SERVER`).
    pub server: String,
    /// Print JSON instead of tables (`--json`).
    pub json: bool,
    /// Every column of tables (`--wide`).
    pub wide: bool,
    /// How long commands show progress on stderr (`--progress`, resolved).
    pub progress: crate::progress::ProgressMode,
    /// `--token`.
    pub token: Option<Secret>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
}

impl Context {
    /// Connects to the coordinator named by `--server`.
    pub async fn connect(&self) -> anyhow::Result<Coordinator> {
        let token = crate::token::resolve(self.token.as_ref(), self.token_file.as_deref())?;
        let ca_cert = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("cannot read --ca-cert {}", path.display()))?)
            }
            None => None,
        };
        Coordinator::connect(&self.server, token.as_ref(), ca_cert.as_deref()).await
    }

    /// Every volunteer host, as `ListHosts` returns them.
    pub async fn hosts(&self) -> anyhow::Result<Vec<quorum_proto::v1::HostInfo>> {
        let coordinator = self.connect().await?;
        let response = coordinator
            .client()
            .list_hosts(quorum_proto::v1::ListHostsRequest {})
            .await
            .map_err(|status| coordinator.error(status))?;
        Ok(response.into_inner().hosts)
    }
}

/// Buffered stdout; commands flush it before returning so that a broken pipe
/// surfaces as an error (which `main` turns into a quiet exit 0).
pub fn stdout() -> BufWriter<Stdout> {
    BufWriter::new(std::io::stdout())
}
