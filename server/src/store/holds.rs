//! The facts behind "why is nothing running?" (`domain::holds`): one
//! project's unsent, paused, out and reported copies, and what the attached
//! hosts may still take, read in one read transaction so they agree.

use std::collections::HashMap;

use super::backend::{query, query_scalar};
use super::rows::{self, u32_column, u64_column};
use super::{Result, Store};
use crate::domain::holds::{self, Facts, Hold};
use crate::domain::names::ProjectName;
use crate::domain::trust::{self, AppQuota, Quota};
use crate::domain::{Timestamp, scheduler};

impl Store {
    /// What holds `project`'s open work as of `now`, most decisive first.
    pub async fn holds(&self, project: &ProjectName, now: Timestamp) -> Result<Vec<Hold>> {
        Ok(holds::explain(&self.hold_facts(project, now).await?))
    }

    async fn hold_facts(&self, project: &ProjectName, now: Timestamp) -> Result<Facts> {
        let mut tx = self.pool.begin().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        let row =
            query("SELECT state, app_digest FROM projects WHERE id = ?").bind(project_id).fetch_one(&mut tx).await?;
        let app_digest: String = row.try_get("app_digest")?;
        let mut facts = Facts {
            project: project.as_str().to_owned(),
            cancelled: row.try_get::<String, _>("state")? == "cancelled",
            ..Facts::default()
        };

        for row in query("SELECT state, COUNT(*) AS n FROM work_units WHERE project_id = ? GROUP BY state")
            .bind(project_id)
            .fetch_all(&mut tx)
            .await?
        {
            let n = u64_column(&row, "n")?;
            facts.work_units_total += n;
            match row.try_get::<String, _>("state")?.as_str() {
                "open" => facts.work_units_open += n,
                "done" => facts.work_units_done += n,
                _ => facts.work_units_failed += n,
            }
        }

        // Unsent copies: all of the project's (counted from an index alone),
        // then those of its paused batches one by one (rare, and small
        // tables), the rest being in active batches or none.
        let unsent: i64 = query_scalar("SELECT COUNT(*) FROM results WHERE project_id = ? AND server_state = 'unsent'")
            .bind(project_id)
            .fetch_one(&mut tx)
            .await?;
        let mut unsent = u64::try_from(unsent).unwrap_or(0);
        for row in query(
            "SELECT b.id AS batch_id, b.pause_reason, (SELECT COUNT(*) FROM work_units w JOIN results r \
             ON r.work_unit_id = w.id WHERE w.batch_id = b.id AND r.server_state = 'unsent') AS n \
             FROM batches b WHERE b.project_id = ? AND b.state = 'paused' ORDER BY b.id",
        )
        .bind(project_id)
        .fetch_all(&mut tx)
        .await?
        {
            let n = u64_column(&row, "n")?;
            if n == 0 {
                continue;
            }
            unsent = unsent.saturating_sub(n);
            let reason: Option<String> = row.try_get("pause_reason")?;
            let reason = reason.filter(|reason| !reason.is_empty()).unwrap_or_else(|| "no reason given".to_owned());
            facts.paused.push((row.try_get("batch_id")?, n, reason));
        }
        facts.unsent_active = unsent;

        let row = query(
            "SELECT COUNT(*) AS n, MIN(deadline) AS next_deadline FROM results \
             WHERE project_id = ? AND server_state = 'in_progress'",
        )
        .bind(project_id)
        .fetch_one(&mut tx)
        .await?;
        facts.in_progress = u64_column(&row, "n")?;
        facts.next_deadline = row.try_get::<Option<i64>, _>("next_deadline")?.map(Timestamp);
        let row = query(
            "SELECT COUNT(*) AS n FROM results r JOIN work_units w ON w.id = r.work_unit_id \
             WHERE r.project_id = ? AND w.state = 'open' AND r.server_state = 'over' \
             AND r.outcome = 'success' AND r.validate_state = 'pending'",
        )
        .bind(project_id)
        .fetch_one(&mut tx)
        .await?;
        facts.reported = u64_column(&row, "n")?;

        // The hosts: registered, attached, and what the attached may take.
        let row = query("SELECT COUNT(*) AS n, MAX(last_contact_at) AS last FROM hosts").fetch_one(&mut tx).await?;
        facts.hosts_registered = u64_column(&row, "n")?;
        facts.last_contact = row.try_get::<Option<i64>, _>("last")?.map(Timestamp);
        let attached = query(
            "SELECT id, consecutive_valid, daily_quota, results_today, quota_day FROM hosts WHERE last_contact_at >= ?",
        )
        .bind(now.0 - scheduler::ATTACHED_MS)
        .fetch_all(&mut tx)
        .await?;
        let mut app_quotas: HashMap<i64, AppQuota> = HashMap::new();
        for row in query(
            "SELECT q.host_id, q.daily_quota, q.results_today, q.quota_day FROM host_app_quotas q \
             JOIN hosts h ON h.id = q.host_id WHERE q.app_digest = ? AND h.last_contact_at >= ?",
        )
        .bind(&app_digest)
        .bind(now.0 - scheduler::ATTACHED_MS)
        .fetch_all(&mut tx)
        .await?
        {
            let quota = Quota {
                daily: u32_column(&row, "daily_quota")?,
                used: u32_column(&row, "results_today")?,
                day: row.try_get("quota_day")?,
            };
            app_quotas.insert(row.try_get("host_id")?, AppQuota(quota));
        }
        let mut able = Vec::new();
        for row in &attached {
            let host = rows::host_trust(row)?;
            facts.hosts_attached += 1;
            if host.quota.remaining_today(now) == 0 {
                continue;
            }
            facts.hosts_with_quota += 1;
            let id: i64 = row.try_get("id")?;
            if trust::remaining(&host, app_quotas.get(&id), now) > 0 {
                facts.hosts_with_app_quota += 1;
                able.push(id);
            }
        }

        if facts.unsent_active > 0 && !able.is_empty() {
            // The oldest unsent copies in active batches, and how many of them
            // some able host may take: neither it nor its account holds one.
            // The able hosts' ids are integers read from the database, written
            // into the statement (one shape per call: a rare diagnostic read).
            let able: Vec<String> = able.iter().map(i64::to_string).collect();
            let row = query(format!(
                "WITH sample AS (SELECT r.work_unit_id FROM results r JOIN work_units w ON w.id = r.work_unit_id \
                 LEFT JOIN batches b ON b.id = w.batch_id WHERE r.project_id = ?1 AND r.server_state = 'unsent' \
                 AND (b.id IS NULL OR b.state = 'active') ORDER BY r.id LIMIT ?2), \
                 able AS (SELECT h.id, h.account FROM hosts h WHERE h.id IN ({})) \
                 SELECT COUNT(*) AS sampled, COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM able a WHERE NOT EXISTS ( \
                 SELECT 1 FROM results o JOIN hosts oh ON oh.id = o.host_id WHERE o.work_unit_id = s.work_unit_id \
                 AND (o.host_id = a.id OR (a.account != '' AND oh.account = a.account)))) THEN 1 ELSE 0 END), 0) \
                 AS takeable FROM sample s",
                able.join(", ")
            ))
            .persistent(false)
            .bind(project_id)
            .bind(holds::TAKEABLE_SAMPLE)
            .fetch_one(&mut tx)
            .await?;
            facts.sampled = u64_column(&row, "sampled")?;
            facts.takeable = u64_column(&row, "takeable")?;
        }
        tx.rollback().await?;
        Ok(facts)
    }
}
