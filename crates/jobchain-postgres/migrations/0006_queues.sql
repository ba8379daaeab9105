-- Queue records: a paused queue's jobs are not claimed until it is resumed. A queue
-- without a record runs.
CREATE TABLE __schema__.queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
