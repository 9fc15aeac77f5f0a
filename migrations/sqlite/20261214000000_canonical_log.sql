-- The order in which work units got their canonical result (BOINC's
-- assimilation order), read by StreamCanonicalResults. `seq` grows in commit
-- order (SQLite has one writer and AUTOINCREMENT never reuses a value), so a
-- reader that has seen every row up to seq N misses nothing committed later.
CREATE TABLE canonical_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER NOT NULL REFERENCES projects(id),
    work_unit_id INTEGER NOT NULL REFERENCES work_units(id)
);
CREATE INDEX canonical_log_project ON canonical_log(project_id, seq);

-- Work units that were done before this migration, in the order they ended.
INSERT INTO canonical_log (project_id, work_unit_id)
    SELECT project_id, id FROM work_units WHERE state = 'done' ORDER BY ended_at, id;
