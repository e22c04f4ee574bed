-- numbers_by_address_state (0005) served no query: the only one that
-- filters on the check state (a tenant's numbers whose address is
-- invalid, say) reads the state of the number's own address or of its
-- location's, an expression over a join, and walks numbers_by_tenant.
-- The index cost a B-tree write for every number stored, a million of
-- them on a million-row upload.
DROP INDEX IF EXISTS numbers_by_address_state;
