-- Reports of resumed tasks and the stderr limit.

-- The task was interrupted and resumed from a checkpoint: its fuel_used counts
-- only the segments it ran, so it is not compared with other copies' fuel and
-- credit comes from a copy that ran in one piece when there is one.
ALTER TABLE results ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0;
-- Largest stderr one run of the app may write (the worker's default: 1 MiB).
ALTER TABLE projects ADD COLUMN stderr_limit_bytes INTEGER NOT NULL DEFAULT 1048576;
