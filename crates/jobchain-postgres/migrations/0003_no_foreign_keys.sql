-- jobchain schema, version 3, in the schema __schema__: no foreign keys on the hot tables.
--
-- Every job inserted into a workflow and every dependency edge fired a referential check
-- (a key-share lock on the workflow or job row it names), about 12 % of the server's CPU
-- under W4. jobchain is the only writer of these tables and keeps them consistent itself:
-- a job's workflow is created before the job (or in the same statement batch), edges are
-- written with the steps they join, and the cleaner deletes a workflow with its jobs and
-- their edges in one statement.

ALTER TABLE __schema__.jobs DROP CONSTRAINT jobs_workflow_id_fkey;
ALTER TABLE __schema__.dependencies DROP CONSTRAINT dependencies_job_id_fkey;
ALTER TABLE __schema__.dependencies DROP CONSTRAINT dependencies_depends_on_fkey;
