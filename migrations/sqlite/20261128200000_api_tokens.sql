-- API tokens of scientists and operators (the `Projects` service). Volunteer
-- hosts keep their own tokens in `hosts`. Only the SHA-256 of a token is
-- stored; a revoked token stays listed with the time it was revoked.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'submit')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- The projects a `submit` token may act on, by name (a project named here
-- may not exist yet: the token may create it).
CREATE TABLE api_token_projects (
    token_id  INTEGER NOT NULL REFERENCES api_tokens (id),
    project   TEXT NOT NULL,
    PRIMARY KEY (token_id, project)
);
