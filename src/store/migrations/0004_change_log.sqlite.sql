-- The inventory change log (SQLite; 0004_change_log.postgres.sql is the
-- same for PostgreSQL but for the sequence column). Every inventory change
-- appends, in its own transaction, one row per number (tenant, number),
-- tenant location (tenant, location id) or security desk webhook (tenant)
-- it changed. Instances apply the rows after the last one they applied,
-- in `seq` order, instead of reloading the whole inventory. Writers take
-- the inventory_version row first, so sequence numbers are handed out in
-- commit order.
CREATE TABLE inventory_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'number', 'location' or 'desk'.
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    -- The number or the location id; '' for a desk.
    subject TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

-- Rows up to this sequence number were trimmed: an instance that applied
-- fewer reloads the whole inventory.
ALTER TABLE inventory_version ADD COLUMN trimmed_seq BIGINT NOT NULL DEFAULT 0;

-- The numbers that take their address from a changed location.
CREATE INDEX numbers_by_location ON numbers (tenant, location_id);
