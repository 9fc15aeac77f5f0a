-- Errors blamed on their cause, quotas per host and app, newcomers earn trust
-- (server/src/domain/trust.rs, batch.rs).

-- A host's quota for one app (keyed by the app's module digest, as BOINC keeps
-- one per host and app version): errors in an app reduce what the host gets of
-- that app only. A host without a row for an app has no limit but its own.
CREATE TABLE host_app_quotas (
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    app_digest    TEXT NOT NULL,
    daily_quota   INTEGER NOT NULL,
    results_today INTEGER NOT NULL,            -- results of the app sent on quota_day
    quota_day     INTEGER NOT NULL,            -- days since the Unix epoch
    PRIMARY KEY (host_id, app_digest)
) WITHOUT ROWID;

-- The peer address the host registered from ('' = unknown). A new host
-- inherits the punished quota of its account's hosts and of hosts from its
-- address that never had a result validated.
ALTER TABLE hosts ADD COLUMN address TEXT NOT NULL DEFAULT '';
CREATE INDEX hosts_address ON hosts(address) WHERE address != '';

-- A batch's error watch: the distinct hosts that reported an error since the
-- batch was created or resumed, each with its first error message, so that a
-- batch pauses only on errors from several hosts.
CREATE TABLE batch_error_hosts (
    batch_id      INTEGER NOT NULL REFERENCES batches(id),
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    error_message TEXT NOT NULL,
    PRIMARY KEY (batch_id, host_id)
);
