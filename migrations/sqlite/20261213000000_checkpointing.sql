-- Whether a project's apps keep checkpoints (issue 17): only they get a
-- /checkpoint directory. Projects created before keep theirs (default 1);
-- new ones say (the manifest's `checkpointing`, false unless given).
ALTER TABLE projects ADD COLUMN checkpointing INTEGER NOT NULL DEFAULT 1;
