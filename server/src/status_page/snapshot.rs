//! What the status page shows, as one value: [`Snapshot`], read from the
//! store's existing views (`project_status`, the numbers of the ProjectStatus
//! RPC; `error_groups`, those of ListErrors; `list_hosts`, those of
//! ListHosts) and serialised as `GET /status.json`. The projects' fields are
//! those of `quorum status --json`, so a script can read either.

use serde::Serialize;

use super::throughput::{self, Point, Throughput};
use crate::domain::names::ProjectName;
use crate::domain::{Timestamp, scheduler};
use crate::store::{self, Store};

/// Error groups shown per project (the most frequent).
pub const ERROR_GROUPS_PER_PROJECT: u32 = 5;

/// Hosts listed (the latest in contact first); the counts cover them all.
pub const HOSTS_LISTED: usize = 100;

/// Everything the page shows, at `generated_unix_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_unix_ms: i64,
    /// Every project, by id, as `quorum status --json` shows it.
    pub projects: Vec<ProjectStatus>,
    /// Every project's failed copies grouped by message, as `quorum errors`
    /// shows them: up to [`ERROR_GROUPS_PER_PROJECT`] groups per project.
    pub errors: Vec<ErrorGroup>,
    pub hosts: Hosts,
    pub throughput: ThroughputSeries,
}

/// The fields of `quorum status --json`'s projects.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectStatus {
    pub name: String,
    pub project_id: i64,
    pub state: String,
    pub app_digest: String,
    pub policy: Policy,
    pub work_units_total: u64,
    pub work_units_open: u64,
    pub work_units_done: u64,
    pub work_units_failed: u64,
    pub results_unsent: u64,
    pub results_in_progress: u64,
    pub results_over: u64,
    pub results_valid: u64,
    pub results_invalid: u64,
    pub results_error: u64,
    pub results_no_reply: u64,
    pub validator: String,
    pub batches: Vec<Batch>,
}

/// The replication policy's fields of `quorum status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub min_quorum: u32,
    pub target_results: u32,
    pub max_error_results: u32,
    pub max_total_results: u32,
    pub deadline_secs: u64,
}

/// A batch, as `quorum status --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub id: i64,
    /// "active" or "paused".
    pub state: String,
    /// Why it is paused; empty while active.
    pub pause_reason: String,
    pub n_work_units: u64,
    pub n_ended: u64,
}

/// One group of a project's failed copies sharing a message.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorGroup {
    pub project: String,
    pub message: String,
    pub n_results: u64,
    pub n_hosts: u64,
    pub n_work_units: u64,
    /// A few of its work units' names, the latest first.
    pub example_work_units: Vec<String>,
    /// When the latest copy of the group was received (0 if unknown).
    pub latest_unix_ms: i64,
}

/// The volunteer hosts: counts over all, and the latest in contact listed.
#[derive(Debug, Clone, Serialize)]
pub struct Hosts {
    pub n_hosts: u64,
    /// Hosts in contact within `active_within_secs`.
    pub n_active: u64,
    /// The scheduler's notion of an attached host (the tail of a batch waits
    /// for these): last contact this recent.
    pub active_within_secs: i64,
    /// Up to [`HOSTS_LISTED`] hosts, the latest in contact first.
    pub list: Vec<Host>,
}

/// One host, as `quorum hosts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub id: i64,
    pub name: String,
    pub account: String,
    pub n_cpus: u32,
    pub active: bool,
    pub last_contact_unix_ms: i64,
    pub n_in_progress: u64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    pub n_no_reply: u64,
    /// Results it may receive per day, over all apps.
    pub daily_quota: u32,
    /// Results sent to it today.
    pub results_today: u32,
    pub total_credit: f64,
}

/// The throughput plot: rates between samples taken in the coordinator.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputSeries {
    pub sample_interval_secs: u64,
    pub window_secs: u64,
    /// The first sample kept (the series starts anew with the process).
    pub since_unix_ms: Option<i64>,
    pub points: Vec<Point>,
}

impl Snapshot {
    /// Reads the store for every part of the page; `throughput` is the
    /// plot's series, taken from the sampler beforehand.
    pub async fn read(store: &Store, throughput: ThroughputSeries, now: Timestamp) -> store::Result<Snapshot> {
        let statuses = store.project_status(None).await?;
        let mut errors = Vec::new();
        for status in statuses.iter().filter(|status| status.results_error > 0) {
            let name = ProjectName::parse(&status.name)
                .map_err(|error| store::Error::Corrupt { table: "projects", detail: error.to_string() })?;
            let groups = store.error_groups(&name, None, ERROR_GROUPS_PER_PROJECT).await?;
            errors.extend(groups.into_iter().map(|group| ErrorGroup {
                project: status.name.clone(),
                message: group.message,
                n_results: group.n_results,
                n_hosts: group.n_hosts,
                n_work_units: group.n_work_units,
                example_work_units: group.example_work_units,
                latest_unix_ms: group.latest_at.unwrap_or(0),
            }));
        }
        let hosts = hosts(store.list_hosts(now).await?, now);
        Ok(Snapshot {
            generated_unix_ms: now.0,
            projects: statuses.into_iter().map(ProjectStatus::from).collect(),
            errors,
            hosts,
            throughput,
        })
    }
}

impl ThroughputSeries {
    /// The plot's series as `throughput` has it now.
    pub fn of(throughput: &Throughput) -> ThroughputSeries {
        ThroughputSeries {
            sample_interval_secs: throughput::SAMPLE_INTERVAL.as_secs(),
            window_secs: throughput::WINDOW.as_secs(),
            since_unix_ms: throughput.since().map(|since| since.0),
            points: throughput.points(),
        }
    }
}

impl From<store::ProjectStatus> for ProjectStatus {
    fn from(s: store::ProjectStatus) -> ProjectStatus {
        ProjectStatus {
            policy: Policy {
                min_quorum: s.policy.min_quorum(),
                target_results: s.policy.target_results(),
                max_error_results: s.policy.max_error_results(),
                max_total_results: s.policy.max_total_results(),
                deadline_secs: s.policy.deadline_ms() / 1000,
            },
            batches: s
                .batches
                .into_iter()
                .map(|b| Batch {
                    id: b.id,
                    state: b.state,
                    pause_reason: b.pause_reason.unwrap_or_default(),
                    n_work_units: b.n_work_units,
                    n_ended: b.n_ended,
                })
                .collect(),
            name: s.name,
            project_id: s.id,
            state: s.state,
            app_digest: s.app_digest,
            work_units_total: s.work_units_total,
            work_units_open: s.work_units_open,
            work_units_done: s.work_units_done,
            work_units_failed: s.work_units_failed,
            results_unsent: s.results_unsent,
            results_in_progress: s.results_in_progress,
            results_over: s.results_over,
            results_valid: s.results_valid,
            results_invalid: s.results_invalid,
            results_error: s.results_error,
            results_no_reply: s.results_no_reply,
            validator: s.validator,
        }
    }
}

/// The hosts' counts and the latest [`HOSTS_LISTED`] in contact.
fn hosts(mut all: Vec<store::HostInfo>, now: Timestamp) -> Hosts {
    let active = |host: &store::HostInfo| now.0 - host.last_contact_at <= scheduler::ATTACHED_MS;
    let n_active = all.iter().filter(|host| active(host)).count() as u64;
    let n_hosts = all.len() as u64;
    all.sort_by(|a, b| b.last_contact_at.cmp(&a.last_contact_at).then(a.id.cmp(&b.id)));
    all.truncate(HOSTS_LISTED);
    Hosts {
        n_hosts,
        n_active,
        active_within_secs: scheduler::ATTACHED_MS / 1000,
        list: all
            .into_iter()
            .map(|host| Host {
                active: active(&host),
                id: host.id,
                name: host.name,
                account: host.account,
                n_cpus: host.n_cpus,
                last_contact_unix_ms: host.last_contact_at,
                n_in_progress: host.n_in_progress,
                n_valid: host.n_valid,
                n_invalid: host.n_invalid,
                n_error: host.n_error,
                n_no_reply: host.n_no_reply,
                daily_quota: host.daily_quota,
                results_today: host.results_today,
                total_credit: host.total_credit,
            })
            .collect(),
    }
}
