-- quorum's coordinator schema. Names follow BOINC (shared/BOINC.md).
-- Times are Unix milliseconds. Enumerations are stored as their domain names (TEXT).

-- An app: a WebAssembly module, content-addressed by the SHA-256 of its bytes.
CREATE TABLE apps (
    digest      TEXT PRIMARY KEY NOT NULL,
    module      BLOB NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- A compute project: one app, a replication policy, sandbox limits, a validator.
CREATE TABLE projects (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    app_digest           TEXT NOT NULL REFERENCES apps(digest),
    state                TEXT NOT NULL,            -- active | cancelled
    min_quorum           INTEGER NOT NULL,
    target_results       INTEGER NOT NULL,
    max_error_results    INTEGER NOT NULL,
    max_total_results    INTEGER NOT NULL,
    deadline_ms          INTEGER NOT NULL,         -- BOINC's delay_bound
    fuel_limit           INTEGER NOT NULL,
    memory_limit_bytes   INTEGER NOT NULL,
    output_limit_bytes   INTEGER NOT NULL,
    wall_time_limit_ms   INTEGER NOT NULL,
    validator            TEXT NOT NULL,            -- bitwise
    nan_canonicalization INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);

-- A work unit: one input of a project, its lifecycle state and canonical result.
CREATE TABLE work_units (
    id                  INTEGER PRIMARY KEY,
    project_id          INTEGER NOT NULL REFERENCES projects(id),
    name                TEXT NOT NULL,
    input               BLOB NOT NULL,
    state               TEXT NOT NULL,             -- open | done | failed
    fail_reason         TEXT,                      -- set when failed
    target_results      INTEGER NOT NULL,          -- copies kept alive; raised when inconclusive
    canonical_result_id INTEGER,
    created_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    UNIQUE (project_id, name)
);
CREATE INDEX work_units_project_state ON work_units(project_id, state);

-- A volunteer machine. Only the SHA-256 of its token is stored.
CREATE TABLE hosts (
    id               INTEGER PRIMARY KEY,
    token_hash       TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    n_cpus           INTEGER NOT NULL,
    memory_bytes     INTEGER NOT NULL,
    engine           TEXT NOT NULL,
    os               TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    last_contact_at  INTEGER NOT NULL,
    n_valid          INTEGER NOT NULL DEFAULT 0,
    n_invalid        INTEGER NOT NULL DEFAULT 0,
    n_error          INTEGER NOT NULL DEFAULT 0,
    n_no_reply       INTEGER NOT NULL DEFAULT 0,
    total_credit     REAL NOT NULL DEFAULT 0
);

-- A result: one copy of a work unit, sent (or to be sent) to one host.
CREATE TABLE results (
    id              INTEGER PRIMARY KEY,
    work_unit_id    INTEGER NOT NULL REFERENCES work_units(id),
    project_id      INTEGER NOT NULL REFERENCES projects(id),
    server_state    TEXT NOT NULL,                 -- unsent | in_progress | over
    outcome         TEXT,                          -- set when over
    validate_state  TEXT NOT NULL,                 -- pending | valid | invalid | inconclusive | too_late
    host_id         INTEGER REFERENCES hosts(id),
    sent_at         INTEGER,
    deadline        INTEGER,
    received_at     INTEGER,
    output          BLOB,
    output_digest   TEXT,
    fuel_used       INTEGER,
    run_time_ms     INTEGER,
    stderr_tail     TEXT,
    error_message   TEXT,
    engine          TEXT,
    granted_credit  REAL NOT NULL DEFAULT 0
);
-- Dispatch walks unsent results in id order without scanning the backlog.
CREATE INDEX results_unsent ON results(id) WHERE server_state = 'unsent';
-- The transitioner finds expired deadlines without scanning.
CREATE INDEX results_deadline ON results(deadline) WHERE server_state = 'in_progress';
CREATE INDEX results_work_unit ON results(work_unit_id);
CREATE INDEX results_host ON results(host_id, server_state);
CREATE INDEX results_project ON results(project_id, server_state);
