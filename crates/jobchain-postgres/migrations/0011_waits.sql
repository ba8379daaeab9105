-- Workflows that wait. Signals: the first one of a name per workflow wins and is kept
-- (a step reached later consumes it); later ones are counted. Timers: the instant a
-- waiting step (a sleep, or a signal's timeout) is due, fixed when it first ran, so
-- that restarts do not move it. A workflow's result step (NULL: its single sink step).
CREATE TABLE __schema__.signals (
    workflow_id    uuid NOT NULL,
    name           text NOT NULL,
    payload        jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    repeats        integer NOT NULL DEFAULT 0,
    last_repeat_at timestamptz,
    PRIMARY KEY (workflow_id, name)
);
CREATE TABLE __schema__.timers (
    job_id bigint PRIMARY KEY,
    due_at timestamptz NOT NULL
);
ALTER TABLE __schema__.workflows ADD COLUMN result_step text;
