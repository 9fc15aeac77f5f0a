-- The worker's journal: what it must not forget across crashes and reboots.
-- Append-only: later changes are new migration files.

-- One row per coordinator this worker has been attached to.
CREATE TABLE attachments (
    server TEXT PRIMARY KEY NOT NULL,
    -- From RegisterHost; NULL until registered.
    host_id INTEGER,
    -- Secret (the journal file is readable by its owner only).
    token TEXT,
    -- Last known counters from GetHost, for `quorum-worker status`.
    total_credit REAL NOT NULL DEFAULT 0,
    n_valid INTEGER NOT NULL DEFAULT 0,
    n_invalid INTEGER NOT NULL DEFAULT 0,
    n_error INTEGER NOT NULL DEFAULT 0,
    -- The share given on the command line at the last start.
    resource_share REAL NOT NULL DEFAULT 100,
    -- Fuel this worker spent on the coordinator's tasks (decayed: see schedule.rs).
    usage REAL NOT NULL DEFAULT 0,
    usage_at_ms INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row per result (task) received. state:
--   received: queued, not started yet (or started and interrupted: see checkpoints);
--   running:  on a core now (after a crash: interrupted);
--   finished: done, report below not yet accepted by the coordinator;
--   reported: accepted; kept a day for `quorum-worker status`, without blobs.
CREATE TABLE tasks (
    server TEXT NOT NULL,
    result_id INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('received', 'running', 'finished', 'reported')),
    -- The Assignment message (protobuf), NULL once reported.
    assignment BLOB,
    project TEXT NOT NULL,
    work_unit_name TEXT NOT NULL,
    app_digest TEXT NOT NULL,
    deadline_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    -- Order of arrival, for fair tie-breaking.
    seq INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    -- Fuel of earlier segments whose progress the checkpoint keeps.
    fuel_before INTEGER NOT NULL DEFAULT 0,
    -- Fuel of the running segment, saved every few seconds.
    fuel_progress INTEGER NOT NULL DEFAULT 0,
    -- The ResultReport message (protobuf), while finished.
    report BLOB,
    -- The outcome in words, for status: "success", "client error: ...".
    outcome TEXT,
    PRIMARY KEY (server, result_id)
) STRICT;

CREATE INDEX tasks_by_state ON tasks (state);

-- What the worker learnt about each app: fuel per task and this host's speed.
CREATE TABLE apps (
    app_digest TEXT PRIMARY KEY NOT NULL,
    -- Moving average of the fuel of a whole task.
    fuel_per_task REAL NOT NULL,
    -- Moving average of fuel per second of active run time on this host.
    fuel_per_second REAL NOT NULL
) STRICT;

-- Key-value settings: paused (0/1), pid of the running worker, cpus, cpu_limit.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
