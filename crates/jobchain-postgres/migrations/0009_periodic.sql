-- Periodic jobs: the last tick some worker took, so each tick is enqueued exactly once.
CREATE TABLE __schema__.periodic (
    name      text PRIMARY KEY,
    last_tick timestamptz NOT NULL
);
