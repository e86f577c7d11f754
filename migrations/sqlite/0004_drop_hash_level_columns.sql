-- The hash levels L0-L3 are computed from a record whenever they are needed (redacted stubs) and
-- were never read back from these columns: about 260 bytes of every stored record.
ALTER TABLE records DROP COLUMN l0;
ALTER TABLE records DROP COLUMN l1;
ALTER TABLE records DROP COLUMN l2;
ALTER TABLE records DROP COLUMN l3;
