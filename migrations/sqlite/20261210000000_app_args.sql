-- Command-line arguments and environment variables of apps (issue 14),
-- per project and per work unit; part of the work unit, so every copy gets
-- the same ones. Stored as JSON text: `args` an array of strings, `env` an
-- object from name to value. NULL: none (every project and work unit
-- created before, and those given none).
ALTER TABLE projects ADD COLUMN args TEXT;
ALTER TABLE projects ADD COLUMN env TEXT;
ALTER TABLE work_units ADD COLUMN args TEXT;
ALTER TABLE work_units ADD COLUMN env TEXT;
