-- 0011: a retried delivery counts as queued when it was retried. Append-only: change the schema
-- in a new file.
--
-- The backlog's "oldest pending" (metrics and doctor) read created_at, so retrying deliveries
-- that failed days ago made an endpoint look days behind at once. retried_at is when an
-- operator last retried a delivery (NULL if never); a pending delivery waits since
-- COALESCE(retried_at, created_at), and the pending rows' partial index also holds
-- retried_at, so the backlog still reads nothing else. Nullable, so no existing row is
-- rewritten.
ALTER TABLE webhook_deliveries ADD COLUMN retried_at INTEGER;
DROP INDEX webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_pending
    ON webhook_deliveries (endpoint_id, created_at, retried_at)
    WHERE state = 'pending';
