-- 0001: pending authorizations and connections. Append-only: change the schema in a new file.
--
-- Conventions: times are TIMESTAMPTZ bound from Rust (never now()); sealed values are BYTEA in
-- the vault's format; Salesforce ids are their 18-character TEXT. Keys that are paged or
-- listed in order use COLLATE "C" so the order is bytewise whatever the database locale.
-- Later migrations are expected to add a refresh lease (ALTER TABLE connections ADD COLUMN
-- lease_owner / lease_expires_at), a rotation-in-flight record and a refresh-attempt lineage
-- table, both keyed by connections.id (stable across reconnects) with ON DELETE CASCADE.

CREATE TABLE pending_authorizations (
    state_hash   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    verifier     BYTEA       NOT NULL,
    expected_org TEXT,
    context      TEXT        NOT NULL,
    login_host   TEXT        NOT NULL,
    redirect_uri TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX pending_authorizations_by_expiry ON pending_authorizations (expires_at);

CREATE TABLE connections (
    id                 UUID        NOT NULL PRIMARY KEY,
    org_id             TEXT COLLATE "C" NOT NULL,
    context            TEXT COLLATE "C" NOT NULL,
    user_id            TEXT        NOT NULL,
    username           TEXT        NOT NULL,
    instance_url       TEXT        NOT NULL,
    login_host         TEXT        NOT NULL,
    identity_url       TEXT        NOT NULL,
    scopes             TEXT        NOT NULL,
    state              TEXT        NOT NULL,
    state_cause        TEXT,
    pkce               BOOLEAN     NOT NULL,
    rotation_seen      BOOLEAN     NOT NULL,
    signature_verified BOOLEAN     NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    last_refresh_at    TIMESTAMPTZ,
    generation         BIGINT      NOT NULL CHECK (generation >= 1),
    access_token       BYTEA       NOT NULL,
    access_issued_at   TIMESTAMPTZ NOT NULL,
    access_expires_at  TIMESTAMPTZ NOT NULL,
    refresh_token      BYTEA,
    UNIQUE (org_id, context)
);
