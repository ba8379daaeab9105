-- Fairness across concurrency keys by rank (start-time fair queueing): each keyed job gets,
-- when written, the next rank of its key, never below its kind's floor (the highest rank
-- claimed so far). Claims take keyed jobs by rank, so the n-th job of every key runs
-- before the (n+1)-th of any, and a key that appears late starts at the floor instead of
-- behind the backlog of the busy ones. A claim is then one ordered scan of one index,
-- with no per-key rows to rewrite.
ALTER TABLE __schema__.jobs ADD COLUMN fair_rank bigint;
UPDATE __schema__.jobs j SET fair_rank = r.rank
    FROM (SELECT id, row_number() OVER (PARTITION BY kind, concurrency_key ORDER BY id) AS rank
          FROM __schema__.jobs WHERE concurrency_key IS NOT NULL) r
    WHERE j.id = r.id;
DROP INDEX __schema__.limit_keys_turn;
DROP INDEX __schema__.jobs_keyed;
DROP INDEX __schema__.jobs_keyed_blocked;
ALTER TABLE __schema__.limit_keys RENAME COLUMN last_claim TO last_rank;
DELETE FROM __schema__.limit_keys;
INSERT INTO __schema__.limit_keys (scope, key, last_rank)
    SELECT 'kind:' || kind, concurrency_key, max(fair_rank) FROM __schema__.jobs
    WHERE concurrency_key IS NOT NULL GROUP BY kind, concurrency_key;
ALTER TABLE __schema__.limit_scopes ADD COLUMN floor bigint NOT NULL DEFAULT 0;
CREATE INDEX jobs_fair ON __schema__.jobs (kind, priority DESC, fair_rank, id)
    WHERE state = 'pending' AND concurrency_key IS NOT NULL;
-- A claim under a per-key limit in one call (one round trip, even outside a transaction):
-- an advisory lock on the kind's scope is taken first (until the caller's commit), so
-- that keyed claims of the kind take turns in every process; each statement after it (a
-- volatile function's statements see what committed before them) reads running counts
-- that hold until that commit. Then: the keys at their limit of running jobs, due keyed
-- jobs of other keys by priority, then rank, then id (through the rank index), at most as
-- many per key as its room (a key with a candidate has none running when the limit is 1;
-- else they are counted); the kind's floor moves up to the highest rank claimed. If no
-- keyed job may start, due jobs of the kind without a key are claimed instead (only then:
-- finding them means stepping over every waiting keyed job). `p_at` is the claim's
-- instant (the caller's, when it counted rate limits under the same lock), else the clock
-- once the lock is held. The queue is compared with IS NOT DISTINCT FROM, which no index
-- can take, so that the claim index, led by the queue, never looks cheaper to a planner
-- without statistics.
CREATE FUNCTION __schema__.claim_keyed(
    p_queue text, p_kind text, p_limit bigint, p_worker text, p_lease_ms bigint,
    p_per_key bigint, p_scope text, p_at timestamptz
) RETURNS TABLE (id bigint, kind text, queue text, payload jsonb, priority smallint,
    attempts integer, max_attempts integer, workflow_id uuid, parent_id bigint, step text,
    run_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_at timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('__schema__.' || p_scope, 0));
    v_at := coalesce(p_at, clock_timestamp());
    RETURN QUERY
    WITH busy AS MATERIALIZED (
        SELECT r.concurrency_key AS key FROM __schema__.jobs r
        WHERE r.state = 'running' AND r.kind = p_kind AND r.concurrency_key IS NOT NULL
        GROUP BY 1 HAVING count(*) >= p_per_key),
    candidates AS MATERIALIZED (
        SELECT j.id, j.concurrency_key AS key, j.priority, j.fair_rank FROM __schema__.jobs j
        WHERE j.state = 'pending' AND j.kind = p_kind AND j.concurrency_key IS NOT NULL
            AND j.queue IS NOT DISTINCT FROM p_queue AND j.run_at <= v_at
            AND j.concurrency_key NOT IN (SELECT b.key FROM busy b)
            AND NOT EXISTS (SELECT 1 FROM __schema__.queues q
                WHERE q.name = p_queue AND q.paused)
        ORDER BY j.priority DESC, j.fair_rank, j.id LIMIT p_limit * 5 / 4 + 8),
    chosen AS MATERIALIZED (
        SELECT c.id, c.fair_rank FROM (SELECT c.*, row_number() OVER (PARTITION BY c.key
            ORDER BY c.priority DESC, c.fair_rank, c.id) AS nth FROM candidates c) c
        WHERE c.nth = 1 AND p_per_key = 1 OR c.nth <= p_per_key - (SELECT count(*)
            FROM __schema__.jobs r WHERE r.state = 'running' AND r.kind = p_kind
                AND r.concurrency_key = c.key)
        ORDER BY c.priority DESC, c.fair_rank, c.id LIMIT p_limit),
    picked AS (SELECT j.id FROM chosen c JOIN __schema__.jobs j ON j.id = c.id
        WHERE j.state = 'pending' FOR UPDATE OF j SKIP LOCKED),
    floor AS (INSERT INTO __schema__.limit_scopes AS s (scope, floor)
        SELECT p_scope, max(c.fair_rank) FROM chosen c HAVING count(*) > 0
        ON CONFLICT (scope) DO UPDATE SET floor = excluded.floor
        WHERE s.floor < excluded.floor)
    UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1,
        worker = p_worker, lease_until = v_at + p_lease_ms * interval '1 millisecond',
        started_at = v_at, debounce_key = NULL
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts,
        j.workflow_id, j.parent_id, j.step, j.run_at;
    IF NOT FOUND THEN
        RETURN QUERY
        WITH picked AS (SELECT j.id FROM __schema__.jobs j
            WHERE j.state = 'pending' AND j.queue = p_queue AND j.run_at <= v_at
                AND j.kind = p_kind AND j.concurrency_key IS NULL
                AND NOT EXISTS (SELECT 1 FROM __schema__.queues q
                    WHERE q.name = p_queue AND q.paused)
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT p_limit
            FOR UPDATE SKIP LOCKED)
        UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1,
            worker = p_worker, lease_until = v_at + p_lease_ms * interval '1 millisecond',
            started_at = v_at, debounce_key = NULL
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts,
            j.workflow_id, j.parent_id, j.step, j.run_at;
    END IF;
END
$$;
-- A claim under limits in one call (one round trip outside a transaction). The scopes'
-- advisory locks are taken first, in name order (so two claims never wait on each other
-- crosswise), and held until the caller's commit: claims of a scope take turns in every
-- process, and what each statement after them reads (running jobs, recent starts) holds
-- until then. The instant after the locks is the claim's: starts are counted in the
-- window before it and recorded at it. Per scope i: p_field[i] ('kind' or 'queue') and
-- p_name[i] say what it counts, p_max_running[i] and p_rate_count[i] per p_rate_ms[i] its
-- limits (NULL: none). With p_per_key, keyed jobs of p_kinds[1] are claimed fairly under
-- it (claim_keyed); else due jobs of p_kinds by priority, then run_at, then id.
CREATE FUNCTION __schema__.claim_limited(
    p_queue text, p_kinds text[], p_limit bigint, p_worker text, p_lease_ms bigint,
    p_scopes text[], p_field text[], p_name text[], p_max_running bigint[],
    p_rate_count bigint[], p_rate_ms bigint[], p_per_key bigint, p_key_scope text
) RETURNS TABLE (id bigint, kind text, queue text, payload jsonb, priority smallint,
    attempts integer, max_attempts integer, workflow_id uuid, parent_id bigint, step text,
    run_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_at timestamptz;
    allowance bigint := p_limit;
    used bigint;
    taken bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('__schema__.' || s.scope, 0))
    FROM (SELECT DISTINCT t.scope FROM unnest(p_scopes || p_key_scope) AS t(scope)
          WHERE t.scope IS NOT NULL ORDER BY t.scope) s;
    v_at := clock_timestamp();
    FOR i IN 1 .. coalesce(cardinality(p_scopes), 0) LOOP
        IF p_max_running[i] IS NOT NULL THEN
            IF p_field[i] = 'kind' THEN
                SELECT count(*) INTO used FROM __schema__.jobs r
                WHERE r.state = 'running' AND r.kind = p_name[i];
            ELSE
                SELECT count(*) INTO used FROM __schema__.jobs r
                WHERE r.state = 'running' AND r.queue = p_name[i];
            END IF;
            allowance := least(allowance, p_max_running[i] - used);
        END IF;
        IF p_rate_count[i] IS NOT NULL THEN
            SELECT coalesce(sum(l.count), 0) INTO used FROM __schema__.limit_starts l
            WHERE l.scope = p_scopes[i] AND l.at > v_at - p_rate_ms[i] * interval '1 millisecond';
            allowance := least(allowance, p_rate_count[i] - used);
        END IF;
    END LOOP;
    IF allowance <= 0 THEN
        RETURN;
    END IF;
    IF p_per_key IS NOT NULL THEN
        RETURN QUERY SELECT * FROM __schema__.claim_keyed(p_queue, p_kinds[1], allowance,
            p_worker, p_lease_ms, p_per_key, p_key_scope, v_at);
    ELSE
        RETURN QUERY
        WITH picked AS (SELECT j.id FROM __schema__.jobs j
            WHERE j.state = 'pending' AND j.queue = p_queue AND j.run_at <= v_at
                AND j.kind = ANY(p_kinds)
                AND NOT EXISTS (SELECT 1 FROM __schema__.queues q
                    WHERE q.name = p_queue AND q.paused)
            ORDER BY j.priority DESC, j.run_at, j.id LIMIT allowance
            FOR UPDATE SKIP LOCKED)
        UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1,
            worker = p_worker, lease_until = v_at + p_lease_ms * interval '1 millisecond',
            started_at = v_at, debounce_key = NULL
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts,
            j.workflow_id, j.parent_id, j.step, j.run_at;
    END IF;
    GET DIAGNOSTICS taken = ROW_COUNT;
    FOR i IN 1 .. coalesce(cardinality(p_scopes), 0) LOOP
        IF p_rate_count[i] IS NOT NULL THEN
            DELETE FROM __schema__.limit_starts l WHERE l.scope = p_scopes[i]
                AND l.at <= v_at - p_rate_ms[i] * interval '1 millisecond';
            IF taken > 0 THEN
                INSERT INTO __schema__.limit_starts (scope, at, count)
                VALUES (p_scopes[i], v_at, taken);
            END IF;
        END IF;
    END LOOP;
END
$$;
