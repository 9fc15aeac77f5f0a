//! What the scheduler hands a host: deadlines, the deterministic random seed
//! of a work unit, and how long an idle host should wait.

use sha2::{Digest as _, Sha256};

use super::names::ProjectName;
use super::policy::ReplicationPolicy;
use super::{Timestamp, WorkUnitId};

/// A host is attached when it called within this long (twenty times a
/// worker's longest backoff, 30 s by default): the tail of a batch waits for
/// the fast ones among them, and "why is nothing running" counts them.
pub const ATTACHED_MS: i64 = 10 * 60 * 1000;

/// Most results one request can take.
pub const MAX_SLOTS_PER_REQUEST: u32 = 1000;

/// How long a host that got no work should wait before asking again.
pub const NO_WORK_RETRY_MS: u64 = 10_000;

/// When a copy sent at `now` must be reported.
pub fn deadline(now: Timestamp, policy: &ReplicationPolicy) -> Timestamp {
    now.plus_ms(policy.deadline_ms())
}

/// The seed a project's work units draw their seeds from: the one its
/// manifest gives (`seed`), else one derived from the project's name. Stored
/// with the project when it is created.
pub fn project_seed(project: &ProjectName, given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| seed_of(&[b"quorum project seed\0", project.as_str().as_bytes()]))
}

/// The seed of a work unit's deterministic random source: the same for every
/// copy (and every retry) of the work unit, derived only from stable names,
/// never from database ids: the first 8 bytes (little-endian) of the SHA-256
/// of the project seed (8 bytes, little-endian) followed by the work unit's
/// name. The same inputs submitted again, under the same project seed, draw
/// the same numbers; two work units of a project draw different ones.
/// Stored with the work unit when it is created, so it never changes.
pub fn random_seed(project_seed: u64, work_unit_name: &str) -> u64 {
    seed_of(&[&project_seed.to_le_bytes(), work_unit_name.as_bytes()])
}

/// The seed of a work unit created before seeds were stored (its row has
/// none): SplitMix64 of its id, as its copies were always given.
pub fn legacy_random_seed(work_unit: WorkUnitId) -> u64 {
    splitmix64(work_unit.0 as u64)
}

/// The first 8 bytes, as a little-endian `u64`, of the SHA-256 of `parts`.
fn seed_of(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// SplitMix64's output function: a fixed, well-mixed bijection of `u64`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_adds_the_policy_delay() {
        let policy = crate::domain::policy::tests::policy(2, 2, 3, 8, 60_000).unwrap();
        assert_eq!(deadline(Timestamp(1_000), &policy), Timestamp(61_000));
    }

    fn project(text: &str) -> ProjectName {
        ProjectName::parse(text).expect("valid project name")
    }

    #[test]
    fn seeds_derive_from_names_only() {
        let a = project_seed(&project("a"), None);
        // Stable: a fixed function of the names.
        assert_eq!(random_seed(project_seed(&project("a"), Some(42)), "0-1000"), random_seed(42, "0-1000"));
        assert_eq!(random_seed(a, "x"), random_seed(project_seed(&project("a"), None), "x"));
        // Another project name: other draws, unless both give the same seed.
        assert_ne!(random_seed(a, "x"), random_seed(project_seed(&project("b"), None), "x"));
        assert_eq!(
            random_seed(project_seed(&project("a"), Some(7)), "x"),
            random_seed(project_seed(&project("b"), Some(7)), "x")
        );
        // Distinct work units, distinct seeds; the given seed counts.
        assert_ne!(random_seed(a, "x"), random_seed(a, "y"));
        assert_ne!(random_seed(7, "x"), random_seed(8, "x"));
        // The little-endian seed is followed by the name, with no ambiguity.
        assert_eq!(random_seed(0, "x"), seed_of(&[&[0; 8], b"x"]));
        assert_eq!(legacy_random_seed(WorkUnitId(7)), splitmix64(7));
    }
}
