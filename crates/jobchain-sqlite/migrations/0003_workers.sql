-- The registry of live workers: one row per running worker, refreshed by its heartbeat,
-- removed at shutdown, and dead once expires_at (milliseconds since the epoch) has passed.
CREATE TABLE jobchain_workers (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    queues     TEXT NOT NULL,   -- JSON array of queue names
    kinds      TEXT NOT NULL,   -- JSON array of kinds
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

