-- The registry of live workers: one row per running worker, refreshed by its heartbeat,
-- removed at shutdown, and dead once expires_at has passed.
CREATE TABLE __schema__.workers (
    id         text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    queues     text[] NOT NULL,
    kinds      text[] NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
