-- Conditions on workflow steps (evaluated when the step is ready; see
-- jobchain_core::workflow::condition) and the skipped state they lead to.
ALTER TABLE jobchain_jobs ADD COLUMN skip_if TEXT;
