-- Random seeds derive from stable names, not database ids, and are stored so
-- that they never change (issue 11).
-- projects.seed: the project seed (the manifest's `seed`, else derived from
-- the project's name); NULL for projects created before: derived from the
-- name when work units are added to them.
-- work_units.random_seed: the seed every copy of the work unit is given (a
-- u64 stored as its two's-complement i64); NULL for work units created
-- before, which keep the id-derived seed their copies were always given.
ALTER TABLE projects ADD COLUMN seed INTEGER;
ALTER TABLE work_units ADD COLUMN random_seed INTEGER;
