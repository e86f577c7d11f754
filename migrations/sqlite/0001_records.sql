-- The record log. `seq` is the ingest sequence: the rowid, which SQLite hands out as max + 1 under
-- its single write lock, so within a tenant it is strictly increasing and a reader holding cursor N
-- never later sees a smaller number commit.
CREATE TABLE records (
    seq         INTEGER PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    thread      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    clock       INTEGER NOT NULL,
    act         TEXT    NOT NULL,
    data_type   TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    l0          TEXT    NOT NULL,
    l1          TEXT    NOT NULL,
    l2          TEXT    NOT NULL,
    l3          TEXT    NOT NULL,
    -- The record as the API returns it, minus `sequence` (spliced in on the way out).
    record_json TEXT    NOT NULL
);
CREATE UNIQUE INDEX records_tenant_id ON records (tenant, id);
CREATE UNIQUE INDEX records_tenant_clock ON records (tenant, thread, actor, clock);
CREATE INDEX records_tenant_thread_seq ON records (tenant, thread, seq);
-- No index on actor: every secondary index costs a page write per record at ingest, and an actor
-- filter without a thread is a scan in sequence order, acceptable for one local tenant.

-- A cache of a fold over `records`, kept by the trigger below; rebuildable from the log.
CREATE TABLE threads (
    tenant       TEXT    NOT NULL,
    thread       TEXT    NOT NULL,
    namespace    TEXT    NOT NULL,
    record_count INTEGER NOT NULL,
    last_clock   INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    PRIMARY KEY (tenant, thread)
) WITHOUT ROWID;
CREATE INDEX threads_tenant_recent ON threads (tenant, last_seq DESC);

-- Full-text index over the string values of each record body (contentless: the text lives in
-- record_json already). rowid = records.seq. Kept off the ingest commit: the writer indexes every
-- record after `indexed_seq` in one transaction, every few thousand records and before any search.
CREATE VIRTUAL TABLE records_fts USING fts5 (text, content = '', tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE search_index_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq INTEGER NOT NULL
);
INSERT INTO search_index_state (id, indexed_seq) VALUES (1, 0);

-- The trigger keeps the thread summaries inside the inserting statement, so a group commit pays no
-- extra round trips.
CREATE TRIGGER records_after_insert AFTER INSERT ON records
BEGIN
    INSERT INTO threads (tenant, thread, namespace, record_count, last_clock, last_seq)
    VALUES (new.tenant, new.thread, new.namespace, 1, new.clock, new.seq)
    ON CONFLICT (tenant, thread) DO UPDATE SET
        record_count = record_count + 1,
        last_clock = max(last_clock, excluded.last_clock),
        last_seq = excluded.last_seq;
END;

CREATE TABLE service_accounts (
    tenant         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    scopes         TEXT    NOT NULL, -- JSON array
    allowed_actors TEXT    NOT NULL, -- JSON array; empty = any actor
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

-- Tokens are stored only as token_id = SHA-256 of the whole token.
CREATE TABLE tokens (
    tenant     TEXT    NOT NULL,
    token_id   TEXT    NOT NULL,
    sa_id      TEXT    NOT NULL,
    scopes     TEXT    NOT NULL, -- snapshot of the account's scopes at mint time
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    PRIMARY KEY (tenant, token_id)
) WITHOUT ROWID;
