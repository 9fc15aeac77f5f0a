-- The scheduler's frontier epoch, one row: a paused batch resumed moves it
-- on, and every coordinator of the database forgets its frontiers (where
-- each host's walk through the unsent copies starts) when it sees it move,
-- since the resumed copies may lie behind them.
CREATE TABLE scheduler_state (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    frontier_epoch BIGINT NOT NULL
);
INSERT INTO scheduler_state (id, frontier_epoch) VALUES (1, 0);
