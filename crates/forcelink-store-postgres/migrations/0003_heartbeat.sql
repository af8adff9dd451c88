-- 0003: the refresh-token heartbeat. Append-only: change the schema in a new file.
--
-- Same conventions as 0001. refresh_token_used_at is the last successful use of the refresh
-- token (the idle TTL runs from there); heartbeat_due_at is when the heartbeat should next use
-- it; at_risk_level is the at-risk threshold last raised (0: not at risk). Existing
-- connections are backfilled from their last refresh (else creation), so they come due at
-- once. Both indexes are partial on active connections, the only ones the heartbeat's claim
-- and the idle report read, so their cost follows the rows they return, not the table.

ALTER TABLE connections
    ADD COLUMN refresh_token_used_at TIMESTAMPTZ,
    ADD COLUMN heartbeat_due_at      TIMESTAMPTZ,
    ADD COLUMN at_risk_level         INTEGER     NOT NULL DEFAULT 0;

UPDATE connections
SET refresh_token_used_at = COALESCE(last_refresh_at, created_at),
    heartbeat_due_at = COALESCE(last_refresh_at, created_at);

ALTER TABLE connections
    ALTER COLUMN refresh_token_used_at SET NOT NULL,
    ALTER COLUMN heartbeat_due_at SET NOT NULL;

CREATE INDEX connections_by_heartbeat_due
    ON connections (heartbeat_due_at) WHERE state = 'active';
CREATE INDEX connections_by_refresh_token_use
    ON connections (refresh_token_used_at) WHERE state = 'active';
