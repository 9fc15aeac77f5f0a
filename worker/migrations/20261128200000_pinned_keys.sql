-- Signed apps: the public key each project signed its app with, pinned the
-- first time this host ran a signed app of it (per coordinator and project).
-- A module signed by another key, or unsigned, is then refused.
CREATE TABLE pinned_keys (
    server TEXT NOT NULL,
    project TEXT NOT NULL,
    public_key BLOB NOT NULL,
    pinned_ms INTEGER NOT NULL,
    PRIMARY KEY (server, project)
) STRICT;
