-- Workflows that wait. Signals: the first one of a name per workflow wins and is kept
-- (a step reached later consumes it); later ones are counted. Timers: the instant a
-- waiting step (a sleep, or a signal's timeout) is due, fixed when it first ran, so
-- that restarts do not move it. A workflow's result step (NULL: its single sink step).
CREATE TABLE jobchain_signals (
    workflow_id    TEXT NOT NULL,
    name           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    repeats        INTEGER NOT NULL DEFAULT 0,
    last_repeat_at INTEGER,
    PRIMARY KEY (workflow_id, name)
);
CREATE TABLE jobchain_timers (
    job_id INTEGER PRIMARY KEY,
    due_at INTEGER NOT NULL
);
ALTER TABLE jobchain_workflows ADD COLUMN result_step TEXT;
