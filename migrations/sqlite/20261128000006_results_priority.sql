-- Dispatch order (priority first, then age) read straight from an index of
-- unsent results, instead of sorting the backlog on every request: each copy
-- carries its work unit's effective priority (the batch's, else the project's).
ALTER TABLE results ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
DROP INDEX results_unsent;
CREATE INDEX results_unsent ON results(priority DESC, id) WHERE server_state = 'unsent';
