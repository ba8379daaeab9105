-- jobchain schema, version 1. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE jobchain_workflows (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'running',
    unique_key       TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    blocked          INTEGER NOT NULL DEFAULT 0,
    pending          INTEGER NOT NULL DEFAULT 0,
    running          INTEGER NOT NULL DEFAULT 0,
    completed        INTEGER NOT NULL DEFAULT 0,
    dead             INTEGER NOT NULL DEFAULT 0,
    cancelled        INTEGER NOT NULL DEFAULT 0,
    -- dead or cancelled jobs whose failure is not tolerated / is tolerated
    failed           INTEGER NOT NULL DEFAULT 0,
    tolerated        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE UNIQUE INDEX jobchain_workflows_unique ON jobchain_workflows (unique_key)
    WHERE unique_key IS NOT NULL AND state = 'running';
CREATE INDEX jobchain_workflows_finished ON jobchain_workflows (finished_at)
    WHERE state <> 'running';

CREATE TABLE jobchain_jobs (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    queue          TEXT NOT NULL,
    payload        TEXT NOT NULL,
    priority       INTEGER NOT NULL,
    state          TEXT NOT NULL,
    run_at         INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL,
    attempt_budget INTEGER NOT NULL,
    errors         TEXT NOT NULL DEFAULT '[]',
    output         TEXT,
    workflow_id    TEXT REFERENCES jobchain_workflows (id) ON DELETE CASCADE,
    step           TEXT,
    parent_id      INTEGER,
    unique_key     TEXT,
    optional       INTEGER NOT NULL DEFAULT 0,
    waiting_for    INTEGER NOT NULL DEFAULT 0,
    worker         TEXT,
    lease_until    INTEGER,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    cancel_reason  TEXT,
    cancelled_by   INTEGER
);

-- The claim reads exactly this index; only pending jobs are in it.
CREATE INDEX jobchain_jobs_claim ON jobchain_jobs (queue, priority DESC, run_at, id)
    WHERE state = 'pending';
CREATE INDEX jobchain_jobs_lease ON jobchain_jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobchain_jobs_unique ON jobchain_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('blocked', 'pending', 'running');
CREATE INDEX jobchain_jobs_workflow ON jobchain_jobs (workflow_id, id) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobchain_jobs_dead ON jobchain_jobs (id) WHERE state = 'dead';
CREATE INDEX jobchain_jobs_finished ON jobchain_jobs (finished_at)
    WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled');

CREATE TABLE jobchain_dependencies (
    job_id     INTEGER NOT NULL REFERENCES jobchain_jobs (id) ON DELETE CASCADE,
    depends_on INTEGER NOT NULL REFERENCES jobchain_jobs (id) ON DELETE CASCADE,
    policy     TEXT NOT NULL,
    PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX jobchain_dependencies_reverse ON jobchain_dependencies (depends_on, job_id);

-- Workflow counts are kept by triggers, so every statement that changes a job's state
-- keeps its workflow's record current in the same transaction.
CREATE TRIGGER jobchain_jobs_counts_insert AFTER INSERT ON jobchain_jobs
WHEN NEW.workflow_id IS NOT NULL
BEGIN
    UPDATE jobchain_workflows SET
        blocked = blocked + (NEW.state = 'blocked'),
        pending = pending + (NEW.state = 'pending'),
        running = running + (NEW.state = 'running'),
        state = 'running',
        finished_at = NULL
    WHERE id = NEW.workflow_id;
END;

CREATE TRIGGER jobchain_jobs_counts_update AFTER UPDATE OF state ON jobchain_jobs
WHEN NEW.workflow_id IS NOT NULL AND OLD.state <> NEW.state
BEGIN
    UPDATE jobchain_workflows SET
        blocked   = blocked   + (NEW.state = 'blocked')   - (OLD.state = 'blocked'),
        pending   = pending   + (NEW.state = 'pending')   - (OLD.state = 'pending'),
        running   = running   + (NEW.state = 'running')   - (OLD.state = 'running'),
        completed = completed + (NEW.state = 'completed') - (OLD.state = 'completed'),
        dead      = dead      + (NEW.state = 'dead')      - (OLD.state = 'dead'),
        cancelled = cancelled + (NEW.state = 'cancelled') - (OLD.state = 'cancelled'),
        failed    = failed
                    + (NEW.state IN ('dead', 'cancelled') AND NEW.optional = 0)
                    - (OLD.state IN ('dead', 'cancelled') AND OLD.optional = 0),
        tolerated = tolerated
                    + (NEW.state IN ('dead', 'cancelled') AND NEW.optional = 1)
                    - (OLD.state IN ('dead', 'cancelled') AND OLD.optional = 1)
    WHERE id = NEW.workflow_id;
    UPDATE jobchain_workflows SET
        state = CASE
            WHEN blocked + pending + running > 0 THEN 'running'
            WHEN cancel_requested = 1 THEN 'cancelled'
            WHEN failed > 0 THEN 'failed'
            ELSE 'completed' END,
        finished_at = CASE
            WHEN blocked + pending + running > 0 THEN NULL
            ELSE coalesce(finished_at, NEW.finished_at) END
    WHERE id = NEW.workflow_id;
END;

CREATE TRIGGER jobchain_jobs_counts_delete AFTER DELETE ON jobchain_jobs
WHEN OLD.workflow_id IS NOT NULL
BEGIN
    UPDATE jobchain_workflows SET
        blocked   = blocked   - (OLD.state = 'blocked'),
        pending   = pending   - (OLD.state = 'pending'),
        running   = running   - (OLD.state = 'running'),
        completed = completed - (OLD.state = 'completed'),
        dead      = dead      - (OLD.state = 'dead'),
        cancelled = cancelled - (OLD.state = 'cancelled'),
        failed    = failed    - (OLD.state IN ('dead', 'cancelled') AND OLD.optional = 0),
        tolerated = tolerated - (OLD.state IN ('dead', 'cancelled') AND OLD.optional = 1)
    WHERE id = OLD.workflow_id;
END;
