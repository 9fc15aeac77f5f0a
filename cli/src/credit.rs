//! Credit per volunteer, BOINC's leaderboard: the hosts of one account are
//! summed, a host without an account stands alone. A pure function of the
//! coordinator's hosts, behind `quorum credit`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use quorum_proto::v1;

/// One volunteer's line of the leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Volunteer {
    /// 1 for the most credit; consecutive, ties broken by name.
    pub rank: u64,
    /// The account, or "host ID (NAME)" for a host without one.
    pub name: String,
    pub n_hosts: u64,
    pub n_valid: u64,
    pub total_credit: f64,
}

/// Who a host's credit goes to. A host without an account is keyed by its id,
/// so that it never merges with an account that happens to be spelt like
/// its display name.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Account(String),
    Host(i64),
}

/// The leaderboard: one line per volunteer, by credit descending then name.
pub fn leaderboard(hosts: &[v1::HostInfo]) -> Vec<Volunteer> {
    // Sum in host id order so that the float totals do not depend on the
    // order the coordinator listed the hosts in.
    let mut hosts: Vec<&v1::HostInfo> = hosts.iter().collect();
    hosts.sort_by_key(|host| host.id);
    let mut by_owner: BTreeMap<Owner, Volunteer> = BTreeMap::new();
    for host in hosts {
        let (owner, name) = if host.account.is_empty() {
            (Owner::Host(host.id), format!("host {} ({})", host.id, host.name))
        } else {
            (Owner::Account(host.account.clone()), host.account.clone())
        };
        let volunteer = by_owner.entry(owner).or_insert_with(|| Volunteer {
            rank: 0,
            name,
            n_hosts: 0,
            n_valid: 0,
            total_credit: 0.0,
        });
        volunteer.n_hosts += 1;
        volunteer.n_valid += host.n_valid;
        volunteer.total_credit += host.total_credit;
    }
    let mut volunteers: Vec<Volunteer> = by_owner.into_values().collect();
    volunteers.sort_by(by_credit_then_name);
    for (rank, volunteer) in (1..).zip(&mut volunteers) {
        volunteer.rank = rank;
    }
    volunteers
}

fn by_credit_then_name(a: &Volunteer, b: &Volunteer) -> Ordering {
    b.total_credit.total_cmp(&a.total_credit).then_with(|| a.name.cmp(&b.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: i64, name: &str, account: &str, n_valid: u64, total_credit: f64) -> v1::HostInfo {
        v1::HostInfo {
            id,
            name: name.to_owned(),
            account: account.to_owned(),
            n_valid,
            total_credit,
            ..Default::default()
        }
    }

    /// `expected`: one "RANK NAME N_HOSTS N_VALID CREDIT" line per volunteer.
    fn check(hosts: &[v1::HostInfo], expected: &[&str]) {
        let actual: Vec<String> = leaderboard(hosts)
            .iter()
            .map(|v| format!("{} {} {} {} {}", v.rank, v.name, v.n_hosts, v.n_valid, v.total_credit))
            .collect();
        assert_eq!(actual, expected, "for {hosts:?}");
    }

    #[test]
    fn leaderboard_table() {
        check(&[], &[]);
        // One host with an account, one without.
        check(
            &[host(1, "lab-1", "alice", 4, 2.5), host(2, "attic", "", 9, 7.0)],
            &["1 host 2 (attic) 1 9 7", "2 alice 1 4 2.5"],
        );
        // The hosts of one account are summed.
        check(
            &[host(1, "a1", "alice", 4, 2.5), host(2, "b1", "bob", 1, 5.0), host(3, "a2", "alice", 6, 10.0)],
            &["1 alice 2 10 12.5", "2 bob 1 1 5"],
        );
        // Hosts without an account never merge, even with the same name.
        check(
            &[host(1, "box", "", 1, 1.0), host(2, "box", "", 2, 2.0)],
            &["1 host 2 (box) 1 2 2", "2 host 1 (box) 1 1 1"],
        );
        // Nor with an account spelt like their display name (the account,
        // which sorts first among equals, is the one with 2 valid results).
        check(
            &[host(1, "box", "", 1, 1.0), host(2, "x", "host 1 (box)", 2, 1.0)],
            &["1 host 1 (box) 1 2 1", "2 host 1 (box) 1 1 1"],
        );
        // Equal credit: by name; ranks stay consecutive.
        check(
            &[host(1, "h", "carol", 0, 3.0), host(2, "h", "bob", 0, 3.0), host(3, "h", "dave", 0, 0.0)],
            &["1 bob 1 0 3", "2 carol 1 0 3", "3 dave 1 0 0"],
        );
        // The listing order does not matter.
        check(
            &[host(3, "a2", "alice", 6, 10.0), host(1, "a1", "alice", 4, 2.5), host(2, "b1", "bob", 1, 5.0)],
            &["1 alice 2 10 12.5", "2 bob 1 1 5"],
        );
    }
}
