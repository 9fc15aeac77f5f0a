-- A batch may carry its own replication policy (all fields or none), and
-- work can be prioritised; a failed work unit can be retried, as a new
-- attempt whose copies are counted afresh.

ALTER TABLE projects ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- NULL: the project's policy. Set together, from a checked policy.
ALTER TABLE batches ADD COLUMN min_quorum INTEGER;
ALTER TABLE batches ADD COLUMN target_results INTEGER;
ALTER TABLE batches ADD COLUMN max_error_results INTEGER;
ALTER TABLE batches ADD COLUMN max_total_results INTEGER;
ALTER TABLE batches ADD COLUMN max_success_results INTEGER;
ALTER TABLE batches ADD COLUMN deadline_ms INTEGER;
ALTER TABLE batches ADD COLUMN adaptive_replication INTEGER;
ALTER TABLE batches ADD COLUMN priority INTEGER;

-- Retries: only the copies of the current attempt count in the lifecycle.
ALTER TABLE work_units ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE results ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
