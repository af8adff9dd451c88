-- 0003: the refresh-token heartbeat. Append-only: change the schema in a new file.
--
-- Same conventions as 0001 (INTEGER microseconds, STRICT tables). refresh_token_used_at is the
-- last successful use of the refresh token (the idle TTL runs from there); heartbeat_due_at is
-- when the heartbeat should next use it; at_risk_level is the at-risk threshold last raised
-- (0: not at risk). SQLite can only add a NOT NULL column with a default, so both times get a
-- placeholder 0 that the UPDATE below replaces; every write binds them explicitly. Existing
-- connections are backfilled from their last refresh (else creation), so they come due at
-- once. The indexes keep the heartbeat's claim and the idle report proportional to the rows
-- they return, not to the table.

ALTER TABLE connections ADD COLUMN refresh_token_used_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN heartbeat_due_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN at_risk_level INTEGER NOT NULL DEFAULT 0;

UPDATE connections
SET refresh_token_used_at = COALESCE(last_refresh_at, created_at),
    heartbeat_due_at = COALESCE(last_refresh_at, created_at);

CREATE INDEX connections_by_heartbeat_due ON connections (state, heartbeat_due_at);
CREATE INDEX connections_by_refresh_token_use ON connections (state, refresh_token_used_at);
