-- Federation state that is not a fold over records: pull cursors (moved in the transaction that
-- ingests their page), handshakes in flight, secrets issued to us by peers, quarantined records.
-- Small keyed documents; `kind` says which.
CREATE TABLE federation_state (
    tenant     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, key)
) WITHOUT ROWID;
