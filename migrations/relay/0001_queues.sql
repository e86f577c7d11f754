-- The relay's queues and the nonces of signed calls (federation-protocol.md §7.3). A queue carries one thread of one pair to
-- one destination; its envelopes are kept as the exact bytes the source deposited, numbered by
-- `rseq` under the queue's row lock, so the numbers commit in order and a relay cursor never
-- skips one. `relay_usage` holds what the bounds apply to: per (source, destination), summed
-- over their queues.
CREATE TABLE relay_queues (
    queue_id         text    PRIMARY KEY,
    -- Names this life of the queue: relay cursors carry it, so one kept across a drop and a
    -- reopen is refused (`409 CURSOR_EPOCH_MISMATCH`) instead of skipping envelopes.
    incarnation      text    NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 16),
    source_did       text    NOT NULL,
    dest_did         text    NOT NULL,
    pair_id          text    NOT NULL,
    generation       bigint  NOT NULL,
    thread           text    NOT NULL,
    target_namespace text    NOT NULL,
    opened_by        text    NOT NULL,
    ttl_secs         bigint  NOT NULL,
    closed_at        bigint,
    next_rseq        bigint  NOT NULL DEFAULT 1,
    envelopes        bigint  NOT NULL DEFAULT 0,
    items            bigint  NOT NULL DEFAULT 0,
    bytes            bigint  NOT NULL DEFAULT 0,
    head_sseq        bigint  NOT NULL DEFAULT 0,
    -- What expired before anyone pulled it, seen by both sides.
    expired_items        bigint NOT NULL DEFAULT 0,
    expired_through_sseq bigint NOT NULL DEFAULT 0,
    last_deposit_at  bigint
);
CREATE INDEX relay_queues_source ON relay_queues (source_did);
CREATE INDEX relay_queues_dest ON relay_queues (dest_did);

CREATE TABLE relay_envelopes (
    queue_id     text    NOT NULL REFERENCES relay_queues ON DELETE CASCADE,
    rseq         bigint  NOT NULL,
    envelope_id  text    NOT NULL,
    source_epoch text    NOT NULL,
    first_sseq   bigint  NOT NULL,
    last_sseq    bigint  NOT NULL,
    items        bigint  NOT NULL,
    bytes        bigint  NOT NULL,
    body         bytea   NOT NULL,
    enqueued_at  bigint  NOT NULL,
    expires_at   bigint  NOT NULL,
    PRIMARY KEY (queue_id, rseq),
    UNIQUE (queue_id, envelope_id)
);
CREATE INDEX relay_envelopes_expiry ON relay_envelopes (expires_at);

CREATE TABLE relay_usage (
    source_did text   NOT NULL,
    dest_did   text   NOT NULL,
    items      bigint NOT NULL DEFAULT 0,
    bytes      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source_did, dest_did)
);

-- Nonces of signed calls, once per DID for as long as a call could still be fresh, shared by
-- every replica: a replayed call finds its nonce here.
CREATE TABLE relay_nonces (
    did        text   NOT NULL,
    nonce      text   NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (did, nonce)
);
