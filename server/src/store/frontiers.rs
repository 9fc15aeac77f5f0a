//! Where each host's walk through the unsent copies may start, so that a
//! host asking for work never walks again a backlog of copies it can never
//! take, and a host is never refused while a copy it may take waits.
//!
//! The scheduler walks unsent copies in dispatch order (priority, highest
//! first, then id). A host may never take a copy of a work unit that it, or
//! another host of its volunteer account, already holds (or held): that is
//! permanent, because who held a copy of a work unit never changes. A
//! *frontier* at a priority level is the id of a copy such that every
//! unsent copy of that level up to it is one of those, or was taken: the walk
//! starts after it. For a host of an account, "it or its account holds one"
//! is "its account holds one", the same for every host of the account: the
//! hosts of an account share one frontier ([`Walker::Account`]), so a backlog
//! is walked once per account; a host standing alone has its own. Nothing else is remembered, so a copy the
//! host was refused for a passing reason (the tail of a batch, a quota) stops
//! the frontier and is looked at again next time.
//!
//! Why a frontier stays true: copies are never deleted, an unsent copy never
//! changes priority, and a new copy gets a larger id than every copy of its
//! level, so it lands after every frontier. The one event that brings copies
//! back into the walk is a paused batch resumed (a paused batch's copies are
//! left out of the walk, so a frontier may have passed them): the resuming
//! transaction moves the database's frontier epoch on (`scheduler_state`),
//! and every coordinator of the database, reading it at the start of each
//! walk ([`Frontiers::read`]), forgets all its frontiers when it moved.
//! Copies get ids in the order their transactions commit, since writers
//! take turns over the database (`backend::Pool::begin_write`), also across
//! coordinators.
//!
//! It also remembers when the log last said why a host got nothing, so
//! that it says it at most once a minute per host.
//!
//! Frontiers live in each coordinator's memory (a restart only costs one walk
//! per host) and are updated only after the group's transaction committed,
//! with the database's frontier epoch read inside it: an update found at
//! an epoch since moved on is void.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::domain::{HostId, Timestamp};

/// Frontiers kept at most; beyond, they are all dropped (one more walk each).
const MAX_HOSTS: usize = 262_144;

/// One walker's frontiers: per priority level, the last copy id passed.
pub(super) type HostFrontier = BTreeMap<i64, i64>;

/// Who a frontier belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Walker {
    /// A host standing alone.
    Host(HostId),
    /// Every host of a volunteer account (as stored, canonical).
    Account(String),
}

/// Every host's frontiers, with the database's frontier epoch they were found at.
#[derive(Default)]
pub(super) struct Frontiers(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The database's frontier epoch these frontiers were found at.
    stored: Option<i64>,
    walkers: HashMap<Walker, HostFrontier>,
    /// When each host was last said (in the log) to get nothing, and why.
    explained: HashMap<i64, i64>,
}

/// How often the log says why one host gets nothing.
const EXPLAIN_EVERY_MS: i64 = 60_000;

impl Frontiers {
    /// The frontiers of `walkers` (empty for one with none), given the
    /// database's frontier epoch read in the walk's transaction: every
    /// frontier is forgotten first if it moved.
    pub fn read<'a>(
        &self,
        stored: i64,
        walkers: impl IntoIterator<Item = &'a Walker>,
    ) -> HashMap<Walker, HostFrontier> {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.stored != Some(stored) {
            inner.walkers.clear();
            inner.stored = Some(stored);
        }
        walkers
            .into_iter()
            .map(|walker| (walker.clone(), inner.walkers.get(walker).cloned().unwrap_or_default()))
            .collect()
    }

    /// The frontier of `walker` as it stands (tests only).
    #[cfg(test)]
    pub fn peek(&self, walker: &Walker) -> HostFrontier {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).walkers.get(walker).cloned().unwrap_or_default()
    }

    /// Stores frontiers found by a walk at the database's frontier epoch `stored`, once its transaction has
    /// committed; void if a reset came since.
    pub fn update(&self, stored: i64, frontiers: HashMap<Walker, HostFrontier>) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.stored != Some(stored) {
            return;
        }
        if inner.walkers.len() + frontiers.len() > MAX_HOSTS {
            inner.walkers.clear();
        }
        inner.walkers.extend(frontiers);
    }

    /// Whether to say now why `host` got nothing: at most once per minute per host.
    pub fn explain(&self, host: HostId, now: Timestamp) -> bool {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.explained.len() > MAX_HOSTS {
            inner.explained.clear();
        }
        let last = inner.explained.entry(host.0).or_insert(i64::MIN);
        if now.0.saturating_sub(*last) < EXPLAIN_EVERY_MS {
            return false;
        }
        *last = now.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_from_before_the_stored_epoch_moved_is_void() {
        let frontiers = Frontiers::default();
        let host = Walker::Host(HostId(1));
        frontiers.read(0, [&host]);
        frontiers.update(0, HashMap::from([(host.clone(), BTreeMap::from([(0, 10)]))]));
        assert_eq!(frontiers.read(0, [&host])[&host], BTreeMap::from([(0, 10)]));
        // A walk at epoch 0 is running when another coordinator resumes a batch.
        frontiers.read(0, [&host]);
        assert!(frontiers.read(1, [&host])[&host].is_empty(), "forgotten once the stored epoch moved");
        frontiers.update(0, HashMap::from([(host.clone(), BTreeMap::from([(0, 20)]))]));
        assert!(frontiers.read(1, [&host])[&host].is_empty(), "the stale walk's update is void");
    }
}
