-- The bytes of record JSON each tenant holds, kept by the writer beside `last_seq` in the same
-- transaction, so that a ceiling on a tenant's store (records pulled from peers stop there) is
-- one key lookup, never a scan.
ALTER TABLE tenant_counters ADD COLUMN bytes bigint NOT NULL DEFAULT 0;
UPDATE tenant_counters c
SET bytes = (SELECT coalesce(sum(octet_length(r.record_json)), 0) FROM records r WHERE r.tenant = c.tenant);
