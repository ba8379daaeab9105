-- Debounce and concurrency keys. A debounce key is held only while its job waits for its
-- first start (the claim clears it), so at most one pending job holds a key.
ALTER TABLE jobchain_jobs ADD COLUMN debounce_key TEXT;
ALTER TABLE jobchain_jobs ADD COLUMN concurrency_key TEXT;
CREATE UNIQUE INDEX jobchain_jobs_debounce ON jobchain_jobs (debounce_key)
    WHERE debounce_key IS NOT NULL;
