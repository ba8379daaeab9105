-- Claims on settle (W8: a step's handler to the next one's took a settle and then a claim,
-- each a round trip with its commit, and a wake-up between them).
--
-- `complete_batch` gains an offer: a queue, the kinds its worker runs there without
-- limits, how many slots it has free, the worker's id and its lease. The jobs that the
-- batch made pending (follow-ups written, dependents released) and that the offer covers
-- are claimed for that worker in the same call, as a claim would: due, the queue not
-- paused, and only if no other due pending job of the queue and kinds comes before them
-- in claim order (priority, then run_at, then id). The worker runs them without a claim
-- of its own. A worker offers only when its last claim of the queue came back short (no
-- backlog, so the checks find the queue's few pending jobs at once) and it is not
-- shutting down. Rows claimed so come back after the completions and the follow-ups, with
-- their columns (`c_*`, as a claim returns them); the others have `c_kind` NULL. One row
-- with `job` NULL counts the jobs the call made pending (in `follow_up`): when all were
-- claimed on settle, the worker need not wake its producers for them.
--
-- The two checks against earlier jobs name the state as a literal: they are meant to use
-- the claim index (a partial index on that state).
--
-- Two savings on the way: the release of dependents is skipped when nothing depends on
-- the batch, and the check for a skipped required dependency (which joins every
-- dependency of a released step: 21 rows for a map step of 20 elements) runs only in a
-- workflow that has a skipped job.
--
-- The function of migration 0014 stays, with its arguments, as a call of this one without
-- an offer: workers of the previous version call it until they are upgraded.
DROP FUNCTION __schema__.complete_batch(bigint[], integer[], text[], integer[], text[], text[],
    text[], int2[], text[], timestamptz[], int8[], int4[], uuid[], text[], int8[], bool[],
    int4[], text[], int8[], text[]);

CREATE FUNCTION __schema__.complete_batch(
    p_ids bigint[], p_attempts integer[], p_outputs text[], f_owner integer[],
    f_kind text[], f_queue text[], f_payload text[], f_priority int2[], f_state text[],
    f_run_at timestamptz[], f_delay_ms int8[], f_max_attempts int4[], f_workflow_id uuid[],
    f_step text[], f_parent_id int8[], f_optional bool[], f_waiting_for int4[],
    f_concurrency_key text[], f_fair_rank int8[], f_skip_if text[],
    h_queue text, h_kinds text[], h_limit integer, h_worker text, h_lease_ms int8
) RETURNS TABLE (job bigint, c_kind text, c_queue text, c_payload jsonb, c_priority int2,
    c_attempts integer, c_max_attempts integer, c_workflow_id uuid, c_parent_id bigint,
    c_step text, c_run_at timestamptz, follow_up bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_done bigint[];
    v_done_workflows uuid[];
    v_workflows uuid[];
    v_dependents bigint[];
    v_counts integer[];
    v_skips integer;
    v_parents bigint[];
    v_written bigint[];
    v_released bigint[];
    -- States, as variables: see above.
    c_running CONSTANT text := 'running';
    c_blocked CONSTANT text := 'blocked';
    c_pending CONSTANT text := 'pending';
BEGIN
    PERFORM 1 FROM __schema__.workflows w
        WHERE w.id = ANY(ARRAY(SELECT j.workflow_id FROM __schema__.jobs j
            WHERE j.id = ANY(p_ids)))
        ORDER BY w.id FOR UPDATE;
    PERFORM 1 FROM __schema__.jobs j WHERE j.id = ANY(p_ids) ORDER BY j.id FOR UPDATE;
    WITH done AS (
        UPDATE __schema__.jobs j SET state = 'completed',
            output = p_outputs[array_position(p_ids, j.id)]::jsonb,
            finished_at = now(), lease_until = NULL
        WHERE j.id = ANY(p_ids) AND j.attempts = p_attempts[array_position(p_ids, j.id)]
            AND j.state = c_running
        RETURNING j.id, j.workflow_id)
    SELECT array_agg(d.id), array_agg(d.workflow_id), array_agg(DISTINCT d.workflow_id)
    INTO v_done, v_done_workflows, v_workflows
    FROM done d;
    IF v_done IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT d.id, NULL, NULL, NULL::jsonb, NULL::int2, NULL::integer, NULL::integer,
        NULL::uuid, NULL::bigint, NULL, NULL::timestamptz, NULL::bigint
        FROM unnest(v_done) AS d(id);
    IF cardinality(f_owner) > 0 THEN
        -- A follow-up that names a workflow other than its parent's needs that workflow's
        -- record written first: the full settle's.
        IF EXISTS (SELECT 1 FROM (SELECT t.workflow_id,
                    array_position(v_done, p_ids[t.owner]) AS parent
                FROM unnest(f_owner, f_workflow_id) AS t(owner, workflow_id)) t
                WHERE t.parent IS NOT NULL AND t.workflow_id IS NOT NULL
                    AND t.workflow_id IS DISTINCT FROM v_done_workflows[t.parent]) THEN
            RAISE EXCEPTION USING ERRCODE = 'JC001',
                MESSAGE = 'a follow-up names a workflow of its own: settle in full';
        END IF;
        WITH written AS (INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, run_at,
            max_attempts, attempt_budget, workflow_id, step, parent_id, optional, waiting_for)
        SELECT t.kind, t.queue, t.payload::jsonb, t.priority, c_pending,
            coalesce(t.run_at, now() + coalesce(t.delay_ms, 0) * interval '1 millisecond'),
            t.max_attempts, t.max_attempts, v_done_workflows[t.parent], t.step,
            v_done[t.parent], t.optional, 0
        FROM (SELECT t.*, array_position(v_done, p_ids[t.owner]) AS parent
            FROM unnest(f_owner, f_kind, f_queue, f_payload, f_priority, f_run_at, f_delay_ms,
                    f_max_attempts, f_step, f_optional)
                WITH ORDINALITY AS t(owner, kind, queue, payload, priority, run_at, delay_ms,
                    max_attempts, step, optional, ord)) t
        WHERE t.parent IS NOT NULL
        ORDER BY t.ord
        RETURNING parent_id, id)
        SELECT array_agg(w.parent_id), array_agg(w.id) INTO v_parents, v_written FROM written w;
        RETURN QUERY SELECT w.parent, NULL, NULL, NULL::jsonb, NULL::int2, NULL::integer,
            NULL::integer, NULL::uuid, NULL::bigint, NULL, NULL::timestamptz, w.id
            FROM unnest(v_parents, v_written) AS w(parent, id);
    END IF;
    -- A completed dependency satisfies every edge, whatever its policy.
    SELECT array_agg(e.job_id), array_agg(e.n) INTO v_dependents, v_counts
    FROM (SELECT d.job_id, count(*)::integer AS n FROM __schema__.dependencies d
          WHERE d.depends_on = ANY(v_done) GROUP BY d.job_id) e;
    IF v_dependents IS NOT NULL THEN
        WITH released AS (
            UPDATE __schema__.jobs j
            SET waiting_for = j.waiting_for - v_counts[array_position(v_dependents, j.id)],
                state = CASE WHEN j.waiting_for - v_counts[array_position(v_dependents, j.id)] <= 0
                    THEN c_pending ELSE j.state END,
                run_at = CASE WHEN j.waiting_for - v_counts[array_position(v_dependents, j.id)] <= 0
                    THEN greatest(j.run_at, now()) ELSE j.run_at END
            WHERE j.id = ANY(v_dependents) AND j.state = c_blocked
            RETURNING j.id, j.state, j.skip_if, j.workflow_id)
        -- A skipped dependency is looked for only in a workflow that has a skipped job
        -- (one probe of the workflow index, instead of a join over every dependency).
        SELECT count(*) FILTER (WHERE r.skip_if IS NOT NULL OR EXISTS (
            SELECT 1 FROM __schema__.jobs s
            WHERE s.workflow_id = r.workflow_id AND s.state = 'skipped') AND EXISTS (
            SELECT 1 FROM __schema__.dependencies d
            JOIN __schema__.jobs p ON p.id = d.depends_on
            WHERE d.job_id = r.id AND d.policy = 'required' AND p.state = 'skipped'
                AND (p.cancelled_by IS NOT NULL OR (p.skip_if->>'cascade')::boolean))),
            array_agg(r.id)
        INTO v_skips, v_released FROM released r WHERE r.state = c_pending;
        IF v_skips > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'JC001',
                MESSAGE = 'a released step may have to be skipped: settle in full';
        END IF;
    END IF;
    UPDATE __schema__.workflows w SET
        state = CASE WHEN w.cancel_requested THEN 'cancelled'
            WHEN EXISTS (SELECT 1 FROM __schema__.jobs j WHERE j.workflow_id = w.id
                AND j.state IN ('dead', 'cancelled') AND NOT j.optional) THEN 'failed'
            ELSE 'completed' END,
        finished_at = now()
    WHERE w.id = ANY(v_workflows) AND w.state = 'running'
        AND (SELECT 1 FROM __schema__.jobs j WHERE j.workflow_id = w.id
            AND j.state IN ('blocked', 'pending', 'running') LIMIT 1) IS NULL;
    -- The claim on settle: the jobs made pending here that the worker can run now, claimed for
    -- it, each only if no due pending job of its queue and kinds comes before it in claim
    -- order (priority, then run_at, then id), as a claim would have taken them.
    v_written := coalesce(v_written, '{}') || coalesce(v_released, '{}');
    -- How many jobs the call made pending: the caller compares it with those claimed on settle.
    RETURN QUERY SELECT NULL::bigint, NULL, NULL, NULL::jsonb, NULL::int2, NULL::integer,
        NULL::integer, NULL::uuid, NULL::bigint, NULL, NULL::timestamptz,
        cardinality(v_written)::bigint;
    IF h_limit > 0 AND cardinality(v_written) > 0 THEN
        RETURN QUERY
        WITH picked AS (SELECT j.id FROM __schema__.jobs j
            WHERE j.id = ANY(v_written) AND j.state = c_pending AND j.queue = h_queue
                AND j.run_at <= now() AND j.kind = ANY(h_kinds)
                AND NOT EXISTS (SELECT 1 FROM __schema__.queues q
                    WHERE q.name = h_queue AND q.paused)
                AND NOT EXISTS (SELECT 1 FROM __schema__.jobs o
                    WHERE o.state = 'pending' AND o.queue = h_queue
                        AND o.priority > j.priority AND o.run_at <= now()
                        AND o.kind = ANY(h_kinds) AND o.id <> ALL(v_written))
                AND NOT EXISTS (SELECT 1 FROM __schema__.jobs o
                    WHERE o.state = 'pending' AND o.queue = h_queue
                        AND o.priority = j.priority AND o.run_at <= j.run_at
                        AND (o.run_at, o.id) < (j.run_at, j.id)
                        AND o.kind = ANY(h_kinds) AND o.id <> ALL(v_written))
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT h_limit)
        UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1,
            worker = h_worker, lease_until = now() + h_lease_ms * interval '1 millisecond',
            started_at = now(), debounce_key = NULL
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts,
            j.workflow_id, j.parent_id, j.step, j.run_at, NULL::bigint;
    END IF;
END $$;

CREATE FUNCTION __schema__.complete_batch(
    p_ids bigint[], p_attempts integer[], p_outputs text[], f_owner integer[],
    f_kind text[], f_queue text[], f_payload text[], f_priority int2[], f_state text[],
    f_run_at timestamptz[], f_delay_ms int8[], f_max_attempts int4[], f_workflow_id uuid[],
    f_step text[], f_parent_id int8[], f_optional bool[], f_waiting_for int4[],
    f_concurrency_key text[], f_fair_rank int8[], f_skip_if text[]
) RETURNS TABLE (job bigint, follow_up bigint)
LANGUAGE sql
AS $$
    SELECT t.job, t.follow_up FROM __schema__.complete_batch(p_ids, p_attempts, p_outputs,
        f_owner, f_kind, f_queue, f_payload, f_priority, f_state, f_run_at, f_delay_ms,
        f_max_attempts, f_workflow_id, f_step, f_parent_id, f_optional, f_waiting_for,
        f_concurrency_key, f_fair_rank, f_skip_if, NULL, NULL, 0, NULL, NULL) t
$$;
