-- A token minted under a membership or agent grant names that grant: the grant's liveness is
-- checked on every request (protocol.md §10.2), so revoking one grant ends every credential under it.
ALTER TABLE tokens ADD COLUMN grant_id TEXT;
