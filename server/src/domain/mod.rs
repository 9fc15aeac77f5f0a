//! The coordinator's domain: plain types and rules, no I/O.
//!
//! Nothing here knows about gRPC, SQL or tokio (a tidy test checks it): the
//! store and the RPC handlers are adapters that load state, call these
//! functions with `now`, and persist what they return.
//!
//! Layout:
//! - `batch`: automatic pause of failing batches; the tail of a batch (fast hosts, spare copies).
//! - `app`: app modules: their digest and the check that they are WASI commands.
//! - `files`: input and output files: names, the set an app sees, limits, the output digest that covers them.
//! - `app_args`: an app's command-line arguments and environment variables (project's, work unit's, merged).
//! - `policy`: a project's replication policy, sandbox limits and validator, checked on construction.
//! - `lifecycle`: the states of results and work units and the transitioner's rules
//!   (reports, deadlines, validation, new copies, failure, credit).
//! - `validator`: how results are compared to find agreement.
//! - `fuzzy`: comparison of floating-point outputs within a tolerance, and agreement for it.
//! - `scheduler`: what a host is handed: deadlines, random seeds, retry hints.
//! - `holds`: what holds a project's open work ("why is nothing running?").
//! - `trust`: a host's streak of valid results and daily quota; adaptive replication.
//! - `names`: project and work-unit names.
//! - `rate`: token buckets for rate limits (registrations per address, requests per host).
//! - `signing`: ed25519 signatures of app modules by the scientist's project key.
//! - `assimilation`: the order canonical results are handed out in, as a stream with a resume cursor.
//! - `access`: API tokens' roles and what each may do on the `Projects` service.

pub mod access;
pub mod app;
pub mod app_args;
pub mod assimilation;
pub mod batch;
pub mod files;
pub mod fuzzy;
pub mod holds;
pub mod lifecycle;
pub mod names;
pub mod policy;
pub mod rate;
pub mod scheduler;
pub mod signing;
pub mod trust;
pub mod validator;

use std::fmt;

/// A point in time, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The time `ms` milliseconds later (saturating).
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }

    /// The time in RFC 3339 to the second, UTC: "2026-12-04T11:30:00Z".
    pub fn rfc3339(self) -> String {
        let since_epoch = std::time::Duration::from_millis(u64::try_from(self.0).unwrap_or(0));
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + since_epoch).to_string()
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A volunteer machine.
    HostId
);
id_type!(
    /// One copy of a work unit.
    ResultId
);
id_type!(
    /// One piece of work of a project.
    WorkUnitId
);
id_type!(
    /// A compute project.
    ProjectId
);

/// Lowercase hex SHA-256 of some bytes (an app module, a result's output).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Wraps a digest string, checking that it is 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Digest> {
        let ok = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Digest(text.to_owned()))
    }

    /// Wraps a digest computed by this process (already hex).
    pub fn from_hex(hex: String) -> Digest {
        Digest(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
