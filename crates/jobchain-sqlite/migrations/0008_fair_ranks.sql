-- Fairness across concurrency keys by rank (start-time fair queueing): each keyed job gets,
-- when written, the next rank of its key, never below its kind's floor (the highest rank
-- claimed so far). Claims take keyed jobs by rank, so the n-th job of every key runs
-- before the (n+1)-th of any, and a key that appears late starts at the floor instead of
-- behind the backlog of the busy ones. A claim is then one ordered scan of one index,
-- with no per-key rows to rewrite.
ALTER TABLE jobchain_jobs ADD COLUMN fair_rank INTEGER;
UPDATE jobchain_jobs SET fair_rank = r.rank
    FROM (SELECT id, row_number() OVER (PARTITION BY kind, concurrency_key ORDER BY id) AS rank
          FROM jobchain_jobs WHERE concurrency_key IS NOT NULL) AS r
    WHERE jobchain_jobs.id = r.id;
DROP INDEX jobchain_limit_keys_turn;
DROP INDEX jobchain_jobs_keyed;
DROP INDEX jobchain_jobs_keyed_blocked;
ALTER TABLE jobchain_limit_keys RENAME COLUMN last_claim TO last_rank;
DELETE FROM jobchain_limit_keys;
INSERT INTO jobchain_limit_keys (scope, key, last_rank)
    SELECT 'kind:' || kind, concurrency_key, max(fair_rank) FROM jobchain_jobs
    WHERE concurrency_key IS NOT NULL GROUP BY kind, concurrency_key;
CREATE TABLE jobchain_limit_floors (
    scope TEXT PRIMARY KEY,
    floor INTEGER NOT NULL
);
-- Every column a keyed claim's scan reads is in the index: no row lookups while it skips
-- the jobs of busy keys.
CREATE INDEX jobchain_jobs_fair ON jobchain_jobs
    (kind, priority DESC, fair_rank, id, concurrency_key, queue, run_at)
    WHERE state = 'pending' AND concurrency_key IS NOT NULL;
-- A kind's running keyed jobs by key, for the per-key limit.
CREATE INDEX jobchain_jobs_keyed_running ON jobchain_jobs (kind, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
