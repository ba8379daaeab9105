-- Periodic jobs: the last tick some worker took, so each tick is enqueued exactly once.
CREATE TABLE jobchain_periodic (
    name      TEXT PRIMARY KEY,
    last_tick INTEGER NOT NULL
);
