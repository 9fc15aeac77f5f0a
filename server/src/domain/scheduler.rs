//! What the scheduler hands a host: deadlines, the deterministic random seed
//! of a work unit, and how long an idle host should wait.

use super::policy::ReplicationPolicy;
use super::{Timestamp, WorkUnitId};

/// Most results one request can take.
pub const MAX_SLOTS_PER_REQUEST: u32 = 1000;

/// How long a host that got no work should wait before asking again.
pub const NO_WORK_RETRY_MS: u64 = 10_000;

/// When a copy sent at `now` must be reported.
pub fn deadline(now: Timestamp, policy: &ReplicationPolicy) -> Timestamp {
    now.plus_ms(policy.deadline_ms())
}

/// The seed of a work unit's deterministic random source: the same for every
/// copy of the work unit, different between work units (SplitMix64 of the id).
pub fn random_seed(work_unit: WorkUnitId) -> u64 {
    splitmix64(work_unit.0 as u64)
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

    #[test]
    fn seeds_are_stable_and_distinct() {
        assert_eq!(random_seed(WorkUnitId(7)), random_seed(WorkUnitId(7)));
        assert_ne!(random_seed(WorkUnitId(7)), random_seed(WorkUnitId(8)));
    }
}
