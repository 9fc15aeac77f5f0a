//! Coordinator groups: one attachment, several addresses. A coordinator group
//! is one project's database served at several addresses (a standby
//! coordinator that takes over the same SQLite file or PostgreSQL database at
//! another address, or several coordinator processes over one PostgreSQL
//! database). The worker is one host of the group: one identity (host id and
//! token, valid at every address since they share the database), one journal
//! key, one app cache and checkpoint tree, whichever address it talks to.
//!
//! Pure rules, no I/O:
//! - [`Failover`]: which address to call. One at a time, in the order given;
//!   a call that finds the address unreachable ([`crate::client::is_unreachable`])
//!   moves on to the next address at once, wrapping around, until every
//!   address failed once since the group last answered: then the caller backs
//!   off as with a single address, and tries the next one after the wait. An
//!   address that answers is kept (no return to the first one while it
//!   works); a switch is reported once, when the new address answers.
//! - [`group_key`]: the group's identity key in the journal: the key of the
//!   journalled attachment sharing an address with the group (so adding,
//!   removing or reordering addresses keeps the host's identity), else the
//!   first address. A state directory from before groups keys each
//!   attachment by its one URL, which is then the group's key.
//! - [`check_distinct`]: no address in two groups.
//!
//! Failover never registers the host again: only an `Unauthenticated`
//! answer does (the database no longer knows the token), as with one address.

/// Which address of a group the calls go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    n_addresses: usize,
    /// The address calls go to now.
    current: usize,
    /// The address that answered last (or the first one used): a switch is
    /// reported when another one answers.
    answering: usize,
    /// Addresses found unreachable since the group last answered (or since
    /// the last backoff).
    unreachable_in_turn: usize,
}

/// What to do after a call found the current address unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call address `to` at once: it has not been tried since the group
    /// last answered.
    TryNow { from: usize, to: usize },
    /// Every address was tried since the group last answered: back off as
    /// usual, then call address `to`.
    BackOff { to: usize },
}

/// The calls moved from one address to another that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switched {
    pub from: usize,
    pub to: usize,
}

impl Failover {
    /// Calls go to address `start` first (e.g. the one in use at the last
    /// run); an index out of range means the first address.
    pub fn new(n_addresses: usize, start: usize) -> Failover {
        let n_addresses = n_addresses.max(1);
        let start = if start < n_addresses { start } else { 0 };
        Failover { n_addresses, current: start, answering: start, unreachable_in_turn: 0 }
    }

    /// The address calls go to now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The current address answered (whatever it said: it is reachable).
    /// Returns the switch when calls had moved away from the address that
    /// answered before.
    pub fn answered(&mut self) -> Option<Switched> {
        self.unreachable_in_turn = 0;
        let switched = (self.current != self.answering).then_some(Switched { from: self.answering, to: self.current });
        self.answering = self.current;
        switched
    }

    /// A call could not reach the current address: move to the next one
    /// (wrapping around), at once or after a backoff.
    pub fn unreachable(&mut self) -> Next {
        let from = self.current;
        self.current = (self.current + 1) % self.n_addresses;
        self.unreachable_in_turn += 1;
        if self.unreachable_in_turn < self.n_addresses {
            Next::TryNow { from, to: self.current }
        } else {
            self.unreachable_in_turn = 0;
            Next::BackOff { to: self.current }
        }
    }
}

/// The key of the journalled attachment `addresses` belongs to: one whose
/// key or recorded addresses share an address with the group. `journalled`
/// lists each attachment's key and its recorded addresses (empty for a
/// journal from before groups). No match: the group's first address, a new
/// attachment. Several: an error, since they are separate hosts with tasks
/// of their own (one must be detached first).
pub fn group_key(addresses: &[String], journalled: &[(String, Vec<String>)]) -> Result<String, String> {
    let first = addresses.first().ok_or("a coordinator group without an address")?;
    let matches: Vec<&str> = journalled
        .iter()
        .filter(|(key, recorded)| {
            addresses.iter().any(|address| address == key || recorded.iter().any(|recorded| recorded == address))
        })
        .map(|(key, _)| key.as_str())
        .collect();
    match matches.as_slice() {
        [] => Ok(first.clone()),
        [key] => Ok((*key).to_owned()),
        keys => Err(format!(
            "the addresses {} are one coordinator group, but this worker is attached to {} as separate \
             coordinators, each with its own host identity: detach all but one first (`quorum-worker detach URL`)",
            addresses.join(","),
            keys.join(" and ")
        )),
    }
}

/// Each address belongs to one group only: an address in two groups would
/// make one host two hosts of one coordinator.
pub fn check_distinct<'a>(groups: impl IntoIterator<Item = &'a [String]>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for group in groups {
        for address in group {
            if !seen.insert(address.as_str()) {
                return Err(format!(
                    "coordinator {address} given twice (in two --server groups, or twice as a coordinator)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `events` on a group of `n` addresses starting at `start`: `x` a
    /// call found the address unreachable, `o` it answered. The trace says
    /// what each event decided: `now→T` (call T at once), `wait→T` (back off,
    /// then T), `ok` or `ok F>T` (a switch from F to T, reported).
    fn check(n: usize, start: usize, events: &str, expected: &str) {
        let mut failover = Failover::new(n, start);
        let trace: Vec<String> = events
            .chars()
            .map(|event| match event {
                'x' => match failover.unreachable() {
                    Next::TryNow { from, to } => {
                        assert_eq!(from, (to + n - 1) % n, "moves one address on");
                        format!("now→{to}")
                    }
                    Next::BackOff { to } => format!("wait→{to}"),
                },
                'o' => match failover.answered() {
                    None => "ok".to_owned(),
                    Some(Switched { from, to }) => format!("ok {from}>{to}"),
                },
                other => panic!("unknown event {other:?}"),
            })
            .collect();
        assert_eq!(trace.join(" "), expected, "n={n} start={start} events={events}");
    }

    #[test]
    fn one_address_backs_off_as_before() {
        check(1, 0, "xxo", "wait→0 wait→0 ok");
        check(1, 0, "oxo", "ok wait→0 ok");
    }

    #[test]
    fn the_next_address_is_tried_at_once_and_kept() {
        // A down: B at once; B answers and is kept, the switch said once.
        check(2, 0, "xooo", "now→1 ok 0>1 ok ok");
        // Three addresses, the first two down.
        check(3, 0, "xxoo", "now→1 now→2 ok 0>2 ok");
    }

    #[test]
    fn every_address_down_backs_off_then_goes_round() {
        check(2, 0, "xx", "now→1 wait→0");
        // After the wait, A again, then B at once; B answers.
        check(2, 0, "xxxo", "now→1 wait→0 now→1 ok 0>1");
        // A comes back after a whole turn: no switch to report.
        check(2, 0, "xxo", "now→1 wait→0 ok");
        check(3, 1, "xxxx", "now→2 now→0 wait→1 now→2");
    }

    #[test]
    fn a_later_failure_of_the_new_address_wraps_around() {
        // On B after A went down; then B goes down and A is back.
        check(2, 0, "xoxo", "now→1 ok 0>1 now→0 ok 1>0");
        // Three addresses on the last: the next is the first.
        check(3, 2, "xo", "now→0 ok 2>0");
    }

    #[test]
    fn the_start_address_is_kept_when_valid() {
        assert_eq!(Failover::new(3, 2).current(), 2);
        assert_eq!(Failover::new(3, 3).current(), 0, "out of range: the first");
        assert_eq!(Failover::new(0, 0).current(), 0, "at least one address");
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn the_group_keeps_the_identity_it_has() {
        let a_b = strings(&["http://a", "http://b"]);
        let journal = |rows: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            rows.iter().map(|(key, addresses)| ((*key).to_owned(), strings(addresses))).collect()
        };
        // New: the first address.
        assert_eq!(group_key(&a_b, &[]).as_deref(), Ok("http://a"));
        assert_eq!(group_key(&a_b, &journal(&[("http://c", &[])])).as_deref(), Ok("http://a"));
        // A journal from before groups, attached to A: a second address keeps A.
        assert_eq!(group_key(&a_b, &journal(&[("http://a", &[])])).as_deref(), Ok("http://a"));
        // B put first, or A dropped from the group: still A's identity.
        let b_a = strings(&["http://b", "http://a"]);
        assert_eq!(group_key(&b_a, &journal(&[("http://a", &[])])).as_deref(), Ok("http://a"));
        let b = strings(&["http://b"]);
        assert_eq!(group_key(&b, &journal(&[("http://a", &["http://a", "http://b"])])).as_deref(), Ok("http://a"));
        // A and B attached as two coordinators before: refused, naming both.
        let error = group_key(&a_b, &journal(&[("http://a", &[]), ("http://b", &[])])).expect_err("two identities");
        assert!(error.contains("http://a and http://b"), "{error}");
        assert!(group_key(&[], &[]).is_err());
    }

    #[test]
    fn an_address_belongs_to_one_group() {
        let groups = [strings(&["http://a", "http://b"]), strings(&["http://c"])];
        assert_eq!(check_distinct(groups.iter().map(Vec::as_slice)), Ok(()));
        let groups = [strings(&["http://a", "http://b"]), strings(&["http://c", "http://b"])];
        let error = check_distinct(groups.iter().map(Vec::as_slice)).expect_err("b twice");
        assert!(error.contains("http://b given twice"), "{error}");
        let groups = [strings(&["http://a"]), strings(&["http://a"])];
        assert!(check_distinct(groups.iter().map(Vec::as_slice)).is_err());
    }
}
