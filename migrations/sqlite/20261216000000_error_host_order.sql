-- The order in which a batch's erring hosts were recorded, as a column of
-- its own (it was SQLite's rowid, which PostgreSQL has no equivalent of):
-- the batch's error watch reads them back in this order.
ALTER TABLE batch_error_hosts ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE batch_error_hosts SET seq = rowid;
