-- SQL functions through which any language with a PostgreSQL driver enqueues jobs and
-- starts workflows, in its own transaction: they commit or roll back with it, and idle
-- workers are woken on commit. Documented in docs/cli.md ("Enqueueing from SQL").

CREATE FUNCTION __schema__.add_job(
    kind         text,
    payload      jsonb       DEFAULT '{}',
    queue        text        DEFAULT 'default',
    priority     smallint    DEFAULT 0,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT 5,
    unique_key   text        DEFAULT NULL,
    workflow_id  uuid        DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF add_job.kind IS NULL OR btrim(add_job.kind) = '' THEN
        RAISE EXCEPTION 'jobchain add_job: kind must not be empty: name the handler that runs it'
            USING ERRCODE = '22023';
    END IF;
    IF add_job.queue IS NULL OR btrim(add_job.queue) = '' THEN
        RAISE EXCEPTION 'jobchain add_job: the queue of kind % must not be empty (the default queue is default)', add_job.kind
            USING ERRCODE = '22023';
    END IF;
    IF add_job.max_attempts IS NULL OR add_job.max_attempts < 1 THEN
        RAISE EXCEPTION 'jobchain add_job: max_attempts of kind % must be at least 1', add_job.kind
            USING ERRCODE = '22023';
    END IF;
    IF add_job.payload IS NULL THEN
        RAISE EXCEPTION 'jobchain add_job: the payload of kind % must be JSON, not NULL', add_job.kind
            USING ERRCODE = '22023';
    END IF;
    IF add_job.workflow_id IS NOT NULL THEN
        INSERT INTO __schema__.workflows AS w (id, name) VALUES (add_job.workflow_id, add_job.kind)
        ON CONFLICT (id) DO UPDATE SET state = 'running', finished_at = NULL
        WHERE w.state <> 'running';
    END IF;
    LOOP
        INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, run_at,
            max_attempts, attempt_budget, workflow_id, unique_key)
        VALUES (add_job.kind, add_job.queue, add_job.payload, add_job.priority, 'pending',
            coalesce(add_job.run_at, now()), add_job.max_attempts, add_job.max_attempts,
            add_job.workflow_id, add_job.unique_key)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
            AND state IN ('blocked', 'pending', 'running') DO NOTHING
        RETURNING id INTO new_id;
        EXIT WHEN new_id IS NOT NULL;
        -- A live job holds the key: its id is the answer (unless it just finished).
        SELECT j.id INTO new_id FROM __schema__.jobs j
        WHERE j.unique_key = add_job.unique_key AND j.state IN ('blocked', 'pending', 'running');
        EXIT WHEN new_id IS NOT NULL;
    END LOOP;
    PERFORM pg_notify('jobchain_jobs', btrim('__schema__', '"'));
    RETURN new_id;
END
$$;

-- A dynamic workflow: its record and its first job. With a unique key held by a running
-- workflow, returns that workflow's id and writes nothing.
CREATE FUNCTION __schema__.start_workflow(
    kind         text,
    payload      jsonb    DEFAULT '{}',
    queue        text     DEFAULT 'default',
    priority     smallint DEFAULT 0,
    max_attempts integer  DEFAULT 5,
    unique_key   text     DEFAULT NULL
) RETURNS uuid LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id uuid := gen_random_uuid();
    existing uuid;
BEGIN
    IF start_workflow.kind IS NULL OR btrim(start_workflow.kind) = '' THEN
        RAISE EXCEPTION 'jobchain start_workflow: kind must not be empty: name the handler of the first step'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO __schema__.workflows (id, name, unique_key)
    VALUES (new_id, start_workflow.kind, start_workflow.unique_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state = 'running' DO NOTHING;
    IF NOT FOUND THEN
        SELECT w.id INTO existing FROM __schema__.workflows w
        WHERE w.unique_key = start_workflow.unique_key AND w.state = 'running';
        RETURN existing;
    END IF;
    PERFORM __schema__.add_job(start_workflow.kind, start_workflow.payload,
        start_workflow.queue, start_workflow.priority, NULL, start_workflow.max_attempts,
        NULL, new_id);
    RETURN new_id;
END
$$;
