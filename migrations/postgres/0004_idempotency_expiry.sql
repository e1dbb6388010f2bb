-- Idempotency records expire after 24 hours and are purged by created_at (a periodic DELETE in `tally serve`):
-- the index keeps that purge from reading the whole table.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
