-- Queue records: a paused queue's jobs are not claimed until it is resumed. A queue
-- without a record runs.
CREATE TABLE jobchain_queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
