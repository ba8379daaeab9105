-- jobchain schema, version 2: a workflow's counts are read from its jobs.
--
-- Version 1 kept counts on the workflow row with triggers, so every claim and settle of a
-- workflow job also rewrote its workflow's row (two updates per transition). Now only the
-- terminal transitions touch the workflow: the statement that settles a workflow's last
-- live job marks it finished. Counts come from the index below when they are read.

DROP TRIGGER jobchain_jobs_counts_insert;
DROP TRIGGER jobchain_jobs_counts_update;
DROP TRIGGER jobchain_jobs_counts_delete;

ALTER TABLE jobchain_workflows DROP COLUMN blocked;
ALTER TABLE jobchain_workflows DROP COLUMN pending;
ALTER TABLE jobchain_workflows DROP COLUMN running;
ALTER TABLE jobchain_workflows DROP COLUMN completed;
ALTER TABLE jobchain_workflows DROP COLUMN dead;
ALTER TABLE jobchain_workflows DROP COLUMN cancelled;
ALTER TABLE jobchain_workflows DROP COLUMN failed;
ALTER TABLE jobchain_workflows DROP COLUMN tolerated;

-- Answers "does this workflow still have a live job", "did a required job fail" and the
-- counts by state without reading the jobs themselves.
DROP INDEX jobchain_jobs_workflow;
CREATE INDEX jobchain_jobs_workflow ON jobchain_jobs (workflow_id, state, optional)
    WHERE workflow_id IS NOT NULL;
