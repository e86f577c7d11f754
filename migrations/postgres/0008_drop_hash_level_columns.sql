-- The hash levels L0-L3 are computed from a record whenever they are needed (redacted stubs) and
-- were never read back from these columns: about 260 bytes of every stored record.
ALTER TABLE records DROP COLUMN l0, DROP COLUMN l1, DROP COLUMN l2, DROP COLUMN l3;
