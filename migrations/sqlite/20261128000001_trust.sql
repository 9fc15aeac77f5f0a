-- Lifecycle guarantees: max_success_results, adaptive replication, volunteer
-- accounts, and per-host trust (streak of valid results, daily quota).

-- More successes than this without agreement fails the work unit; 0 means max_total_results.
ALTER TABLE projects ADD COLUMN max_success_results INTEGER NOT NULL DEFAULT 0;
-- Whether a work unit may be accepted on one result from a trusted host.
ALTER TABLE projects ADD COLUMN adaptive_replication INTEGER NOT NULL DEFAULT 0;

-- Set when the work unit is accepted on a single trusted result.
ALTER TABLE work_units ADD COLUMN single_result INTEGER NOT NULL DEFAULT 0;

-- The volunteer account owning the host ('' = the host stands alone).
ALTER TABLE hosts ADD COLUMN account TEXT NOT NULL DEFAULT '';
-- Valid results in a row (replicated validations only).
ALTER TABLE hosts ADD COLUMN consecutive_valid INTEGER NOT NULL DEFAULT 0;
-- Results the host may receive per day; halves on errors and timeouts.
ALTER TABLE hosts ADD COLUMN daily_quota INTEGER NOT NULL DEFAULT 200;
-- Results sent on quota_day (days since the Unix epoch).
ALTER TABLE hosts ADD COLUMN results_today INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN quota_day INTEGER NOT NULL DEFAULT 0;
CREATE INDEX hosts_account ON hosts(account) WHERE account != '';
