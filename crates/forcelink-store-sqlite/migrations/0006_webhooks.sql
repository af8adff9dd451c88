-- 0006: webhook endpoints, their durable outbox (deliveries) and the delivery log (attempts).
-- Append-only: change the schema in a new file. (0005 is another change's number.)
--
-- Same conventions as 0001 (INTEGER microseconds, STRICT tables, sealed values as BLOBs).
-- The events table stays the source of truth: an endpoint's `cursor` is the last event id it
-- has considered, and deliveries are inserted together with the cursor move in one
-- transaction, so no event is skipped or queued twice. One delivery per endpoint and event
-- (UNIQUE); its id is the `webhook-id` message id. A lease is (lease_owner, lease_until),
-- both set or both NULL. next_attempt_at is set exactly while state = 'pending'. Deleting an
-- endpoint deletes its deliveries and their attempts.

CREATE TABLE webhook_endpoints (
    id          TEXT    NOT NULL PRIMARY KEY,
    url         TEXT    NOT NULL,
    event_kinds TEXT    NOT NULL,
    secret      BLOB    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('config', 'api')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    cursor      INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
    id               TEXT    NOT NULL PRIMARY KEY,
    endpoint_id      TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         INTEGER NOT NULL,
    event_kind       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id)
) STRICT;

-- Claiming costs what is due, not the whole log.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id TEXT    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    latency_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, number)
) STRICT;
