-- 0005: agent keys. Only the SHA-256 of a key is stored (hex); the key itself never is.
-- scope is '*' (all orgs) or comma-separated 18-character org ids; capabilities is
-- comma-separated (token, proxy). Names stay unique, revoked keys included, so a name in an
-- audit trail always means one key.
CREATE TABLE agent_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    key_hash     TEXT    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL,
    capabilities TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
