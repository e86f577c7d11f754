-- did:sync directory (FEDERATION §1.4). Ops are stored exactly as received (canonical JSON);
-- everything else is derived from them and rewritten by the op that changes it.

CREATE TABLE ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    did TEXT NOT NULL,
    cid TEXT NOT NULL UNIQUE,
    op TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    nullified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ops_did ON ops (did, seq);

-- One row per DID: the precomputed document keeps resolution to one indexed lookup.
CREATE TABLE dids (
    hash TEXT PRIMARY KEY,
    did TEXT NOT NULL UNIQUE,
    head TEXT NOT NULL,
    document TEXT NOT NULL,
    deactivated INTEGER NOT NULL,
    endpoint TEXT,
    handles TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE handles (
    handle TEXT PRIMARY KEY,
    did TEXT NOT NULL
);
CREATE INDEX handles_did ON handles (did);

CREATE TABLE namespaces (
    namespace TEXT NOT NULL,
    did TEXT NOT NULL,
    PRIMARY KEY (namespace, did)
);
CREATE INDEX namespaces_did ON namespaces (did);
