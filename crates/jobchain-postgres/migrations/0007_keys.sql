-- Debounce and concurrency keys. A debounce key is held only while its job waits for its
-- first start (the claim clears it), so at most one pending job holds a key.
ALTER TABLE __schema__.jobs ADD COLUMN debounce_key text;
ALTER TABLE __schema__.jobs ADD COLUMN concurrency_key text;
CREATE UNIQUE INDEX jobs_debounce ON __schema__.jobs (debounce_key)
    WHERE debounce_key IS NOT NULL;
