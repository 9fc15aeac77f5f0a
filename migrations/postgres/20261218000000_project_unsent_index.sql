-- A project's unsent copies in id order, for "why is nothing running?"
-- (`store::holds`): how many wait and a sample of the oldest, read without
-- walking the project's other copies nor other projects' unsent ones.
CREATE INDEX results_project_unsent ON results(project_id, id) WHERE server_state = 'unsent';
