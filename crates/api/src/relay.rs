//! The relay side of a steward as its operator sees it (federation-protocol.md §7.4, §7.6):
//! `GET /v1/federation/relay` (the relays, each reachable or not, and the outbox),
//! `GET /v1/federation/relay/queues` (the queues the relays hold for and from this steward),
//! `POST /v1/federation/relay/kick` and `POST /v1/federation/relay/purge`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the outbox is with one queue at one relay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxRow {
    pub relay: String,
    pub queue_id: String,
    pub peer_did: String,
    pub thread: String,
    /// Deposited (acknowledged by the relay) up to this source sequence.
    pub deposited_through: i64,
    /// The destination holds everything up to here (it pulled from here directly).
    pub confirmed_through: i64,
    /// The relay was told it may drop what is confirmed, up to here, at `trimmed_at`.
    pub trimmed_through: i64,
    pub trimmed_at: i64,
    /// The relay's `expired_through_sseq` already deposited again.
    pub expired_seen_through: i64,
    /// `active`, `purging` (the queue must be emptied at the relay first) or `closed` (the
    /// destination deleted it).
    pub state: String,
    /// What the deposits were filtered by: a change of pair scope or consent purges the queue.
    pub filter: String,
    pub deposited_items: u64,
    /// Items per envelope (0: the most); smaller after a full queue, so that what fits still
    /// goes.
    pub batch: u32,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_progress_at: i64,
    /// Set once a row has made no progress for 7 days; it keeps retrying.
    pub stalled_since: Option<i64>,
}

/// One of the steward's relays, asked for its `/health` now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayEndpoint {
    pub url: String,
    pub reachable: bool,
    pub error: Option<String>,
}

/// `GET /v1/federation/relay`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayStatus {
    /// `"relay_status"`.
    pub object: String,
    pub relays: Vec<RelayEndpoint>,
    pub offline_capable: bool,
    pub outbox: Vec<OutboxRow>,
}

/// `GET /v1/federation/relay/queues?peer=&thread=`: each queue's status as its relay answers
/// it (`object: "relay_queue"`), with the relay's URL under `relay`; a relay that could not be
/// asked is listed in `unreachable`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayQueues {
    /// `"list"`.
    pub object: String,
    pub data: Vec<Value>,
    pub unreachable: Vec<RelayEndpoint>,
}

/// `POST /v1/federation/relay/purge`: empty a peer's queues at every relay and deposit again
/// what it may still see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPurge {
    /// The peer's DID or a pair id.
    pub peer: String,
}

/// The answer of a kick or a purge: the outbox rows it touched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayKicked {
    /// `"relay_kick"` or `"relay_purge"`.
    pub object: String,
    pub rows: usize,
}
