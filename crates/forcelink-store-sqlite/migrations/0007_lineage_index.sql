-- A refresh token belongs to one connection, so "which attempts presented this token" is
-- answered through the connection's lineage (refresh_attempts_by_connection). The index by
-- token hash cost every refresh a write at a random place in it, and grew with the lineage.
DROP INDEX IF EXISTS refresh_attempts_by_old_hash;
