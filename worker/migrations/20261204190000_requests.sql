-- Requests to the running worker from `quorum-worker detach` and `abort`
-- (which then signal it, SIGHUP): give back one task (result_id) or every
-- task of a coordinator and forget it (result_id 0). The worker deletes a
-- row once it has acted on it.
CREATE TABLE requests (
    kind TEXT NOT NULL CHECK (kind IN ('abort', 'detach')),
    server TEXT NOT NULL,
    result_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, server, result_id)
) STRICT;
