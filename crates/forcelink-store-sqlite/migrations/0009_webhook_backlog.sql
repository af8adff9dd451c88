-- The webhook backlog (pending and failed deliveries per endpoint, the oldest pending one's
-- age) is read at every /metrics scrape. These partial indexes hold only undelivered rows and
-- cover that read, so it never walks the delivery log, which grows with every event.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, created_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id)
    WHERE state = 'failed';
