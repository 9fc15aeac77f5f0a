-- A client error its host gave back unfinished (detach, abort, a deadline
-- it could not meet): no error of the app or the input, so it counts toward
-- no max_error_results and no batch error watch (ResultReport.given_back).
ALTER TABLE results ADD COLUMN given_back INTEGER NOT NULL DEFAULT 0;
