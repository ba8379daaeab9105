-- Limits enforced at claim: starts per rate-limited scope (one row per claim, pruned past
-- the window), the round-robin order of concurrency keys, and an index that holds only
-- keyed pending jobs (unkeyed jobs pay nothing for it).
CREATE TABLE jobchain_limit_starts (
    scope TEXT NOT NULL,
    at    INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX jobchain_limit_starts_window ON jobchain_limit_starts (scope, at);
CREATE TABLE jobchain_limit_keys (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    last_claim INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX jobchain_jobs_keyed ON jobchain_jobs (kind, concurrency_key, queue, priority DESC, run_at, id)
    WHERE state = 'pending' AND concurrency_key IS NOT NULL;
-- Whether a key still has a blocked job (a workflow step), before it leaves the order.
CREATE INDEX jobchain_jobs_keyed_blocked ON jobchain_jobs (kind, concurrency_key)
    WHERE state = 'blocked' AND concurrency_key IS NOT NULL;
CREATE INDEX jobchain_limit_keys_turn ON jobchain_limit_keys (scope, last_claim, key);
