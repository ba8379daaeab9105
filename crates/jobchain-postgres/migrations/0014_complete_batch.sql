-- Completions in one round trip (W3, W4, W8, W10: a settle of workflow jobs took up to
-- eight: begin, lock, complete, write the follow-ups, find the dependents, release them,
-- finish, commit; the hand-off from one step to the next waited for all of them).
--
-- The common case, completions by their worker whose follow-ups are plain jobs (no unique,
-- debounce or concurrency key, no condition, no workflow but their parent's), as one call that
-- commits on its own. Its statements are those of the full settle, in its order, and each
-- sees what committed before it (a volatile function's statements take fresh snapshots),
-- so a concurrent settle of a sibling job that held the workflow's lock is seen once the
-- lock is granted: the workflow's last job always finishes it. The workflows of the jobs
-- are locked first, then the jobs, each in id order, as everywhere.
--
-- The statements' plans are generic, made once per connection (planning them anew for
-- every call cost more than running them), and a generic plan knows neither how many ids
-- an array holds nor which states are asked for. So every statement finds its rows by
-- `id = ANY(array)`, an index condition under any plan (a plan made while a fresh schema
-- had no statistics would otherwise step through the whole primary key); joins none with
-- an unnested array (a plan that thinks one side holds one row rescans the other for every
-- row: quadratic, 135 ms for 462 rows), looking values up with `array_position` instead;
-- and names the states it looks for through variables, so that it cannot prove a partial
-- index on state usable and never ANDs in the lease index, which holds every running job.
--
-- The follow-ups are the columns of the bulk insert (`f_*`, as the client's insert of
-- many jobs binds them), each with the index (from 1) of the completion that staged it in
-- `f_owner`; those of a completion rejected by its fence are not written. Each is pending,
-- joins its parent's workflow and records the parent: the columns for state, parent,
-- keys and conditions are bound but not read.
--
-- A dependent released here that has a condition, or a required dependency skipped with
-- a cascade, needs the skip rules, which live in the client: the call then raises
-- SQLSTATE JC001 and writes nothing, and the client settles the batch in full instead.
--
-- Returns a row (job, NULL) for every job completed (the others were rejected by their
-- fence), and a row (parent, id) for every follow-up written, in the order staged.
CREATE FUNCTION __schema__.complete_batch(
    p_ids bigint[], p_attempts integer[], p_outputs text[], f_owner integer[],
    f_kind text[], f_queue text[], f_payload text[], f_priority int2[], f_state text[],
    f_run_at timestamptz[], f_delay_ms int8[], f_max_attempts int4[], f_workflow_id uuid[],
    f_step text[], f_parent_id int8[], f_optional bool[], f_waiting_for int4[],
    f_concurrency_key text[], f_fair_rank int8[], f_skip_if text[]
) RETURNS TABLE (job bigint, follow_up bigint)
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
    RETURN QUERY SELECT d.id, NULL::bigint FROM unnest(v_done) AS d(id);
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
        RETURN QUERY
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
        SELECT w.parent_id, w.id FROM written w;
    END IF;
    -- A completed dependency satisfies every edge, whatever its policy.
    SELECT array_agg(e.job_id), array_agg(e.n) INTO v_dependents, v_counts
    FROM (SELECT d.job_id, count(*)::integer AS n FROM __schema__.dependencies d
          WHERE d.depends_on = ANY(v_done) GROUP BY d.job_id) e;
    WITH released AS (
        UPDATE __schema__.jobs j
        SET waiting_for = j.waiting_for - v_counts[array_position(v_dependents, j.id)],
            state = CASE WHEN j.waiting_for - v_counts[array_position(v_dependents, j.id)] <= 0
                THEN c_pending ELSE j.state END,
            run_at = CASE WHEN j.waiting_for - v_counts[array_position(v_dependents, j.id)] <= 0
                THEN greatest(j.run_at, now()) ELSE j.run_at END
        WHERE j.id = ANY(v_dependents) AND j.state = c_blocked
        RETURNING j.id, j.state, j.skip_if)
    SELECT count(*) INTO v_skips FROM released r
    WHERE r.state = c_pending AND (r.skip_if IS NOT NULL OR EXISTS (
        SELECT 1 FROM __schema__.dependencies d
        JOIN __schema__.jobs p ON p.id = d.depends_on
        WHERE d.job_id = r.id AND d.policy = 'required' AND p.state = 'skipped'
            AND (p.cancelled_by IS NOT NULL OR (p.skip_if->>'cascade')::boolean)));
    IF v_skips > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'JC001',
            MESSAGE = 'a released step may have to be skipped: settle in full';
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
END $$;
