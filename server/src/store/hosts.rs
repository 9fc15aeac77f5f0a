//! Host rows changed inside one transaction: read once, changed in memory
//! (trust and counters after lifecycle events, turnaround, quota, last
//! contact), written back with one statement. The scheduler's group of calls
//! and every lifecycle transition go through it, so a group touches the
//! `hosts` table twice whatever it does to them.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::{self, int};
use super::{Result, bulk};
use crate::domain::lifecycle::HostEvent;
use crate::domain::trust::HostTrust;
use crate::domain::{HostId, Timestamp, batch};

/// How stale a host's recorded last contact may get before a call updates it.
const CONTACT_RESOLUTION_MS: i64 = 60_000;

/// A host's row as read, and what changed since.
pub(super) struct HostRow {
    /// The volunteer account owning the host; empty when it stands alone.
    pub account: String,
    /// Moving average of its turnaround.
    pub turnaround: Option<u64>,
    pub trust: HostTrust,
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
    /// Reads the hosts among `ids` not read yet (ids of hosts that do not
    /// exist are left out).
    pub async fn load(&mut self, tx: &mut Transaction<'_, Sqlite>, ids: impl IntoIterator<Item = i64>) -> Result<()> {
        let mut ids: Vec<i64> = ids.into_iter().filter(|id| !self.0.contains_key(id)).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(bulk::CHUNK) {
            let mut query = QueryBuilder::new(concat!(
                "SELECT id, account, avg_turnaround_ms, last_contact_at, ",
                rows::host_trust_columns!(),
                " FROM hosts WHERE id IN "
            ));
            bulk::push_list(&mut query, chunk);
            for row in query.build().fetch_all(&mut **tx).await? {
                let host = HostRow {
                    account: row.try_get("account")?,
                    turnaround: rows::optional_u64(&row, "avg_turnaround_ms")?,
                    trust: rows::host_trust(&row)?,
                    last_contact: row.try_get("last_contact_at")?,
                    counts: [0; 4],
                    credit: 0.0,
                    changed: false,
                };
                self.0.insert(row.try_get("id")?, host);
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
    pub fn apply(&mut self, events: &[(HostId, HostEvent)]) {
        for (host, event) in events {
            let Some(row) = self.get_mut(*host) else { continue };
            row.trust.apply(event);
            match event {
                HostEvent::Valid { credit, .. } => {
                    row.counts[0] += 1;
                    row.credit += *credit;
                }
                HostEvent::Invalid => row.counts[1] += 1,
                HostEvent::ClientError => row.counts[2] += 1,
                HostEvent::NoReply => row.counts[3] += 1,
            }
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

    /// Counts `n` results sent to `host` at `now` against its daily quota.
    pub fn record_sent(&mut self, host: HostId, n: u32, now: Timestamp) {
        if let Some(row) = self.get_mut(host) {
            row.trust.record_sent(n, now);
        }
    }

    /// Appends to `query` the statements that write every changed host back
    /// (each followed by `; `); returns whether there were any.
    pub fn push_store(self, query: &mut QueryBuilder<Sqlite>) -> bool {
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
                    .push_bind(row.trust.daily_quota)
                    .push_bind(row.trust.results_today)
                    .push_bind(row.trust.quota_day);
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
        !changed.is_empty()
    }

    /// Writes every changed host back.
    pub async fn store(self, tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        let mut query = QueryBuilder::new("");
        if self.push_store(&mut query) {
            query.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Updates hosts' counters and trust records after events on their results,
/// in order: one read and one write for all the hosts concerned.
pub(super) async fn apply_host_events(tx: &mut Transaction<'_, Sqlite>, events: &[(HostId, HostEvent)]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut hosts = HostTable::default();
    hosts.load(tx, events.iter().map(|(host, _)| host.0)).await?;
    hosts.apply(events);
    hosts.store(tx).await
}
