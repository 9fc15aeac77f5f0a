-- Purging: once a work unit has ended and its canonical result has been read,
-- its input and the outputs of its other copies can be dropped. A copy
-- reported after that is "too late".
ALTER TABLE work_units ADD COLUMN purged_at INTEGER;
