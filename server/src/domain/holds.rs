//! "Why is nothing running?": what holds a project's open work, from facts
//! the store gathers (its copies, its batches, the hosts and their quotas).
//!
//! [`explain`] is the whole rule: a project with unsent copies in active
//! batches is held only by its hosts (none registered, none attached, all
//! out of quota, out of the app's quota, or holding copies of exactly those
//! work units already); copies in paused batches are held by the pause; a
//! project with nothing unsent waits for the copies hosts hold, or for
//! nothing at all once every work unit ended. `quorum status PROJECT` prints
//! each [`Hold`] on a line of its own, `--json` gives `kind` and `message`.

use std::fmt;

use super::Timestamp;

/// How many of a project's oldest unsent copies the distinct-host check
/// examines ([`Facts::takeable`]): a bound on the cost of the question.
pub const TAKEABLE_SAMPLE: u32 = 1000;

/// What the store knows of one project and of the hosts, as of `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The project's name, for the commands a hold suggests.
    pub project: String,
    /// The project was cancelled.
    pub cancelled: bool,
    pub work_units_total: u64,
    pub work_units_open: u64,
    pub work_units_done: u64,
    pub work_units_failed: u64,
    /// Unsent copies in active batches: what hosts may be given.
    pub unsent_active: u64,
    /// Paused batches that hold unsent copies: (batch id, unsent copies, reason).
    pub paused: Vec<(i64, u64, String)>,
    pub in_progress: u64,
    /// When the first deadline of the copies in progress passes.
    pub next_deadline: Option<Timestamp>,
    /// Successes reported and waiting for other copies to be compared.
    pub reported: u64,
    /// Hosts ever registered.
    pub hosts_registered: u64,
    /// When a host last called; `None` without hosts.
    pub last_contact: Option<Timestamp>,
    /// Hosts that called within [`ATTACHED_MS`](super::scheduler::ATTACHED_MS).
    pub hosts_attached: u64,
    /// Attached hosts with some of their own daily quota left.
    pub hosts_with_quota: u64,
    /// Of those, hosts with some of their quota for this project's app left.
    pub hosts_with_app_quota: u64,
    /// Of the oldest [`TAKEABLE_SAMPLE`] unsent copies in active batches, how
    /// many some host of `hosts_with_app_quota` may take: neither it nor
    /// another host of its account holds a copy of the work unit.
    pub takeable: u64,
    /// How many copies that sample examined.
    pub sampled: u64,
}

/// One thing that holds a project's work, or tells that nothing will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Every work unit ended: nothing more will run.
    Ended { done: u64, failed: u64 },
    /// The project was cancelled.
    Cancelled,
    /// No host ever registered.
    NoHost { unsent: u64 },
    /// Hosts registered, but none called lately.
    NoHostAttached { unsent: u64, registered: u64, last_contact: Option<Timestamp> },
    /// Every attached host used its daily quota.
    QuotaUsed { unsent: u64, attached: u64 },
    /// Attached hosts have quota left, but not for this app (its errors halved it).
    AppQuotaUsed { unsent: u64, hosts: u64 },
    /// The sampled unsent copies are of work units every host with quota
    /// (or its account) already holds: they need other hosts.
    NeedOtherHosts { sampled: u64, hosts: u64 },
    /// A paused batch holds unsent copies.
    BatchPaused { project: String, batch: i64, unsent: u64, reason: String },
    /// Nothing unsent: the copies out on hosts are what remains.
    CopiesOut { in_progress: u64, next_deadline: Option<Timestamp> },
    /// Successes wait for other copies before they are compared.
    AwaitingQuorum { reported: u64 },
    /// Unsent copies that attached hosts may take: they go out as hosts ask.
    Dispatching { unsent: u64, hosts: u64 },
}

impl Hold {
    /// One word for scripts (`--json`).
    pub fn kind(&self) -> &'static str {
        match self {
            Hold::Ended { .. } => "ended",
            Hold::Cancelled => "cancelled",
            Hold::NoHost { .. } => "no_host",
            Hold::NoHostAttached { .. } => "no_host_attached",
            Hold::QuotaUsed { .. } => "quota_used",
            Hold::AppQuotaUsed { .. } => "app_quota_used",
            Hold::NeedOtherHosts { .. } => "need_other_hosts",
            Hold::BatchPaused { .. } => "batch_paused",
            Hold::CopiesOut { .. } => "copies_out",
            Hold::AwaitingQuorum { .. } => "awaiting_quorum",
            Hold::Dispatching { .. } => "dispatching",
        }
    }
}

/// "1 host", "2 hosts".
fn hosts(n: u64) -> String {
    if n == 1 { "1 host".to_owned() } else { format!("{n} hosts") }
}

/// "1 unsent copy waits", "3 unsent copies wait".
fn unsent(n: u64) -> String {
    if n == 1 { "1 unsent copy waits".to_owned() } else { format!("{n} unsent copies wait") }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Ended { done, failed } => {
                write!(f, "every work unit ended ({done} done, {failed} failed): nothing more will run")
            }
            Hold::Cancelled => f.write_str("the project was cancelled: nothing more will run"),
            Hold::NoHost { unsent: n } => write!(
                f,
                "{}: no host has registered with this coordinator (start one with `quorum-worker --server URL`)",
                unsent(*n)
            ),
            Hold::NoHostAttached { unsent: n, registered, last_contact } => {
                write!(
                    f,
                    "{}: none of the {} registered has called in the last 10 minutes",
                    unsent(*n),
                    hosts(*registered)
                )?;
                if let Some(at) = last_contact {
                    write!(f, " (last call at {})", at.rfc3339())?;
                }
                Ok(())
            }
            Hold::QuotaUsed { unsent: n, attached } => write!(
                f,
                "{}: the {} attached used their daily quota of results (quotas start again at 00:00 UTC; \
                 validated results double a host's quota)",
                unsent(*n),
                hosts(*attached)
            ),
            Hold::AppQuotaUsed { unsent: n, hosts: h } => write!(
                f,
                "{}: the {} with quota left used their quota for this app today, halved by its errors \
                 (see `quorum errors`)",
                unsent(*n),
                hosts(*h)
            ),
            Hold::NeedOtherHosts { sampled, hosts: h } => write!(
                f,
                "the {sampled} oldest unsent copies are of work units that each of the {} with quota left \
                 (or another host of its account) already holds: they need other hosts",
                hosts(*h)
            ),
            Hold::BatchPaused { project, batch, unsent: n, reason } => write!(
                f,
                "batch {batch} is paused ({} in it): {reason} (see `quorum errors {project} --batch {batch}`, \
                 then `quorum resume {project} --batch {batch}`)",
                if *n == 1 { "1 unsent copy waits".to_owned() } else { format!("{n} unsent copies wait") }
            ),
            Hold::CopiesOut { in_progress, next_deadline } => {
                write!(f, "nothing is unsent: {in_progress} copies are in progress on hosts")?;
                if let Some(at) = next_deadline {
                    write!(
                        f,
                        " (the first deadline is {}; copies not reported by theirs go to other hosts)",
                        at.rfc3339()
                    )?;
                }
                Ok(())
            }
            Hold::AwaitingQuorum { reported } => {
                write!(f, "{reported} reported successes wait for other copies of their work units to be compared")
            }
            Hold::Dispatching { unsent: n, hosts: h } => {
                write!(f, "{}: they go out as the {} attached with quota left ask for work", unsent(*n), hosts(*h))
            }
        }
    }
}

/// What holds a project with these facts, most decisive first; empty never:
/// a project either has open work held by something or has ended.
pub fn explain(facts: &Facts) -> Vec<Hold> {
    if facts.cancelled {
        return vec![Hold::Cancelled];
    }
    if facts.work_units_open == 0 {
        return vec![Hold::Ended { done: facts.work_units_done, failed: facts.work_units_failed }];
    }
    let mut holds = Vec::new();
    let n = facts.unsent_active;
    if n > 0 {
        holds.push(if facts.hosts_registered == 0 {
            Hold::NoHost { unsent: n }
        } else if facts.hosts_attached == 0 {
            Hold::NoHostAttached { unsent: n, registered: facts.hosts_registered, last_contact: facts.last_contact }
        } else if facts.hosts_with_quota == 0 {
            Hold::QuotaUsed { unsent: n, attached: facts.hosts_attached }
        } else if facts.hosts_with_app_quota == 0 {
            Hold::AppQuotaUsed { unsent: n, hosts: facts.hosts_with_quota }
        } else if facts.sampled > 0 && facts.takeable == 0 {
            Hold::NeedOtherHosts { sampled: facts.sampled, hosts: facts.hosts_with_app_quota }
        } else {
            Hold::Dispatching { unsent: n, hosts: facts.hosts_with_app_quota }
        });
    }
    for (batch, unsent, reason) in &facts.paused {
        holds.push(Hold::BatchPaused {
            project: facts.project.clone(),
            batch: *batch,
            unsent: *unsent,
            reason: reason.clone(),
        });
    }
    if n == 0 && facts.in_progress > 0 {
        holds.push(Hold::CopiesOut { in_progress: facts.in_progress, next_deadline: facts.next_deadline });
    }
    if facts.reported > 0 {
        holds.push(Hold::AwaitingQuorum { reported: facts.reported });
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with 10 open work units, 10 unsent copies in active
    /// batches, and one attached host that may take them.
    fn open() -> Facts {
        Facts {
            work_units_total: 10,
            work_units_open: 10,
            unsent_active: 10,
            hosts_registered: 1,
            last_contact: Some(Timestamp(1_000)),
            hosts_attached: 1,
            hosts_with_quota: 1,
            hosts_with_app_quota: 1,
            takeable: 10,
            sampled: 10,
            ..Facts::default()
        }
    }

    fn kinds(facts: &Facts) -> Vec<&'static str> {
        explain(facts).iter().map(Hold::kind).collect()
    }

    #[test]
    fn hosts_hold_unsent_copies_in_order_of_what_is_missing() {
        let with = |change: fn(&mut Facts)| {
            let mut facts = open();
            change(&mut facts);
            kinds(&facts)
        };
        assert_eq!(with(|_| {}), ["dispatching"]);
        assert_eq!(with(|f| f.hosts_registered = 0), ["no_host"]);
        assert_eq!(with(|f| f.hosts_attached = 0), ["no_host_attached"]);
        assert_eq!(with(|f| f.hosts_with_quota = 0), ["quota_used"]);
        assert_eq!(with(|f| f.hosts_with_app_quota = 0), ["app_quota_used"]);
        assert_eq!(with(|f| f.takeable = 0), ["need_other_hosts"]);
        // No host at all comes first, whatever else is zero.
        assert_eq!(
            with(|f| {
                f.hosts_registered = 0;
                f.hosts_attached = 0;
                f.hosts_with_quota = 0;
            }),
            ["no_host"]
        );
    }

    #[test]
    fn paused_batches_copies_out_and_waiting_successes() {
        let mut facts = open();
        facts.unsent_active = 0;
        facts.project = "p".to_owned();
        facts.paused = vec![(2, 6, "9 of 10 results were errors".to_owned())];
        facts.in_progress = 3;
        facts.next_deadline = Some(Timestamp(86_400_000));
        facts.reported = 1;
        let holds = explain(&facts);
        assert_eq!(holds.iter().map(Hold::kind).collect::<Vec<_>>(), ["batch_paused", "copies_out", "awaiting_quorum"]);
        let text = holds[0].to_string();
        assert!(text.starts_with("batch 2 is paused (6 unsent copies wait in it): 9 of 10"), "{text}");
        assert!(text.contains("quorum resume p --batch 2"), "{text}");
        assert!(holds[1].to_string().contains("1970-01-02T00:00:00"), "{}", holds[1]);
        // Paused copies do not hide unsent active ones.
        facts.unsent_active = 4;
        assert_eq!(kinds(&facts), ["dispatching", "batch_paused", "awaiting_quorum"]);
    }

    #[test]
    fn ended_and_cancelled_projects_say_so() {
        let mut facts = open();
        facts.work_units_open = 0;
        facts.work_units_done = 9;
        facts.work_units_failed = 1;
        let holds = explain(&facts);
        assert_eq!(holds, [Hold::Ended { done: 9, failed: 1 }]);
        assert!(holds[0].to_string().starts_with("every work unit ended (9 done, 1 failed)"), "{}", holds[0]);
        facts.cancelled = true;
        assert_eq!(kinds(&facts), ["cancelled"]);
    }

    #[test]
    fn messages_count_in_words() {
        let one = Hold::QuotaUsed { unsent: 1, attached: 1 }.to_string();
        assert!(one.starts_with("1 unsent copy waits: the 1 host attached used"), "{one}");
        let many = Hold::NoHostAttached { unsent: 5, registered: 2, last_contact: None }.to_string();
        assert_eq!(many, "5 unsent copies wait: none of the 2 hosts registered has called in the last 10 minutes");
    }
}
