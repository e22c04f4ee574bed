-- The number inventory, tenant locations, security desk webhooks and the
-- audit log. Written for SQLite and PostgreSQL alike: TEXT, BIGINT and
-- DOUBLE PRECISION columns only; flags are 0/1; JSON is kept as text.

-- One row, bumped by every inventory change: instances compare it with the
-- version of the snapshot they route on.
CREATE TABLE inventory_version (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO inventory_version (id, version) VALUES (1, 0);

CREATE TABLE numbers (
    number TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    country TEXT NOT NULL,
    common_area_phone BIGINT NOT NULL DEFAULT 0,
    may_set_address BIGINT NOT NULL DEFAULT 0,
    may_change_address BIGINT NOT NULL DEFAULT 0,
    may_delete_address BIGINT NOT NULL DEFAULT 0,
    location_id TEXT,
    -- The registered address: RFC 5139 elements as a JSON object (and
    -- "lang"); NULL when the number has none of its own.
    address_civic TEXT,
    address_lat DOUBLE PRECISION,
    address_lon DOUBLE PRECISION,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX numbers_by_tenant ON numbers (tenant, number);

CREATE TABLE locations (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    address_civic TEXT NOT NULL,
    address_lat DOUBLE PRECISION,
    address_lon DOUBLE PRECISION,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE security_desks (
    tenant TEXT PRIMARY KEY,
    webhook_url TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- Every change to an emergency address, a capability, a location or a
-- webhook: who (the token's name), when, and the values before and after
-- (JSON text, NULL for none).
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    field TEXT NOT NULL,
    action TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at_ms, id);
