-- Coordinator groups (`--server URL,URL`): an attachment (keyed by `server`,
-- the address it first attached with) may have several addresses of one
-- database. addresses: the group as given at the last start, space-separated;
-- address: the one calls went to last (`quorum-worker status` shows it; the
-- next start begins there). Empty: a journal from before groups, where the
-- key is the one address.
ALTER TABLE attachments ADD COLUMN addresses TEXT NOT NULL DEFAULT '';
ALTER TABLE attachments ADD COLUMN address TEXT NOT NULL DEFAULT '';
