-- Jobchain's own kinds (`jobchain.` followed by a name: timers, signals, maps, sub-
-- workflows) are claimed by every worker, as a plan of their own; the claim index is by
-- queue, so finding the few due ones meant stepping over every waiting job of the queue.
-- They get an index of their own, which holds only them.
CREATE INDEX jobchain_jobs_builtin_claim ON jobchain_jobs (queue, priority DESC, run_at, id)
    WHERE state = 'pending' AND kind GLOB 'jobchain.*';
