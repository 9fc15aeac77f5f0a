//! A project's replication policy, sandbox limits and validator kind.
//!
//! Constructors are the only place that checks coherence, so the rest of the
//! coordinator can trust a `ReplicationPolicy` it holds.

use std::fmt;

use super::Digest;
use super::fuzzy::{Format, Tolerance};

/// Why a policy or limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("min_quorum must be at least 1")]
    MinQuorumZero,
    #[error("min_quorum ({min_quorum}) is greater than target_results ({target_results})")]
    QuorumAboveTarget { min_quorum: u32, target_results: u32 },
    #[error("max_total_results ({max_total_results}) is less than target_results ({target_results})")]
    TotalBelowTarget { max_total_results: u32, target_results: u32 },
    #[error("{field} ({value}) is above the maximum of {max}")]
    TooLarge { field: &'static str, value: u64, max: u64 },
    #[error("max_success_results ({max_success_results}) is less than min_quorum ({min_quorum})")]
    SuccessBelowQuorum { max_success_results: u32, min_quorum: u32 },
    #[error("deadline must be at least 1 second")]
    DeadlineZero,
    #[error("{field} must be greater than zero")]
    LimitZero { field: &'static str },
    #[error("unknown validator kind {0:?}")]
    UnknownValidator(String),
}

/// The fields of a replication policy as requested, before they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicySpec {
    pub min_quorum: u32,
    pub target_results: u32,
    pub max_error_results: u32,
    pub max_total_results: u32,
    /// 0 means `max_total_results` (no earlier limit).
    pub max_success_results: u32,
    pub deadline_ms: u64,
    pub adaptive_replication: bool,
    /// Higher first: copies of higher-priority work go out before others.
    pub priority: i32,
}

/// BOINC's replication policy of a work unit (shared/BOINC.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationPolicy {
    min_quorum: u32,
    target_results: u32,
    max_error_results: u32,
    max_total_results: u32,
    max_success_results: u32,
    deadline_ms: u64,
    adaptive_replication: bool,
    priority: i32,
}

impl ReplicationPolicy {
    /// Most copies one work unit may ever have.
    pub const MAX_TOTAL_RESULTS: u32 = 100;
    /// Longest deadline: 90 days.
    pub const MAX_DEADLINE_MS: u64 = 90 * 24 * 3600 * 1000;

    pub fn new(spec: PolicySpec) -> Result<ReplicationPolicy, PolicyError> {
        let PolicySpec {
            min_quorum,
            target_results,
            max_error_results,
            max_total_results,
            max_success_results,
            deadline_ms,
            adaptive_replication,
            priority,
        } = spec;
        let max_success_results = if max_success_results == 0 { max_total_results } else { max_success_results };
        if min_quorum == 0 {
            return Err(PolicyError::MinQuorumZero);
        }
        if min_quorum > target_results {
            return Err(PolicyError::QuorumAboveTarget { min_quorum, target_results });
        }
        if max_total_results < target_results {
            return Err(PolicyError::TotalBelowTarget { max_total_results, target_results });
        }
        if max_success_results < min_quorum {
            return Err(PolicyError::SuccessBelowQuorum { max_success_results, min_quorum });
        }
        for (field, value) in [
            ("max_total_results", max_total_results),
            ("max_error_results", max_error_results),
            ("max_success_results", max_success_results),
        ] {
            if value > Self::MAX_TOTAL_RESULTS {
                return Err(PolicyError::TooLarge { field, value: value.into(), max: Self::MAX_TOTAL_RESULTS.into() });
            }
        }
        if deadline_ms < 1000 {
            return Err(PolicyError::DeadlineZero);
        }
        if deadline_ms > Self::MAX_DEADLINE_MS {
            return Err(PolicyError::TooLarge { field: "deadline_ms", value: deadline_ms, max: Self::MAX_DEADLINE_MS });
        }
        Ok(ReplicationPolicy {
            min_quorum,
            target_results,
            max_error_results,
            max_total_results,
            max_success_results,
            deadline_ms,
            adaptive_replication,
            priority,
        })
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
    pub fn max_success_results(&self) -> u32 {
        self.max_success_results
    }
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
    /// Higher first when copies are handed out.
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// Whether a work unit may be accepted on one result from a trusted host.
    pub fn adaptive_replication(&self) -> bool {
        self.adaptive_replication
    }

    /// The policy as it was requested (for display and storage).
    pub fn spec(&self) -> PolicySpec {
        PolicySpec {
            min_quorum: self.min_quorum,
            target_results: self.target_results,
            max_error_results: self.max_error_results,
            max_total_results: self.max_total_results,
            max_success_results: self.max_success_results,
            deadline_ms: self.deadline_ms,
            adaptive_replication: self.adaptive_replication,
            priority: self.priority,
        }
    }

    /// How many agreeing results make one canonical: BOINC's `min_quorum/2 + 1`.
    pub fn agreement_size(&self) -> usize {
        self.min_quorum as usize / 2 + 1
    }
}

/// Sandbox limits of every task of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
    pub wall_time_ms: u64,
    /// Largest stderr one run may write (the report keeps only its tail).
    pub stderr_bytes: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        fuel: 1_000_000_000_000,
        memory_bytes: 512 << 20,
        output_bytes: 16 << 20,
        wall_time_ms: 3600 * 1000,
        // The worker's own default.
        stderr_bytes: 1 << 20,
    };
    /// Largest output the coordinator stores for one result.
    pub const MAX_OUTPUT_BYTES: u64 = 32 << 20;
    /// Largest linear memory a project may ask of volunteers.
    pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
    /// Largest stderr a project may let one run write.
    pub const MAX_STDERR_BYTES: u64 = 32 << 20;

    /// Limits from requested values, where 0 means "the default".
    pub fn with_defaults(
        fuel: u64,
        memory_bytes: u64,
        output_bytes: u64,
        wall_time_ms: u64,
        stderr_bytes: u64,
    ) -> Result<Limits, PolicyError> {
        let pick = |value: u64, default: u64| if value == 0 { default } else { value };
        let limits = Limits {
            fuel: pick(fuel, Self::DEFAULT.fuel),
            memory_bytes: pick(memory_bytes, Self::DEFAULT.memory_bytes),
            output_bytes: pick(output_bytes, Self::DEFAULT.output_bytes),
            wall_time_ms: pick(wall_time_ms, Self::DEFAULT.wall_time_ms),
            stderr_bytes: pick(stderr_bytes, Self::DEFAULT.stderr_bytes),
        };
        if limits.stderr_bytes > Self::MAX_STDERR_BYTES {
            return Err(PolicyError::TooLarge {
                field: "stderr_bytes",
                value: limits.stderr_bytes,
                max: Self::MAX_STDERR_BYTES,
            });
        }
        if limits.output_bytes > Self::MAX_OUTPUT_BYTES {
            return Err(PolicyError::TooLarge {
                field: "output_bytes",
                value: limits.output_bytes,
                max: Self::MAX_OUTPUT_BYTES,
            });
        }
        if limits.memory_bytes > Self::MAX_MEMORY_BYTES {
            return Err(PolicyError::TooLarge {
                field: "memory_bytes",
                value: limits.memory_bytes,
                max: Self::MAX_MEMORY_BYTES,
            });
        }
        // Values are stored as SQLite INTEGER (i64).
        for (field, value) in [("fuel", limits.fuel), ("wall_time_ms", limits.wall_time_ms)] {
            if value > i64::MAX as u64 {
                return Err(PolicyError::TooLarge { field, value, max: i64::MAX as u64 });
            }
        }
        Ok(limits)
    }
}

/// How results of a project are compared.
#[derive(Clone, Debug, PartialEq)]
pub enum ValidatorKind {
    /// Outputs agree when they are byte-for-byte equal (compared by SHA-256).
    Bitwise,
    /// Outputs are parsed as numbers (whitespace-separated or JSON) and agree
    /// within a tolerance.
    Fuzzy { format: Format, tolerance: Tolerance },
    /// A WebAssembly module supplied by the project says whether two outputs agree.
    Custom { module_digest: Digest },
}

impl ValidatorKind {
    /// The kind's name, as stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValidatorKind::Bitwise => "bitwise",
            ValidatorKind::Fuzzy { .. } => "fuzzy",
            ValidatorKind::Custom { .. } => "custom",
        }
    }
}

impl fmt::Display for ValidatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a fuzzy output format, as stored.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Whitespace => "whitespace",
        Format::Json => "json",
    }
}

/// The inverse of `format_name`.
pub fn parse_format(text: &str) -> Result<Format, PolicyError> {
    match text {
        "whitespace" => Ok(Format::Whitespace),
        "json" => Ok(Format::Json),
        other => Err(PolicyError::UnknownValidator(format!("fuzzy format {other:?}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy from (min_quorum, target, max_errors, max_total, deadline_ms), the rest defaulted.
    pub(crate) fn policy(q: u32, t: u32, e: u32, total: u32, d: u64) -> Result<ReplicationPolicy, PolicyError> {
        ReplicationPolicy::new(PolicySpec {
            min_quorum: q,
            target_results: t,
            max_error_results: e,
            max_total_results: total,
            max_success_results: 0,
            deadline_ms: d,
            adaptive_replication: false,
            priority: 0,
        })
    }

    fn check(args: (u32, u32, u32, u32, u64), expected: Result<(), PolicyError>) {
        let (q, t, e, total, d) = args;
        assert_eq!(policy(q, t, e, total, d).map(|_| ()), expected, "{args:?}");
    }

    #[test]
    fn policy_coherence() {
        check((2, 2, 3, 8, 60_000), Ok(()));
        check((1, 1, 0, 1, 1000), Ok(()));
        check((0, 2, 3, 8, 60_000), Err(PolicyError::MinQuorumZero));
        check((3, 2, 3, 8, 60_000), Err(PolicyError::QuorumAboveTarget { min_quorum: 3, target_results: 2 }));
        check((2, 3, 3, 2, 60_000), Err(PolicyError::TotalBelowTarget { max_total_results: 2, target_results: 3 }));
        check((2, 2, 3, 8, 999), Err(PolicyError::DeadlineZero));
        check((2, 2, 3, 101, 60_000), Err(PolicyError::TooLarge { field: "max_total_results", value: 101, max: 100 }));
    }

    #[test]
    fn max_success_results_defaults_to_total_and_covers_the_quorum() {
        assert_eq!(policy(2, 2, 3, 8, 1000).unwrap().max_success_results(), 8);
        let spec = |max_success_results| PolicySpec { max_success_results, ..policy(3, 3, 3, 8, 1000).unwrap().spec() };
        assert_eq!(ReplicationPolicy::new(spec(5)).unwrap().max_success_results(), 5);
        assert_eq!(
            ReplicationPolicy::new(spec(2)),
            Err(PolicyError::SuccessBelowQuorum { max_success_results: 2, min_quorum: 3 })
        );
    }

    #[test]
    fn agreement_size_follows_boinc() {
        let size = |q| policy(q, q, 0, q, 1000).unwrap().agreement_size();
        assert_eq!((size(1), size(2), size(3), size(4), size(5)), (1, 2, 2, 3, 3));
    }

    #[test]
    fn limits_default_and_caps() {
        assert_eq!(Limits::with_defaults(0, 0, 0, 0, 0), Ok(Limits::DEFAULT));
        assert_eq!(Limits::with_defaults(5, 0, 0, 0, 0).unwrap().fuel, 5);
        assert_eq!(Limits::with_defaults(0, 0, 0, 0, 4096).unwrap().stderr_bytes, 4096);
        assert_eq!(Limits::DEFAULT.stderr_bytes, 1 << 20, "0 means the worker's default, 1 MiB");
        assert!(matches!(
            Limits::with_defaults(0, 0, 1 << 40, 0, 0),
            Err(PolicyError::TooLarge { field: "output_bytes", .. })
        ));
        assert!(matches!(
            Limits::with_defaults(0, 0, 0, 0, 1 << 40),
            Err(PolicyError::TooLarge { field: "stderr_bytes", .. })
        ));
    }

    #[test]
    fn validator_names_round_trip() {
        assert_eq!(ValidatorKind::Bitwise.as_str(), "bitwise");
        for format in [Format::Whitespace, Format::Json] {
            assert_eq!(parse_format(format_name(format)), Ok(format));
        }
        assert!(parse_format("xml").is_err());
    }
}
