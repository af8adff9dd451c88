-- 0008: refresh leases and rotation-in-flight records move out of `connections` into a small
-- table of their own. Append-only: change the schema in a new file.
--
-- Same conventions as 0001 (INTEGER microseconds, STRICT tables). A connection has a row here
-- only while it holds a lease or an in-flight record: the trigger below deletes a row as soon
-- as both are cleared, so the table holds the connections being refreshed, not every
-- connection. Before, a heartbeat refresh rewrote its whole `connections` row (both sealed
-- tokens included) three times in three transactions, for the claim's lease, the begin's
-- in-flight record and the commit, each time on a page at a random place in the file. Now the
-- claim and the begin write a few hot pages of this table, and only the commit writes the
-- connection's row. A lease is (lease_owner, lease_until), both set or both NULL; the in-flight
-- record is present exactly when inflight_attempt is not NULL.

CREATE TABLE connection_leases (
    org_id              TEXT    NOT NULL,
    context             TEXT    NOT NULL,
    lease_owner         TEXT,
    lease_until         INTEGER,
    inflight_attempt    TEXT,
    inflight_owner      TEXT,
    inflight_started_at INTEGER,
    inflight_old_hash   TEXT,
    inflight_recovery   INTEGER NOT NULL DEFAULT 0 CHECK (inflight_recovery IN (0, 1)),
    PRIMARY KEY (org_id, context),
    FOREIGN KEY (org_id, context) REFERENCES connections (org_id, context) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- Finding lost rotations to settle costs what there is to settle (as 0004's index did).
CREATE INDEX connection_leases_by_inflight_start ON connection_leases (inflight_started_at)
    WHERE inflight_attempt IS NOT NULL;

CREATE TRIGGER connection_leases_drop_empty AFTER UPDATE ON connection_leases
    WHEN NEW.lease_owner IS NULL AND NEW.inflight_attempt IS NULL
BEGIN
    DELETE FROM connection_leases WHERE org_id = NEW.org_id AND context = NEW.context;
END;

INSERT INTO connection_leases (org_id, context, lease_owner, lease_until, inflight_attempt,
    inflight_owner, inflight_started_at, inflight_old_hash, inflight_recovery)
SELECT org_id, context, lease_owner, lease_until, inflight_attempt, inflight_owner,
    inflight_started_at, inflight_old_hash, inflight_recovery
FROM connections WHERE lease_owner IS NOT NULL OR inflight_attempt IS NOT NULL;

DROP INDEX connections_by_inflight_start;
ALTER TABLE connections DROP COLUMN lease_owner;
ALTER TABLE connections DROP COLUMN lease_until;
ALTER TABLE connections DROP COLUMN inflight_attempt;
ALTER TABLE connections DROP COLUMN inflight_owner;
ALTER TABLE connections DROP COLUMN inflight_started_at;
ALTER TABLE connections DROP COLUMN inflight_old_hash;
ALTER TABLE connections DROP COLUMN inflight_recovery;
