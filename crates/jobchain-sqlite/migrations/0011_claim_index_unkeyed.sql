-- Keyed jobs leave the claim index: `jobchain_jobs_fair` holds them (in rank order), and a
-- job in both paid for two index entries at every write and every claim (a keyed claim
-- cost twice a plain one). Plain claims find keyed jobs of kinds without a per-key limit
-- through the fair index.
DROP INDEX jobchain_jobs_claim;
CREATE INDEX jobchain_jobs_claim ON jobchain_jobs (queue, priority DESC, run_at, id)
    WHERE state = 'pending' AND concurrency_key IS NULL;
