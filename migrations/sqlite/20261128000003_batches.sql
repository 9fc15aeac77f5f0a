-- Batches: the work units added by one submission call. A batch can be paused
-- (automatically when its first results are mostly errors) and its tail gets
-- special care (fast hosts, spare copies).

CREATE TABLE batches (
    id                 INTEGER PRIMARY KEY,
    project_id         INTEGER NOT NULL REFERENCES projects(id),
    state              TEXT NOT NULL,              -- active | paused
    pause_reason       TEXT,
    n_work_units       INTEGER NOT NULL,
    n_ended            INTEGER NOT NULL DEFAULT 0, -- work units done or failed
    n_reported         INTEGER NOT NULL DEFAULT 0, -- results reported (success or error) since created or resumed
    n_errors           INTEGER NOT NULL DEFAULT 0, -- of those, errors
    avg_turnaround_ms  INTEGER,                    -- moving average of dispatch-to-report time
    created_at         INTEGER NOT NULL
);
CREATE INDEX batches_project ON batches(project_id);

ALTER TABLE work_units ADD COLUMN batch_id INTEGER REFERENCES batches(id);
CREATE INDEX work_units_batch ON work_units(batch_id);

-- Whether a spare copy was already sent for this work unit's tail.
ALTER TABLE work_units ADD COLUMN spare_sent INTEGER NOT NULL DEFAULT 0;

-- Moving average of the host's dispatch-to-report time.
ALTER TABLE hosts ADD COLUMN avg_turnaround_ms INTEGER;

-- When the copy was created (it waits unsent from then on).
ALTER TABLE results ADD COLUMN created_at INTEGER;
