-- 0002: connection health, the refresh lease, the rotation-in-flight record, and the
-- forensic tables (refresh lineage, events, incidents). Append-only: change the schema in a
-- new file.
--
-- Same conventions as 0001 (INTEGER microseconds, INTEGER booleans, STRICT tables). The
-- lineage and event rows are keyed by org_id + context with no foreign key: they are forensic
-- records and outlive the connection they describe (0001's note about ON DELETE CASCADE was
-- superseded). A lease is (lease_owner, lease_until), both set or both NULL; the in-flight
-- record is present exactly when inflight_attempt is not NULL.

ALTER TABLE connections ADD COLUMN health TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE connections ADD COLUMN health_detail TEXT;
ALTER TABLE connections ADD COLUMN lease_owner TEXT;
ALTER TABLE connections ADD COLUMN lease_until INTEGER;
ALTER TABLE connections ADD COLUMN inflight_attempt TEXT;
ALTER TABLE connections ADD COLUMN inflight_owner TEXT;
ALTER TABLE connections ADD COLUMN inflight_started_at INTEGER;
ALTER TABLE connections ADD COLUMN inflight_old_hash TEXT;
ALTER TABLE connections ADD COLUMN inflight_recovery INTEGER NOT NULL DEFAULT 0
    CHECK (inflight_recovery IN (0, 1));

CREATE TABLE refresh_attempts (
    attempt_id       TEXT    NOT NULL PRIMARY KEY,
    org_id           TEXT    NOT NULL,
    context          TEXT    NOT NULL,
    instance         TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    old_refresh_hash TEXT    NOT NULL,
    new_refresh_hash TEXT,
    latency_ms       INTEGER,
    outcome          TEXT    NOT NULL,
    detail           TEXT,
    egress           TEXT,
    recovery         INTEGER NOT NULL CHECK (recovery IN (0, 1))
) STRICT;

CREATE INDEX refresh_attempts_by_connection
    ON refresh_attempts (org_id, context, started_at, attempt_id);
CREATE INDEX refresh_attempts_by_old_hash ON refresh_attempts (old_refresh_hash);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    org_id  TEXT,
    context TEXT,
    detail  TEXT    NOT NULL
) STRICT;

CREATE INDEX events_by_connection ON events (org_id, context, id);

CREATE TABLE incidents (
    kind   TEXT    NOT NULL PRIMARY KEY,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    since  INTEGER NOT NULL,
    detail TEXT    NOT NULL
) STRICT;
