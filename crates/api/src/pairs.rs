//! Record-bound pairs, as the operator manages them (federation-protocol.md §3, §4): starting a
//! pairing, the pair views, pause/resume/revoke, and the requests waiting for approval.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use syncropel_protocol::{
    CursorCheckpoint, NamespaceMap, PairPhase, PairRole, PairState, PairTokens, PairView,
};

/// `POST /v1/federation/pairs`: pair with the steward at `peer_url` (`spl federation pair`).
/// No namespaces means `default`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartPair {
    pub peer_url: String,
    pub maps: Vec<NamespaceMap>,
    pub namespaces: Vec<String>,
    /// Take the peer's manifest even if it has expired (`--no-strict`); its signature must
    /// still verify.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_strict: bool,
}

/// The body of pause, resume and revoke of a pair, and of approve and reject of a request:
/// an optional reason (revoke's default is `operator`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairReason {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One pair as its records describe it ([`PairView`]), with the health of its pull jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "federation_pair")]
pub struct FederationPair {
    #[serde(default)]
    pub pair_id: String,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub peer_did: String,
    #[serde(default)]
    pub peer_url: Option<String>,
    pub role: PairRole,
    pub state: PairState,
    #[serde(default)]
    pub phase: Option<PairPhase>,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub poll_interval_secs: u64,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub tokens: PairTokens,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub maps: Vec<NamespaceMap>,
    #[serde(default)]
    pub thread_allow: BTreeSet<String>,
    #[serde(default)]
    pub thread_rule: Option<String>,
    #[serde(default)]
    pub relays: Vec<String>,
    #[serde(default)]
    pub cursors: BTreeMap<String, CursorCheckpoint>,
    #[serde(default)]
    pub peer_manifest_sha256: Option<String>,
    #[serde(default)]
    pub degraded_cause: Option<String>,
    #[serde(default)]
    pub genesis_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub next_parents: Vec<String>,
    #[serde(default)]
    pub sync_health: SyncHealth,
}

impl FederationPair {
    /// The view of `pair` with the health of its jobs.
    pub fn new(pair: PairView, sync_health: SyncHealth) -> FederationPair {
        let PairView {
            pair_id,
            generation,
            peer_did,
            peer_url,
            role,
            state,
            phase,
            mode,
            poll_interval_secs,
            scopes,
            tokens,
            namespaces,
            maps,
            thread_allow,
            thread_rule,
            relays,
            cursors,
            peer_manifest_sha256,
            degraded_cause,
            genesis_id,
            created_at,
            next_parents,
        } = pair;
        FederationPair {
            pair_id,
            generation,
            peer_did,
            peer_url,
            role,
            state,
            phase,
            mode,
            poll_interval_secs,
            scopes,
            tokens,
            namespaces,
            maps,
            thread_allow,
            thread_rule,
            relays,
            cursors,
            peer_manifest_sha256,
            degraded_cause,
            genesis_id,
            created_at,
            next_parents,
            sync_health,
        }
    }
}

/// How a pair's pulls go: `failing` while any job fails (with that job's last error), else `ok`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncHealth {
    pub status: String,
    pub last_error: Option<PullFailure>,
    pub jobs: Vec<PullJobHealth>,
}

/// The health of one pull job (a source and a thread), kept in memory, not recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullJobHealth {
    pub source: String,
    pub thread: String,
    /// `starting`, `ok`, `relay` (its source unreachable, pulling from the source's relays),
    /// `failing` or `parked`.
    pub status: String,
    pub retries: u32,
    pub last_error: Option<PullFailure>,
    /// Unix seconds.
    pub last_success_at: Option<i64>,
    /// Unix seconds.
    pub next_attempt_at: Option<i64>,
    /// The current upper bound of the backoff delay.
    pub backoff_ceiling_ms: u64,
    pub pulled: u64,
    /// How it waits for new records: `longpoll`, or `continuous` while it holds the source's
    /// continuous feed open.
    pub feed: String,
}

/// A pair's recent sync events, newest first (`GET /v1/sync/pairs/{id}/trace`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_trace", default)]
pub struct SyncTrace {
    pub pair_id: String,
    pub events: Vec<SyncEvent>,
}

/// One event of a pair's recent sync (`GET /v1/sync/pairs/{id}/trace`): a pull and what it
/// did. Consecutive alike events (the same thread, route and outcome with nothing pulled: empty
/// longpolls, say) are one event with a `count`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncEvent {
    /// Unix seconds of the first of them.
    pub at: i64,
    /// Unix seconds of the last of them.
    pub last_at: i64,
    pub count: u64,
    pub thread: String,
    /// `source` (pages and longpolls), `feed` (the continuous feed) or `relay`.
    pub via: String,
    /// `pulled` (records came), `empty`, `failed`, `parked` (the pair may not be pulled now)
    /// or `idle` (an on-demand pair waiting to be asked).
    pub outcome: String,
    pub pulled: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub error: Option<PullFailure>,
    /// How long the pull took, a held longpoll included (of the last of them).
    pub duration_ms: u64,
}

/// Why the last pull of a job failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullFailure {
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    /// Unix seconds.
    pub at: i64,
}

/// A pair request waiting for the operator (`GET /v1/federation/pending`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_pending", default)]
pub struct PendingPair {
    pub pair_id: String,
    pub peer_did: String,
    pub peer_url: String,
    /// The first namespace the peer asked to share (upstream's field).
    pub namespace: Option<String>,
    /// Every namespace the peer asked to share: approving grants exactly these and `maps`.
    pub namespaces: Vec<String>,
    pub maps: Vec<NamespaceMap>,
    /// RFC 3339.
    pub expires_at: String,
}

/// The answer to approving or rejecting a pending request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_pending", default)]
pub struct PendingDecision {
    pub pair_id: String,
    pub peer_did: String,
    /// `approved` or `rejected`.
    pub status: String,
}

/// The answer to a peer's revoke notice (`POST /v1/federation/pair/notify-revoke`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "pair_revoked", default)]
pub struct PairRevoked {
    pub pair_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_pair_writes_its_view_the_tag_and_its_health() {
        let view = PairView {
            pair_id: "fed_1".into(),
            generation: 2,
            peer_did: "did:web:bob.example".into(),
            peer_url: None,
            role: PairRole::Initiator,
            state: PairState::Degraded,
            phase: None,
            mode: "polling".into(),
            poll_interval_secs: 2,
            scopes: vec!["federation:sync_pull".into()],
            tokens: PairTokens::default(),
            namespaces: vec!["default".into()],
            maps: vec![NamespaceMap {
                local: "a".into(),
                peer: "b".into(),
            }],
            thread_allow: BTreeSet::new(),
            thread_rule: None,
            relays: Vec::new(),
            cursors: BTreeMap::from([("th_x".to_owned(), CursorCheckpoint { cursor: "c".into() })]),
            peer_manifest_sha256: Some("ab".into()),
            degraded_cause: Some("auth_401".into()),
            genesis_id: None,
            created_at: Some("2026-12-01T00:00:00Z".into()),
            next_parents: vec!["r1".into()],
        };
        let failure = PullFailure {
            code: "HTTP_4XX".into(),
            message: "m".into(),
            http_status: Some(401),
            at: 5,
        };
        let health = SyncHealth {
            status: "failing".into(),
            last_error: Some(failure.clone()),
            jobs: vec![PullJobHealth {
                source: "fed_1".into(),
                thread: "th_x".into(),
                status: "failing".into(),
                retries: 3,
                last_error: Some(failure),
                last_success_at: None,
                next_attempt_at: Some(9),
                backoff_ceiling_ms: 8000,
                pulled: 0,
                feed: "longpoll".into(),
            }],
        };
        // As the steward builds it: the view's members, then `object` and `sync_health`.
        let mut expected = serde_json::to_value(&view).unwrap();
        expected["object"] = json!("federation_pair");
        expected["sync_health"] = json!({
            "status": "failing",
            "last_error": {"code": "HTTP_4XX", "message": "m", "http_status": 401, "at": 5},
            "jobs": [{"source": "fed_1", "thread": "th_x", "status": "failing", "retries": 3,
                      "last_error": {"code": "HTTP_4XX", "message": "m", "http_status": 401, "at": 5},
                      "last_success_at": null, "next_attempt_at": 9, "backoff_ceiling_ms": 8000,
                      "pulled": 0, "feed": "longpoll"}],
        });
        let pair = FederationPair::new(view, health);
        assert_eq!(serde_json::to_value(&pair).unwrap(), expected);
        let back: FederationPair = serde_json::from_value(expected).unwrap();
        assert_eq!(back, pair);
    }

    #[test]
    fn a_partial_pair_reads_with_defaults() {
        let pair: FederationPair = serde_json::from_value(json!({
            "object": "federation_pair", "pair_id": "fed_1", "peer_did": "did:web:bob.example",
            "peer_url": "https://bob.example", "role": "initiator", "state": "active"
        }))
        .unwrap();
        assert_eq!(pair.state, PairState::Active);
        assert_eq!(pair.generation, 0);
        assert!(serde_json::from_value::<FederationPair>(json!({"pair_id": "fed_1"})).is_err());
    }

    #[test]
    fn pending_requests_and_decisions() {
        let pending = PendingPair {
            pair_id: "fed_9".into(),
            peer_did: "did:web:carol.example".into(),
            peer_url: "https://carol.example".into(),
            namespace: Some("default".into()),
            namespaces: vec!["default".into(), "finance".into()],
            maps: vec![],
            expires_at: "2026-05-02T12:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&pending).unwrap(),
            json!({"object": "pair_pending", "pair_id": "fed_9", "peer_did": "did:web:carol.example",
                   "peer_url": "https://carol.example", "namespace": "default",
                   "namespaces": ["default", "finance"], "maps": [],
                   "expires_at": "2026-05-02T12:00:00Z"})
        );
        let decision: PendingDecision = serde_json::from_value(json!({})).unwrap();
        assert_eq!(decision, PendingDecision::default());
        assert_eq!(
            serde_json::to_value(PairReason::default()).unwrap(),
            Value::Object(Default::default())
        );
    }
}
