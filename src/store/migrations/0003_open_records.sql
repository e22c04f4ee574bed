-- Call records are written when the call is routed (outcome 'open') and
-- rewritten as it goes on. `node` is the router process that writes a
-- record (the first 16 characters of its id); NULL for records written
-- before this migration.
ALTER TABLE call_records ADD COLUMN node TEXT;
CREATE INDEX call_records_open ON call_records (node) WHERE outcome = 'open';

-- One row per running router process, renewed every few seconds and
-- deleted when the router stops cleanly: an 'open' record whose node has
-- no fresh row here was left by a router that was killed, and is closed
-- as 'interrupted'.
CREATE TABLE record_writers (
    node TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);
