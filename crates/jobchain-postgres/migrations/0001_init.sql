-- jobchain schema, version 1, in the schema __schema__.

CREATE TABLE __schema__.workflows (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    state            text NOT NULL DEFAULT 'running',
    unique_key       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    blocked          bigint NOT NULL DEFAULT 0,
    pending          bigint NOT NULL DEFAULT 0,
    running          bigint NOT NULL DEFAULT 0,
    completed        bigint NOT NULL DEFAULT 0,
    dead             bigint NOT NULL DEFAULT 0,
    cancelled        bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    tolerated        bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX workflows_unique ON __schema__.workflows (unique_key)
    WHERE unique_key IS NOT NULL AND state = 'running';
CREATE INDEX workflows_finished ON __schema__.workflows (finished_at) WHERE state <> 'running';
CREATE INDEX workflows_created ON __schema__.workflows (created_at DESC, id DESC);

CREATE TABLE __schema__.jobs (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL,
    queue          text NOT NULL,
    payload        jsonb NOT NULL,
    priority       smallint NOT NULL,
    state          text NOT NULL,
    run_at         timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    max_attempts   integer NOT NULL,
    attempt_budget integer NOT NULL,
    errors         jsonb NOT NULL DEFAULT '[]',
    output         jsonb,
    workflow_id    uuid REFERENCES __schema__.workflows (id) ON DELETE CASCADE,
    step           text,
    parent_id      bigint,
    unique_key     text,
    optional       boolean NOT NULL DEFAULT false,
    waiting_for    integer NOT NULL DEFAULT 0,
    worker         text,
    lease_until    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    cancel_reason  text,
    cancelled_by   bigint
);

-- The claim reads exactly this index; only pending jobs are in it.
CREATE INDEX jobs_claim ON __schema__.jobs (queue, priority DESC, run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_lease ON __schema__.jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_unique ON __schema__.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('blocked', 'pending', 'running');
CREATE INDEX jobs_workflow ON __schema__.jobs (workflow_id, id) WHERE workflow_id IS NOT NULL;
CREATE INDEX jobs_dead ON __schema__.jobs (id) WHERE state = 'dead';
CREATE INDEX jobs_finished ON __schema__.jobs (finished_at)
    WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled');
CREATE INDEX jobs_cancelled_by ON __schema__.jobs (cancelled_by) WHERE cancelled_by IS NOT NULL;

CREATE TABLE __schema__.dependencies (
    job_id     bigint NOT NULL REFERENCES __schema__.jobs (id) ON DELETE CASCADE,
    depends_on bigint NOT NULL REFERENCES __schema__.jobs (id) ON DELETE CASCADE,
    policy     text NOT NULL,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX dependencies_reverse ON __schema__.dependencies (depends_on, job_id);

-- Workflow counts are kept by statement-level triggers, so every statement that changes
-- jobs keeps its workflows current in the same transaction. Workflow rows are locked in
-- id order, so concurrent statements cannot deadlock on them.
CREATE FUNCTION __schema__.apply_job_deltas(deltas jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM __schema__.workflows
        WHERE id IN (SELECT (d->>'w')::uuid FROM jsonb_array_elements(deltas) d)
        ORDER BY id FOR UPDATE;
    UPDATE __schema__.workflows w SET
        blocked = w.blocked + d.blocked, pending = w.pending + d.pending,
        running = w.running + d.running, completed = w.completed + d.completed,
        dead = w.dead + d.dead, cancelled = w.cancelled + d.cancelled,
        failed = w.failed + d.failed, tolerated = w.tolerated + d.tolerated,
        state = CASE
            WHEN w.blocked + d.blocked + w.pending + d.pending + w.running + d.running > 0 THEN 'running'
            WHEN w.cancel_requested THEN 'cancelled'
            WHEN w.failed + d.failed > 0 THEN 'failed'
            ELSE 'completed' END,
        finished_at = CASE
            WHEN w.blocked + d.blocked + w.pending + d.pending + w.running + d.running > 0 THEN NULL
            ELSE coalesce(w.finished_at, now()) END
    FROM (
        SELECT (x->>'w')::uuid AS id,
            sum((x->>'blocked')::bigint) AS blocked, sum((x->>'pending')::bigint) AS pending,
            sum((x->>'running')::bigint) AS running, sum((x->>'completed')::bigint) AS completed,
            sum((x->>'dead')::bigint) AS dead, sum((x->>'cancelled')::bigint) AS cancelled,
            sum((x->>'failed')::bigint) AS failed, sum((x->>'tolerated')::bigint) AS tolerated
        FROM jsonb_array_elements(deltas) x GROUP BY 1
    ) d
    WHERE w.id = d.id;
END $$;

CREATE FUNCTION __schema__.job_delta(w uuid, state text, optional boolean, n integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('w', w,
        'blocked', CASE WHEN state = 'blocked' THEN n ELSE 0 END,
        'pending', CASE WHEN state = 'pending' THEN n ELSE 0 END,
        'running', CASE WHEN state = 'running' THEN n ELSE 0 END,
        'completed', CASE WHEN state = 'completed' THEN n ELSE 0 END,
        'dead', CASE WHEN state = 'dead' THEN n ELSE 0 END,
        'cancelled', CASE WHEN state = 'cancelled' THEN n ELSE 0 END,
        'failed', CASE WHEN state IN ('dead', 'cancelled') AND NOT optional THEN n ELSE 0 END,
        'tolerated', CASE WHEN state IN ('dead', 'cancelled') AND optional THEN n ELSE 0 END)
$$;

CREATE FUNCTION __schema__.jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE deltas jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE workflow_id IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_agg(__schema__.job_delta(workflow_id, state, optional, 1)) INTO deltas
        FROM new_rows WHERE workflow_id IS NOT NULL;
    IF deltas IS NOT NULL THEN
        PERFORM __schema__.apply_job_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION __schema__.jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE deltas jsonb;
BEGIN
    -- Most statements touch no workflow job (plain jobs, heartbeats): leave at once.
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE workflow_id IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_agg(d) INTO deltas FROM (
        SELECT __schema__.job_delta(n.workflow_id, n.state, n.optional, 1) AS d
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.workflow_id IS NOT NULL AND o.state <> n.state
        UNION ALL
        SELECT __schema__.job_delta(o.workflow_id, o.state, o.optional, -1)
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE o.workflow_id IS NOT NULL AND o.state <> n.state
    ) x;
    IF deltas IS NOT NULL THEN
        PERFORM __schema__.apply_job_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION __schema__.jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE deltas jsonb;
BEGIN
    SELECT jsonb_agg(__schema__.job_delta(o.workflow_id, o.state, o.optional, -1)) INTO deltas
        FROM old_rows o WHERE o.workflow_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM __schema__.workflows w WHERE w.id = o.workflow_id);
    IF deltas IS NOT NULL THEN
        PERFORM __schema__.apply_job_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON __schema__.jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION __schema__.jobs_inserted();
CREATE TRIGGER jobs_updated AFTER UPDATE ON __schema__.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION __schema__.jobs_updated();
CREATE TRIGGER jobs_deleted AFTER DELETE ON __schema__.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION __schema__.jobs_deleted();
