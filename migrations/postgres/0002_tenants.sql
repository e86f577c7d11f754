-- The hosted platform: tenants and their provisioning (FEDERATION §8.1).
--
-- * A tenant's id (`tn_…`) is the partition key of `records`; its label (`<label>.<base-domain>`)
--   is how requests find it. They differ so that a label freed after its grace period can serve a
--   new tenant that shares nothing with the old one.
-- * The tenant's Ed25519 seed is stored only sealed with the platform's key-encryption key
--   (XChaCha20-Poly1305, the tenant id as associated data): the database never holds it in the clear.
-- * `status`: provisioning -> active <-> suspended -> deleted -> purged. Deleted tenants stay
--   readable (export works) until the grace period ends; then the sweeper purges their rows and the
--   label is free again, which is exactly what the partial unique index says.
CREATE TABLE tenants (
    id             text        PRIMARY KEY,
    label          text        NOT NULL,
    account        text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted', 'purged')),
    did            text        NOT NULL,
    key_nonce      bytea       NOT NULL,
    key_sealed     bytea       NOT NULL,
    recovery_key   text,
    manifest       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX tenants_live_label ON tenants (label) WHERE status <> 'purged';
CREATE INDEX tenants_account ON tenants (account) WHERE status <> 'purged';
CREATE INDEX tenants_deleted ON tenants (deleted_at) WHERE status = 'deleted';

-- One row per provisioning request. `(account, idempotency_key)` makes retries safe: the same key
-- with the same request (by `request_sha256`) answers the same instance; with another, 409.
CREATE TABLE provisions (
    instance_id     text        PRIMARY KEY,
    account         text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_sha256  text        NOT NULL,
    label           text        NOT NULL,
    tenant          text        NOT NULL REFERENCES tenants (id),
    phase           text        NOT NULL,
    phases          jsonb       NOT NULL,
    error           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account, idempotency_key)
);
