-- Input and output files (issue 14). The bytes of input files live in the
-- coordinator's file store beside the database (DB.files/<digest>); this
-- table records the ones stored, which projects and work units may name.
CREATE TABLE files (
    digest      TEXT PRIMARY KEY,   -- hex SHA-256 of the content
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
-- A project's shared files: every work unit's app sees them as /input/NAME.
CREATE TABLE project_files (
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES files(digest),
    PRIMARY KEY (project_id, name)
);
-- A work unit's own files, besides its project's (names differ from them).
CREATE TABLE work_unit_files (
    work_unit_id INTEGER NOT NULL REFERENCES work_units(id),
    name         TEXT NOT NULL,
    digest       TEXT NOT NULL REFERENCES files(digest),
    PRIMARY KEY (work_unit_id, name)
);
-- Which hosts may download a file: those holding a copy that uses it.
CREATE INDEX project_files_digest ON project_files(digest);
CREATE INDEX work_unit_files_digest ON work_unit_files(digest);
-- The output files a successful result reported (from /output); compared
-- through the result's output_digest, which covers them. Their bytes are
-- here when small, else (data NULL) in the file store under their digest.
CREATE TABLE result_files (
    result_id   INTEGER NOT NULL REFERENCES results(id),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    data        BLOB,
    PRIMARY KEY (result_id, name)
);
-- The project's limits on files, per work unit (NULL: created before
-- files, so the defaults: 1 GiB of inputs, no output files).
ALTER TABLE projects ADD COLUMN input_files_limit_bytes INTEGER;
ALTER TABLE projects ADD COLUMN output_files_limit_bytes INTEGER;
