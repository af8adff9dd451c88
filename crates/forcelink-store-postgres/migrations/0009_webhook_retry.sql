-- 0009: an operator can retry failed webhook deliveries. Append-only: change the schema in a
-- new file.
--
-- retry_base is the number of attempts a delivery had when an operator last retried it (0 if
-- never): the worker counts its attempt budget and backoff from there, while `attempts` keeps
-- counting every attempt, so the attempt log's numbers stay unique.
ALTER TABLE webhook_deliveries ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0
    CHECK (retry_base >= 0);
