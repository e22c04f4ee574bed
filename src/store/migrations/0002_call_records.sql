-- Call records: the whole record as JSON text, with the columns exports
-- filter and page on.
CREATE TABLE call_records (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    invite_ms BIGINT NOT NULL,
    call_id TEXT NOT NULL,
    caller_number TEXT,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX call_records_by_time ON call_records (invite_ms, id);
CREATE INDEX call_records_by_tenant ON call_records (tenant, invite_ms, id);
