-- Limits enforced at claim: a lock row per limited scope (claims of one scope take turns
-- on it, in every process), starts per rate-limited scope (one row per claim, pruned past
-- the window), the round-robin order of concurrency keys, and an index that holds only
-- keyed pending jobs (unkeyed jobs pay nothing for it).
CREATE TABLE __schema__.limit_scopes (scope text PRIMARY KEY);
CREATE TABLE __schema__.limit_starts (
    scope text NOT NULL,
    at    timestamptz NOT NULL,
    count integer NOT NULL
);
CREATE INDEX limit_starts_window ON __schema__.limit_starts (scope, at);
CREATE TABLE __schema__.limit_keys (
    scope      text NOT NULL,
    key        text NOT NULL,
    last_claim bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX jobs_keyed ON __schema__.jobs (kind, concurrency_key, queue, priority DESC, run_at, id)
    WHERE state = 'pending' AND concurrency_key IS NOT NULL;
-- Whether a key still has a blocked job (a workflow step), before it leaves the order.
CREATE INDEX jobs_keyed_blocked ON __schema__.jobs (kind, concurrency_key)
    WHERE state = 'blocked' AND concurrency_key IS NOT NULL;
CREATE INDEX limit_keys_turn ON __schema__.limit_keys (scope, last_claim, key);
-- A key's running jobs, for its per-key limit (only keyed jobs are in it).
CREATE INDEX jobs_keyed_running ON __schema__.jobs (kind, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
