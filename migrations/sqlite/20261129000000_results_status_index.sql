-- A project's status counts its results by (server_state, outcome,
-- validate_state). With these columns in the index, the count reads the
-- index in order: no table rows, no sort, whatever the project's size.
-- The old index's queries (by project and server state) use its prefix.
DROP INDEX results_project;
CREATE INDEX results_project ON results(project_id, server_state, outcome, validate_state);
