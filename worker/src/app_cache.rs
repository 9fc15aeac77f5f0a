//! The app cache's budget, as a pure rule: which cached modules to evict so
//! that the cache (`apps/<digest>.wasm` in the state directory, see `state`)
//! stays within its size in bytes. Least recently used first; a module a task
//! the worker holds (queued, running or unreported) needs is never evicted.
//! No I/O: `state` lists the cache and removes what this decides.

use std::collections::HashSet;
use std::time::SystemTime;

/// One module in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedApp {
    pub digest: String,
    /// Bytes on disk.
    pub size: u64,
    /// When a task last used it (the file's modification time, touched on
    /// every use).
    pub last_used: SystemTime,
}

/// The digests to evict from `cached`, least recently used first (ties by
/// digest, so the answer does not depend on the listing's order), until the
/// total size is within `budget` bytes. A digest in `needed` is never evicted:
/// when the needed modules alone exceed the budget, every other one is
/// evicted and the needed ones are kept.
pub fn to_evict(cached: &[CachedApp], needed: &HashSet<String>, budget: u64) -> Vec<String> {
    let mut total: u64 = cached.iter().map(|app| app.size).sum();
    let mut candidates: Vec<&CachedApp> = cached.iter().filter(|app| !needed.contains(&app.digest)).collect();
    candidates.sort_by(|a, b| (a.last_used, &a.digest).cmp(&(b.last_used, &b.digest)));
    let mut evicted = Vec::new();
    for app in candidates {
        if total <= budget {
            break;
        }
        total -= app.size;
        evicted.push(app.digest.clone());
    }
    evicted
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `cached` as (digest, size, last used in seconds after the epoch).
    fn check(cached: &[(&str, u64, u64)], needed: &[&str], budget: u64, expected: &[&str]) {
        let cached: Vec<CachedApp> = cached
            .iter()
            .map(|&(digest, size, used)| CachedApp {
                digest: digest.to_string(),
                size,
                last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(used),
            })
            .collect();
        let needed: HashSet<String> = needed.iter().map(|digest| digest.to_string()).collect();
        assert_eq!(to_evict(&cached, &needed, budget), expected, "{cached:?}, needed {needed:?}, budget {budget}");
    }

    #[test]
    fn evicts_least_recently_used_first_until_within_budget() {
        // (cached apps, needed, budget, evicted in order)
        check(&[], &[], 0, &[]);
        check(&[("a", 10, 1), ("b", 10, 2)], &[], 20, &[]);
        check(&[("a", 10, 1), ("b", 10, 2)], &[], 19, &["a"]);
        check(&[("b", 10, 2), ("a", 10, 1), ("c", 10, 3)], &[], 10, &["a", "b"]);
        check(&[("a", 10, 1), ("b", 10, 2)], &[], 0, &["a", "b"]);
        // A large old module goes first and may be enough on its own.
        check(&[("big", 100, 1), ("a", 10, 2), ("b", 10, 3)], &[], 50, &["big"]);
        // Same last use: by digest.
        check(&[("b", 10, 5), ("a", 10, 5), ("c", 10, 5)], &[], 15, &["a", "b"]);
    }

    #[test]
    fn never_evicts_what_a_held_task_needs() {
        check(&[("a", 10, 1), ("b", 10, 2), ("c", 10, 3)], &["a"], 20, &["b"]);
        check(&[("a", 10, 1), ("b", 10, 2), ("c", 10, 3)], &["a", "b"], 20, &["c"]);
        // The needed alone exceed the budget: every other goes, they stay.
        check(&[("a", 30, 1), ("b", 10, 2), ("c", 10, 3)], &["a"], 20, &["b", "c"]);
        check(&[("a", 30, 1), ("b", 30, 2)], &["a", "b"], 10, &[]);
        // A needed digest that is not cached changes nothing.
        check(&[("a", 10, 1), ("b", 10, 2)], &["z"], 10, &["a"]);
    }
}
