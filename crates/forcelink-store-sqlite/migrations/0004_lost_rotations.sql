-- Finding lost rotations to settle costs what there is to settle, not a scan of every connection.
CREATE INDEX connections_by_inflight_start ON connections (inflight_started_at)
    WHERE inflight_attempt IS NOT NULL;
