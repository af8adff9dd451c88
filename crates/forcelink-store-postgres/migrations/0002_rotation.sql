-- 0002: connection health, the refresh lease, the rotation-in-flight record, and the
-- forensic tables (refresh lineage, events, incidents). Append-only: change the schema in a
-- new file.
--
-- Same conventions as 0001. The lineage and event rows are keyed by org_id + context with no
-- foreign key: they are forensic records and outlive the connection they describe (0001's
-- note about ON DELETE CASCADE was superseded). A lease is (lease_owner, lease_until), both
-- set or both NULL; the in-flight record is present exactly when inflight_attempt is set.
-- Event ids come from an identity column; writers serialize on a table lock (see events.rs)
-- so ids also become visible in order.

ALTER TABLE connections
    ADD COLUMN health              TEXT        NOT NULL DEFAULT 'ok',
    ADD COLUMN health_detail       TEXT,
    ADD COLUMN lease_owner         TEXT,
    ADD COLUMN lease_until         TIMESTAMPTZ,
    ADD COLUMN inflight_attempt    TEXT,
    ADD COLUMN inflight_owner      TEXT,
    ADD COLUMN inflight_started_at TIMESTAMPTZ,
    ADD COLUMN inflight_old_hash   TEXT,
    ADD COLUMN inflight_recovery   BOOLEAN     NOT NULL DEFAULT FALSE;

CREATE TABLE refresh_attempts (
    attempt_id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id           TEXT COLLATE "C" NOT NULL,
    context          TEXT COLLATE "C" NOT NULL,
    instance         TEXT        NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    old_refresh_hash TEXT        NOT NULL,
    new_refresh_hash TEXT,
    latency_ms       BIGINT,
    outcome          TEXT        NOT NULL,
    detail           TEXT,
    egress           TEXT,
    recovery         BOOLEAN     NOT NULL
);

CREATE INDEX refresh_attempts_by_connection
    ON refresh_attempts (org_id, context, started_at, attempt_id);
CREATE INDEX refresh_attempts_by_old_hash ON refresh_attempts (old_refresh_hash);

CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    kind    TEXT        NOT NULL,
    org_id  TEXT COLLATE "C",
    context TEXT COLLATE "C",
    detail  TEXT        NOT NULL
);

CREATE INDEX events_by_connection ON events (org_id, context, id);

CREATE TABLE incidents (
    kind   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    active BOOLEAN     NOT NULL,
    since  TIMESTAMPTZ NOT NULL,
    detail TEXT        NOT NULL
);
