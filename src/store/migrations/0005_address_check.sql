-- What the address checker said of each registered address when it was
-- stored: address_state is 'valid', 'invalid' or 'unchecked' (for listing
-- the invalid ones), address_check the whole answer as JSON text
-- ({"state", "elements", "reason"}). NULL for an address stored before
-- this migration, and for a number without an address of its own.
ALTER TABLE numbers ADD COLUMN address_state TEXT;
ALTER TABLE numbers ADD COLUMN address_check TEXT;
ALTER TABLE locations ADD COLUMN address_state TEXT;
ALTER TABLE locations ADD COLUMN address_check TEXT;
CREATE INDEX numbers_by_address_state ON numbers (tenant, address_state, number);
