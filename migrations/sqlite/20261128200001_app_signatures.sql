-- Signed apps: the ed25519 signature of a project's app module (over the
-- 32 bytes of its SHA-256 digest) and the project's public key, both NULL for
-- an unsigned project. Kept per project: two projects may share a module and
-- sign it with different keys.
ALTER TABLE projects ADD COLUMN app_signature BLOB;
ALTER TABLE projects ADD COLUMN app_public_key BLOB;
