-- Validators beyond bitwise: fuzzy (numbers within a tolerance) and custom
-- (a WebAssembly module stored in `apps` that compares two outputs).

-- For fuzzy: 'whitespace' or 'json'.
ALTER TABLE projects ADD COLUMN fuzzy_format TEXT;
ALTER TABLE projects ADD COLUMN relative_tolerance REAL;
ALTER TABLE projects ADD COLUMN absolute_tolerance REAL;
-- For custom: the validator module's digest.
ALTER TABLE projects ADD COLUMN validator_digest TEXT REFERENCES apps(digest);
