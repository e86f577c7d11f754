//! Sync between stewards (federation-protocol.md §5): the changes feed and fetch-by-id a peer pulls
//! from, the operator's one-shot pull, and the older one-thread sync pairs
//! (federation-protocol.md §5.7).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pairs::PullFailure;

/// `GET /v1/sync/changes` (also `/v1/federation/sync/changes`), with a pair token and
/// `X-Syncropel-Actor` (query string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesParams {
    pub thread: String,
    /// The cursor held; empty for the start of the thread.
    pub since: String,
    pub limit: Option<u32>,
    /// `feed=longpoll`: the steward holds an empty answer up to 30 s for the next commit.
    pub longpoll: bool,
    /// The namespace the puller lands the records in (default `default`).
    pub target_namespace: Option<String>,
}

/// A page of the changes feed: items (`{"id", "record", …}`, redacted stubs included) in commit
/// order, and the cursor to hold once they are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_changes")]
pub struct ChangesPage<I = Value> {
    /// The thread the page is for (always the requested one).
    pub thread: String,
    pub records: Vec<I>,
    pub next_cursor: String,
    /// `true`: call again at once.
    pub has_more: bool,
}

/// `POST /v1/sync/records` (`?target_namespace=`): specific records, such as missing parents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchRecords {
    /// At most 1000.
    pub ids: Vec<String>,
}

/// The records of a fetch, filtered as a page is; unknown ids are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_records")]
pub struct SyncRecords<I = Value> {
    #[serde(default = "Vec::new")]
    pub records: Vec<I>,
}

/// `POST /v1/sync/pull` (`spl sync <THREAD> from <PEER>`): pull a thread now, through the pair
/// with `peer` (id, DID or URL), or from a URL with `peer_token` and no pair. Through a pair,
/// `namespace` names our namespace the thread's records land in (federation-protocol.md §6.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    pub thread: String,
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The body of `POST /v1/federation/pairs/{id}/push`: a thread to send the pair's peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushThread {
    pub thread: String,
    /// The peer's namespace the records land in (default `default`), as its pull would name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
}

/// What pushing a thread to a pair's peer did there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_push", default)]
pub struct PushSent {
    pub thread: String,
    /// Items sent.
    pub pushed: u64,
    /// Requests it took.
    pub requests: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    /// Held back by the peer, with why: it need not be sent again.
    pub rejected: Vec<PushRejected>,
}

/// A pushed record the receiver holds in quarantine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushRejected {
    pub id: String,
    pub code: String,
}

/// A record a peer sent that is held in quarantine here, never stored in the log
/// (`GET /v1/sync/quarantine`, federation-protocol.md §5.9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantinedRecord {
    /// What it came through: a pair's id, a legacy sync pair's (`sp_…`), or `once_…` for a
    /// one-shot pull with a peer token.
    pub source: String,
    pub id: String,
    pub thread: String,
    pub actor: String,
    /// Why it is held: `SIGNER_UNRESOLVED`, `NAMESPACE_REJECTED`, `SIGNATURE_INVALID`, ….
    pub code: String,
    /// Unix seconds it was quarantined; for `SIGNER_UNRESOLVED`, when it first was.
    pub at: i64,
}

/// What a one-shot pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_result", default)]
pub struct PullResult {
    pub thread: String,
    pub peer: String,
    /// Records stored for the first time.
    pub pulled: u64,
    /// Records already held.
    pub duplicates: u64,
    pub quarantined: u64,
    /// The cursor now held.
    pub cursor: String,
}

/// `POST /v1/sync/pairs`: pull `thread_id` from the peer continuously (a legacy sync pair).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateSyncPair {
    pub peer_did: String,
    pub thread_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_url: Option<String>,
    /// The peer's token, when no record-bound pair with it holds one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_token: Option<String>,
}

/// A legacy sync pair and the health of its job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename = "sync_pair", default)]
pub struct SyncPair {
    pub pair_id: String,
    pub peer_did: String,
    pub peer_url: String,
    pub thread_id: String,
    /// `starting`, `running`, `failing`, `paused` or `stopped`.
    pub state: String,
    pub retries: u32,
    pub poll_interval_secs: u64,
    /// Unix seconds.
    pub last_success_at: Option<i64>,
    /// Unix seconds.
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<PullFailure>,
    pub backoff_ceiling_ms: u64,
    pub pulled: u64,
    /// Only when created: why pulls will be refused until a token exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pages_and_fetches_write_their_envelopes() {
        let page = ChangesPage {
            thread: "th_x".into(),
            records: vec![json!({"id": "a", "record": {}})],
            next_cursor: "c".into(),
            has_more: false,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"object": "sync_changes", "thread": "th_x",
                   "records": [{"id": "a", "record": {}}], "next_cursor": "c", "has_more": false})
        );
        assert_eq!(
            serde_json::to_value(SyncRecords::<Value> { records: vec![] }).unwrap(),
            json!({"object": "sync_records", "records": []})
        );
    }

    #[test]
    fn sync_pairs_write_their_warning_only_when_there_is_one() {
        let pair = SyncPair {
            pair_id: "sp_1".into(),
            state: "starting".into(),
            poll_interval_secs: 2,
            ..SyncPair::default()
        };
        let written = serde_json::to_value(&pair).unwrap();
        assert_eq!(
            written,
            json!({"object": "sync_pair", "pair_id": "sp_1", "peer_did": "", "peer_url": "",
                   "thread_id": "", "state": "starting", "retries": 0, "poll_interval_secs": 2,
                   "last_success_at": null, "next_attempt_at": null, "last_error": null,
                   "backoff_ceiling_ms": 0, "pulled": 0})
        );
        let warned = SyncPair {
            warning: Some("no token".into()),
            ..pair
        };
        assert_eq!(
            serde_json::to_value(&warned).unwrap()["warning"],
            "no token"
        );
        assert_eq!(
            serde_json::to_value(PullRequest {
                thread: "th_x".into(),
                peer: "did:key:z6Mk1".into(),
                peer_token: None,
                namespace: None,
            })
            .unwrap(),
            json!({"thread": "th_x", "peer": "did:key:z6Mk1"})
        );
        assert_eq!(
            serde_json::to_value(PullRequest {
                thread: "th_x".into(),
                peer: "did:key:z6Mk1".into(),
                peer_token: None,
                namespace: Some("research".into()),
            })
            .unwrap(),
            json!({"thread": "th_x", "peer": "did:key:z6Mk1", "namespace": "research"})
        );
    }
}
