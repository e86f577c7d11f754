-- Federation state that is not a fold over records: pull cursors (moved in the transaction that
-- ingests their page), handshakes in flight, secrets issued to us by peers (sealed by the
-- steward before they get here), quarantined records. Small keyed documents; `kind` says which.
CREATE TABLE federation_state (
    tenant     text   NOT NULL,
    kind       text   NOT NULL,
    key        text   NOT NULL,
    value      text   NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (tenant, kind, key)
);
