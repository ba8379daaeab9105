-- jobchain schema, version 2, in the schema __schema__: a workflow's counts are read from
-- its jobs.
--
-- Version 1 kept counts on the workflow row with statement-level triggers, so every claim
-- and settle of a workflow job also locked and rewrote its workflow's row, and every
-- statement on jobs paid for its transition tables. Now only the terminal transitions
-- touch the workflow: the settle that ends a workflow's last live job marks it finished,
-- under the workflow's row lock. Counts come from the index below when they are read.

DROP TRIGGER jobs_inserted ON __schema__.jobs;
DROP TRIGGER jobs_updated ON __schema__.jobs;
DROP TRIGGER jobs_deleted ON __schema__.jobs;
DROP FUNCTION __schema__.jobs_inserted();
DROP FUNCTION __schema__.jobs_updated();
DROP FUNCTION __schema__.jobs_deleted();
DROP FUNCTION __schema__.job_delta(uuid, text, boolean, integer);
DROP FUNCTION __schema__.apply_job_deltas(jsonb);

ALTER TABLE __schema__.workflows
    DROP COLUMN blocked, DROP COLUMN pending, DROP COLUMN running, DROP COLUMN completed,
    DROP COLUMN dead, DROP COLUMN cancelled, DROP COLUMN failed, DROP COLUMN tolerated;

-- Answers "does this workflow still have a live job", "did a required job fail" and the
-- counts by state.
DROP INDEX __schema__.jobs_workflow;
CREATE INDEX jobs_workflow ON __schema__.jobs (workflow_id, state, optional)
    WHERE workflow_id IS NOT NULL;
