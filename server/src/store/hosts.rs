//! Host rows changed inside one transaction: read once (with the host's
//! quotas per app), changed in memory (trust, quotas and counters after
//! lifecycle events, turnaround, results sent, last contact), written back
//! with one statement per table. The scheduler's group of calls and every
//! lifecycle transition go through it, so a group touches the `hosts` table
//! (and `host_app_quotas`) twice whatever it does to them.

use std::collections::HashMap;

use super::backend::{QueryBuilder, Tx};

use super::rows::{self, int};
use super::{Result, bulk};
use crate::domain::lifecycle::HostEvent;
use crate::domain::trust::{self, AppQuota, HostTrust, Quota};
use crate::domain::{HostId, Timestamp, batch};

/// How stale a host's recorded last contact may get before a call updates it.
const CONTACT_RESOLUTION_MS: i64 = 60_000;

/// An event on one of a host's results, with the app (module digest) the
/// result ran: the host's trust and its quota for that app follow it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct HostAppEvent {
    pub host: HostId,
    pub app: String,
    pub event: HostEvent,
}

/// A host's quota for one app as read, and whether it changed since.
struct AppRow {
    quota: AppQuota,
    changed: bool,
}

/// A host's row as read, and what changed since.
pub(super) struct HostRow {
    /// The volunteer account owning the host; empty when it stands alone.
    pub account: String,
    /// Moving average of its turnaround.
    pub turnaround: Option<u64>,
    pub trust: HostTrust,
    /// Its quotas per app (by module digest), for the apps it has a record of.
    apps: HashMap<String, AppRow>,
    last_contact: i64,
    /// Results valid, invalid, in error and without reply, to add.
    counts: [i64; 4],
    /// Credit to add.
    credit: f64,
    changed: bool,
}

/// The hosts read so far in a transaction, by id.
#[derive(Default)]
pub(super) struct HostTable(HashMap<i64, HostRow>);

impl HostTable {
    /// Reads the hosts among `ids` not read yet, with their quotas per app,
    /// in one query (ids of hosts that do not exist are left out).
    pub async fn load(&mut self, tx: &mut Tx<'_>, ids: impl IntoIterator<Item = i64>) -> Result<()> {
        let mut ids: Vec<i64> = ids.into_iter().filter(|id| !self.0.contains_key(id)).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(bulk::CHUNK) {
            let mut query = QueryBuilder::new(concat!(
                "SELECT h.id, h.account, h.avg_turnaround_ms, h.last_contact_at, ",
                rows::host_trust_columns!(),
                ", q.app_digest, q.daily_quota AS app_daily_quota, q.results_today AS app_results_today, \
                 q.quota_day AS app_quota_day FROM hosts h LEFT JOIN host_app_quotas q ON q.host_id = h.id \
                 WHERE h.id IN "
            ));
            bulk::push_list(&mut query, chunk);
            for row in query.build().fetch_all(&mut *tx).await? {
                let id: i64 = row.try_get("id")?;
                if let std::collections::hash_map::Entry::Vacant(entry) = self.0.entry(id) {
                    entry.insert(HostRow {
                        account: row.try_get("account")?,
                        turnaround: rows::optional_u64(&row, "avg_turnaround_ms")?,
                        trust: rows::host_trust(&row)?,
                        apps: HashMap::new(),
                        last_contact: row.try_get("last_contact_at")?,
                        counts: [0; 4],
                        credit: 0.0,
                        changed: false,
                    });
                }
                if let Some(app) = row.try_get::<Option<String>, _>("app_digest")? {
                    let quota = AppQuota(Quota {
                        daily: rows::u32_column(&row, "app_daily_quota")?,
                        used: rows::u32_column(&row, "app_results_today")?,
                        day: row.try_get("app_quota_day")?,
                    });
                    let host = self.0.get_mut(&id).expect("inserted above");
                    host.apps.insert(app, AppRow { quota, changed: false });
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, host: HostId) -> Option<&HostRow> {
        self.0.get(&host.0)
    }

    fn get_mut(&mut self, host: HostId) -> Option<&mut HostRow> {
        let row = self.0.get_mut(&host.0)?;
        row.changed = true;
        Some(row)
    }

    /// Applies lifecycle events, in order, to hosts read before.
    pub fn apply(&mut self, events: &[HostAppEvent]) {
        for HostAppEvent { host, app, event } in events {
            let Some(row) = self.get_mut(*host) else { continue };
            let host_quota = row.trust.quota.daily;
            let app = row.app_mut(app);
            app.quota.apply(event, host_quota);
            app.changed = true;
            row.trust.apply(event);
            match event {
                HostEvent::Valid { credit, .. } => {
                    row.counts[0] += 1;
                    row.credit += *credit;
                }
                HostEvent::Invalid => row.counts[1] += 1,
                HostEvent::ClientError | HostEvent::Unstarted => row.counts[2] += 1,
                HostEvent::NoReply => row.counts[3] += 1,
                // The error was counted when it was reported.
                HostEvent::HostError => {}
            }
        }
    }

    /// How many more copies `host` may receive today: of `app` (its module
    /// digest), or of any app when `app` is None. Zero for an app means "not
    /// this app now"; zero for any app means nothing more today.
    pub fn remaining(&self, host: HostId, app: Option<&str>, now: Timestamp) -> u32 {
        let Some(row) = self.get(host) else { return 0 };
        let app = app.and_then(|app| row.apps.get(app)).map(|app| &app.quota);
        trust::remaining(&row.trust, app, now)
    }

    /// Counts `n` copies of `app` sent to `host` at `now` against its daily
    /// quota and its quota for the app.
    pub fn record_sent(&mut self, host: HostId, app: &str, n: u32, now: Timestamp) {
        if let Some(row) = self.get_mut(host) {
            row.trust.quota.record_sent(n, now);
            let app = row.app_mut(app);
            app.quota.0.record_sent(n, now);
            app.changed = true;
        }
    }

    /// Records that `host` called at `now`, at most once per `CONTACT_RESOLUTION_MS`.
    pub fn record_contact(&mut self, host: HostId, now: Timestamp) {
        if let Some(row) = self.0.get_mut(&host.0)
            && now.0 - row.last_contact >= CONTACT_RESOLUTION_MS
        {
            row.last_contact = now.0;
            row.changed = true;
        }
    }

    /// Adds a turnaround sample to `host`'s moving average.
    pub fn note_turnaround(&mut self, host: HostId, sample_ms: u64) {
        if let Some(row) = self.get_mut(host) {
            row.turnaround = Some(batch::update_turnaround(row.turnaround, sample_ms));
        }
    }

    /// Appends to `query` the statements that write every changed host and
    /// quota per app back (each followed by `; `); returns whether there were any.
    pub fn push_store(self, query: &mut QueryBuilder) -> bool {
        let mut changed: Vec<(i64, HostRow)> = self.0.into_iter().filter(|(_, row)| row.changed).collect();
        changed.sort_unstable_by_key(|(id, _)| *id);
        for chunk in changed.chunks(bulk::CHUNK) {
            query.push(
                "WITH v(id, last_contact_at, avg_turnaround_ms, n_valid, n_invalid, n_error, n_no_reply, credit, \
                 consecutive_valid, daily_quota, results_today, quota_day) AS (",
            );
            bulk::push_values(query, chunk, 12, |mut values, (id, row)| {
                values
                    .push_bind(*id)
                    .push_bind(row.last_contact)
                    .push_bind(row.turnaround.map(int))
                    .push_bind(row.counts[0])
                    .push_bind(row.counts[1])
                    .push_bind(row.counts[2])
                    .push_bind(row.counts[3])
                    .push_bind(row.credit)
                    .push_bind(row.trust.consecutive_valid)
                    .push_bind(row.trust.quota.daily)
                    .push_bind(row.trust.quota.used)
                    .push_bind(row.trust.quota.day);
            });
            query.push(
                ") UPDATE hosts SET last_contact_at = v.last_contact_at, avg_turnaround_ms = v.avg_turnaround_ms, \
                 n_valid = hosts.n_valid + v.n_valid, n_invalid = hosts.n_invalid + v.n_invalid, \
                 n_error = hosts.n_error + v.n_error, n_no_reply = hosts.n_no_reply + v.n_no_reply, \
                 total_credit = hosts.total_credit + v.credit, consecutive_valid = v.consecutive_valid, \
                 daily_quota = v.daily_quota, results_today = v.results_today, quota_day = v.quota_day \
                 FROM v WHERE hosts.id = v.id; ",
            );
        }
        let mut apps: Vec<(i64, &str, &AppQuota)> = changed
            .iter()
            .flat_map(|(id, row)| {
                row.apps
                    .iter()
                    .filter(|(_, app)| app.changed)
                    .map(move |(digest, app)| (*id, digest.as_str(), &app.quota))
            })
            .collect();
        apps.sort_unstable_by_key(|(id, digest, _)| (*id, *digest));
        for chunk in apps.chunks(bulk::CHUNK) {
            query.push("WITH v(host_id, app_digest, daily_quota, results_today, quota_day) AS (");
            bulk::push_values(query, chunk, 5, |mut values, (id, digest, quota)| {
                values
                    .push_bind(*id)
                    .push_bind(digest.to_string())
                    .push_bind(quota.0.daily)
                    .push_bind(quota.0.used)
                    .push_bind(quota.0.day);
            });
            query.push(
                ") INSERT INTO host_app_quotas (host_id, app_digest, daily_quota, results_today, quota_day) \
                 SELECT * FROM v WHERE v.host_id IS NOT NULL ON CONFLICT (host_id, app_digest) DO UPDATE SET \
                 daily_quota = excluded.daily_quota, results_today = excluded.results_today, \
                 quota_day = excluded.quota_day; ",
            );
        }
        !changed.is_empty()
    }

    /// Writes every changed host back.
    pub async fn store(self, tx: &mut Tx<'_>) -> Result<()> {
        let mut query = QueryBuilder::new("");
        if self.push_store(&mut query) {
            query.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}

impl HostRow {
    /// The host's quota for `app`, a fresh one if it had none.
    fn app_mut(&mut self, app: &str) -> &mut AppRow {
        if !self.apps.contains_key(app) {
            self.apps.insert(app.to_owned(), AppRow { quota: AppQuota::default(), changed: false });
        }
        self.apps.get_mut(app).expect("inserted above")
    }
}

/// Updates hosts' counters, trust records and app quotas after events on
/// their results, in order: one read and one write for all the hosts concerned.
pub(super) async fn apply_host_events(tx: &mut Tx<'_>, events: &[HostAppEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut hosts = HostTable::default();
    hosts.load(tx, events.iter().map(|e| e.host.0)).await?;
    hosts.apply(events);
    hosts.store(tx).await
}
