-- 0001: pending authorizations and connections. Append-only: change the schema in a new file.
--
-- Conventions: times are INTEGER microseconds since the Unix epoch (UTC), always bound from
-- Rust (never SQLite's own clock); booleans are INTEGER 0/1; sealed values are BLOBs in the
-- vault's format; Salesforce ids are their 18-character TEXT; connection ids are UUID TEXT.
-- Later migrations are expected to add a refresh lease (ALTER TABLE connections ADD COLUMN
-- lease_owner / lease_expires_at), a rotation-in-flight record and a refresh-attempt lineage
-- table, both keyed by connections.id (stable across reconnects) with ON DELETE CASCADE.

CREATE TABLE pending_authorizations (
    state_hash   TEXT    NOT NULL PRIMARY KEY,
    verifier     BLOB    NOT NULL,
    expected_org TEXT,
    context      TEXT    NOT NULL,
    login_host   TEXT    NOT NULL,
    redirect_uri TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX pending_authorizations_by_expiry ON pending_authorizations (expires_at);

CREATE TABLE connections (
    id                 TEXT    NOT NULL PRIMARY KEY,
    org_id             TEXT    NOT NULL,
    context            TEXT    NOT NULL,
    user_id            TEXT    NOT NULL,
    username           TEXT    NOT NULL,
    instance_url       TEXT    NOT NULL,
    login_host         TEXT    NOT NULL,
    identity_url       TEXT    NOT NULL,
    scopes             TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    state_cause        TEXT,
    pkce               INTEGER NOT NULL CHECK (pkce IN (0, 1)),
    rotation_seen      INTEGER NOT NULL CHECK (rotation_seen IN (0, 1)),
    signature_verified INTEGER NOT NULL CHECK (signature_verified IN (0, 1)),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_refresh_at    INTEGER,
    generation         INTEGER NOT NULL CHECK (generation >= 1),
    access_token       BLOB    NOT NULL,
    access_issued_at   INTEGER NOT NULL,
    access_expires_at  INTEGER NOT NULL,
    refresh_token      BLOB,
    UNIQUE (org_id, context)
) STRICT;
