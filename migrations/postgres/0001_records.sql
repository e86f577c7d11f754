-- The hosted record store: many tenants in one Postgres.
--
-- Why it looks like this:
-- * Every key and unique index starts with `tenant`, so every tenant query is an index range inside
--   one tenant, and the same schema distributes over a Citus cluster with `tenant` as the
--   distribution column when one Postgres is outgrown (no home-made sharding layer).
-- * `records` is declaratively partitioned BY HASH (tenant) into a fixed number of partitions created
--   here. Hash rather than list partitions: provisioning a tenant then needs no DDL (a tenant is
--   usable at once, and 10,000 tenants do not mean 10,000 tables and their planning cost), every
--   partition stays a similar size, and a query with `tenant = $1` still prunes to exactly one
--   partition (a test checks the plan). Sixteen keeps each partition's indexes small and vacuum
--   per partition cheap; changing the count later means re-partitioning (or moving to Citus).
-- * `seq` is a per-tenant commit counter (`tenant_counters`), advanced in the inserting
--   transaction under that tenant's counter row lock: a tenant's committers are serialized, so its
--   sequences commit in order and a reader holding cursor N never later sees a smaller one commit.
-- * `record_json` is the record as served, minus `sequence` (spliced in on the way out).
-- * `search` is the full-text vector of the body's string values, written with the row (so a
--   search always sees every committed record); the 'simple' configuration does no stemming and
--   no stop words, close to the SQLite backend's unicode61 tokenizer.
CREATE TABLE records (
    tenant      text   NOT NULL,
    seq         bigint NOT NULL,
    id          text   NOT NULL,
    thread      text   NOT NULL,
    actor       text   NOT NULL,
    clock       bigint NOT NULL,
    act         text   NOT NULL,
    data_type   text   NOT NULL,
    namespace   text   NOT NULL,
    created_at  bigint NOT NULL,
    l0          text   NOT NULL,
    l1          text   NOT NULL,
    l2          text   NOT NULL,
    l3          text   NOT NULL,
    record_json text   NOT NULL,
    search      tsvector NOT NULL,
    PRIMARY KEY (tenant, seq),
    CONSTRAINT records_tenant_id UNIQUE (tenant, id),
    CONSTRAINT records_tenant_clock UNIQUE (tenant, thread, actor, clock)
) PARTITION BY HASH (tenant);
CREATE INDEX records_tenant_thread_seq ON records (tenant, thread, seq);
-- A tsvector cannot lead a btree key; partition pruning on `tenant` narrows a search to one
-- partition's GIN index and the `tenant = $1` filter is rechecked on its hits.
CREATE INDEX records_search ON records USING gin (search);
-- No index on actor, as in SQLite: an actor filter without a thread scans one tenant in seq order.

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE records_p%s PARTITION OF records FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

-- The per-tenant commit counter: `last_seq` is the highest sequence handed out (and committed,
-- since it is updated in the inserting transaction).
CREATE TABLE tenant_counters (
    tenant   text   PRIMARY KEY,
    last_seq bigint NOT NULL
);

-- A cache of a fold over `records`, kept in the inserting transaction; rebuildable from the log.
CREATE TABLE threads (
    tenant       text   NOT NULL,
    thread       text   NOT NULL,
    namespace    text   NOT NULL, -- of the thread's first record
    record_count bigint NOT NULL,
    last_clock   bigint NOT NULL,
    last_seq     bigint NOT NULL,
    PRIMARY KEY (tenant, thread)
);
CREATE INDEX threads_tenant_recent ON threads (tenant, last_seq DESC);

CREATE TABLE service_accounts (
    tenant         text   NOT NULL,
    id             text   NOT NULL,
    name           text   NOT NULL,
    scopes         text[] NOT NULL,
    allowed_actors text[] NOT NULL, -- empty = any actor
    created_at     bigint NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Tokens are stored only as token_id = SHA-256 of the whole token.
CREATE TABLE tokens (
    tenant     text   NOT NULL,
    token_id   text   NOT NULL,
    sa_id      text   NOT NULL,
    scopes     text[] NOT NULL, -- snapshot of the account's scopes at mint time
    created_at bigint NOT NULL,
    expires_at bigint,
    revoked_at bigint,
    PRIMARY KEY (tenant, token_id)
);
