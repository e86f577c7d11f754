//! Federation as the operator runs it: record-bound pairs and pending requests, consent grants,
//! one-shot pulls, legacy sync pairs, introductions and the mDNS roster. The steward talks to
//! the peers itself; this client never holds a peer's token.

use reqwest::{Method, StatusCode};
use syncropel_api::{
    AcceptL0, ConsentGrant, CreateGrant, CreateSyncPair, FederationPair, GrantRevoked,
    HandshakePending, Introductions, List, ListPage, MdnsRoster, PairGrant, PairIntroducible,
    PairReason, PendingDecision, PendingPair, PublicGrant, PullRequest, PullResult, PushSent,
    PushThread, QuarantinedRecord, RelayKicked, RelayPurge, RelayQueues, RelayStatus,
    SetIntroducible, StartPair, SyncPair, SyncTrace,
};

use crate::{reply, with_json, Client, ClientError, Reply};

/// Where a pairing stands after `start_pairing` or `continue_pairing`.
#[derive(Clone, Debug, PartialEq)]
pub enum Pairing {
    /// `200`: the pair is active (the peer approved at once, or the pair already existed).
    Paired(Box<FederationPair>),
    /// `202`: the peer's operator decides; poll again after `poll_after_ms`.
    Pending(HandshakePending),
}

impl Client {
    /// `POST /v1/federation/pairs`: pairs with the steward at `request.peer_url`.
    pub async fn start_pairing(&self, request: &StartPair) -> Result<Reply<Pairing>, ClientError> {
        let request = with_json(
            self.request(Method::POST, self.url("/v1/federation/pairs", &[])),
            request,
        )?;
        self.pairing(request).await
    }

    /// `POST /v1/federation/pairs/{pair_id}/poll`: asks the peer again about a pending pairing.
    pub async fn continue_pairing(&self, pair_id: &str) -> Result<Reply<Pairing>, ClientError> {
        let url = self.url(&pair_path(pair_id, Some("poll")), &[]);
        let request = with_json(self.request(Method::POST, url), &PairReason::default())?;
        self.pairing(request).await
    }

    async fn pairing(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply<Pairing>, ClientError> {
        let (status, body) = self.call(request).await?;
        let (value, json) = if status == StatusCode::ACCEPTED {
            let (pending, json) = reply::<HandshakePending>(status, &body)?.into_parts();
            (Pairing::Pending(pending), json)
        } else {
            let (pair, json) = reply::<FederationPair>(status, &body)?.into_parts();
            (Pairing::Paired(Box::new(pair)), json)
        };
        Ok(Reply {
            value,
            json,
            status: status.as_u16(),
        })
    }

    /// `GET /v1/federation/pairs`.
    pub async fn federation_pairs(&self) -> Result<Reply<List<FederationPair>>, ClientError> {
        self.get_reply(self.url("/v1/federation/pairs", &[])).await
    }

    /// `GET /v1/federation/pairs/{key}`: a pair by its id, its peer's DID or its peer's URL.
    pub async fn federation_pair(&self, key: &str) -> Result<Reply<FederationPair>, ClientError> {
        self.get_reply(self.url(&pair_path(key, None), &[])).await
    }

    /// `POST /v1/federation/pairs/{key}/pause`.
    pub async fn pause_pair(
        &self,
        key: &str,
        reason: &PairReason,
    ) -> Result<Reply<FederationPair>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("pause")), &[]), reason)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/config`: what the pair's peer is served
    /// (`thread_allow_add`, `thread_allow_remove`, `thread_rule`).
    pub async fn configure_pair(
        &self,
        key: &str,
        fields: &serde_json::Value,
    ) -> Result<Reply<FederationPair>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("config")), &[]), fields)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/grants`: consent grants bound to the pair's peer, one
    /// per target namespace.
    pub async fn grant_to_pair(
        &self,
        key: &str,
        request: &PairGrant,
    ) -> Result<Reply<List<ConsentGrant>>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("grants")), &[]), request)
            .await
    }

    /// `DELETE /v1/federation/pairs/{key}/grants/{grant_id}`: revokes a grant bound to the
    /// pair's peer; `None` for an empty answer.
    pub async fn revoke_pair_grant(
        &self,
        key: &str,
        grant_id: &str,
    ) -> Result<Reply<Option<GrantRevoked>>, ClientError> {
        let path = format!(
            "{}/{}",
            pair_path(key, Some("grants")),
            crate::encode_segment(grant_id)
        );
        self.delete_reply(self.url(&path, &[])).await
    }

    /// `POST /v1/federation/pairs/{key}/push`: sends the pair's peer a thread.
    pub async fn push_thread(
        &self,
        key: &str,
        request: &PushThread,
    ) -> Result<Reply<PushSent>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("push")), &[]), request)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/resume`.
    pub async fn resume_pair(
        &self,
        key: &str,
        reason: &PairReason,
    ) -> Result<Reply<FederationPair>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("resume")), &[]), reason)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/revoke`: revokes here and tells the peer.
    pub async fn revoke_pair(
        &self,
        key: &str,
        reason: &PairReason,
    ) -> Result<Reply<FederationPair>, ClientError> {
        self.post_reply(self.url(&pair_path(key, Some("revoke")), &[]), reason)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/refresh`: renews the pair's tokens now.
    pub async fn refresh_pair(&self, key: &str) -> Result<Reply<FederationPair>, ClientError> {
        self.post_empty_reply(self.url(&pair_path(key, Some("refresh")), &[]))
            .await
    }

    /// `POST /v1/federation/pairs/{key}/url`: the peer's new URL (checked by the steward).
    pub async fn set_pair_url(
        &self,
        key: &str,
        url: &str,
    ) -> Result<Reply<FederationPair>, ClientError> {
        let body = serde_json::json!({ "url": url });
        self.post_reply(self.url(&pair_path(key, Some("url")), &[]), &body)
            .await
    }

    /// `POST /v1/federation/pairs/{key}/introducible`.
    pub async fn set_introducible(
        &self,
        key: &str,
        request: &SetIntroducible,
    ) -> Result<Reply<PairIntroducible>, ClientError> {
        self.post_reply(
            self.url(&pair_path(key, Some("introducible")), &[]),
            request,
        )
        .await
    }

    /// `GET /v1/federation/pending`: pair requests waiting for this operator.
    pub async fn pending_pairs(&self) -> Result<Reply<List<PendingPair>>, ClientError> {
        self.get_reply(self.url("/v1/federation/pending", &[]))
            .await
    }

    /// `POST /v1/federation/pending/{pair_id}/approve`; `None` for an empty answer.
    pub async fn approve_pair(
        &self,
        pair_id: &str,
        reason: &PairReason,
    ) -> Result<Reply<Option<PendingDecision>>, ClientError> {
        self.post_reply(self.url(&pending_path(pair_id, "approve"), &[]), reason)
            .await
    }

    /// `POST /v1/federation/pending/{pair_id}/reject`; `None` for an empty answer.
    pub async fn reject_pair(
        &self,
        pair_id: &str,
        reason: &PairReason,
    ) -> Result<Reply<Option<PendingDecision>>, ClientError> {
        self.post_reply(self.url(&pending_path(pair_id, "reject"), &[]), reason)
            .await
    }

    /// `POST /v1/sync/pull`: pulls a thread from a peer until it has nothing more.
    pub async fn pull(&self, request: &PullRequest) -> Result<Reply<PullResult>, ClientError> {
        self.post_reply(self.url("/v1/sync/pull", &[]), request)
            .await
    }

    /// `GET /v1/federation/introductions?via=<did>`: whom the paired peer `via` introduces.
    pub async fn introductions(&self, via: &str) -> Result<Reply<Introductions>, ClientError> {
        self.get_reply(self.url_encoded("/v1/federation/introductions", &[("via", via)]))
            .await
    }

    /// `GET /v1/discovery/mdns`: the stewards heard on the LAN.
    pub async fn mdns_roster(&self) -> Result<Reply<MdnsRoster>, ClientError> {
        self.get_reply(self.url("/v1/discovery/mdns", &[])).await
    }

    /// `GET /v1/federation/relay`: this steward's relays, each asked for its health, and its
    /// outbox.
    pub async fn relay_status(&self) -> Result<Reply<RelayStatus>, ClientError> {
        self.get_reply(self.url("/v1/federation/relay", &[])).await
    }

    /// `GET /v1/federation/relay/queues?peer=&thread=`.
    pub async fn relay_queues(
        &self,
        peer: Option<&str>,
        thread: Option<&str>,
    ) -> Result<Reply<RelayQueues>, ClientError> {
        let query: Vec<(&str, &str)> = [("peer", peer), ("thread", thread)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        self.get_reply(self.url("/v1/federation/relay/queues", &query))
            .await
    }

    /// `POST /v1/federation/relay/kick`: every outbox row retried now.
    pub async fn relay_kick(&self) -> Result<Reply<RelayKicked>, ClientError> {
        self.post_empty_reply(self.url("/v1/federation/relay/kick", &[]))
            .await
    }

    /// `POST /v1/federation/relay/purge`: a peer's queues emptied and deposited again.
    pub async fn relay_purge(&self, peer: &str) -> Result<Reply<RelayKicked>, ClientError> {
        let body = RelayPurge { peer: peer.into() };
        self.post_reply(self.url("/v1/federation/relay/purge", &[]), &body)
            .await
    }

    /// `POST /v1/consent/grants`.
    pub async fn grant_consent(
        &self,
        grant: &CreateGrant,
    ) -> Result<Reply<ConsentGrant>, ClientError> {
        self.post_reply(self.url("/v1/consent/grants", &[]), grant)
            .await
    }

    /// `POST /v1/consent/grants {"public": true, …}`: a public sharing grant of one thread.
    pub async fn grant_public(
        &self,
        grant: &PublicGrant,
    ) -> Result<Reply<ConsentGrant>, ClientError> {
        self.post_reply(self.url("/v1/consent/grants", &[]), grant)
            .await
    }

    /// `POST /v1/consent/grants {"op": "accept", …}`: accept full (L0) records from a source.
    pub async fn accept_l0(&self, accept: &AcceptL0) -> Result<Reply<ConsentGrant>, ClientError> {
        self.post_reply(self.url("/v1/consent/grants", &[]), accept)
            .await
    }

    /// `GET /v1/consent/grants[?namespace=NS]`: grants whose source or target is `namespace`.
    pub async fn consent_grants(
        &self,
        namespace: Option<&str>,
    ) -> Result<Reply<List<ConsentGrant>>, ClientError> {
        let query: Vec<(&str, &str)> = namespace.map(|ns| ("namespace", ns)).into_iter().collect();
        self.get_reply(self.url_encoded("/v1/consent/grants", &query))
            .await
    }

    /// `DELETE /v1/consent/grants/{id}[?reason=…]`; `None` for an empty answer.
    pub async fn revoke_grant(
        &self,
        grant_id: &str,
        reason: Option<&str>,
    ) -> Result<Reply<Option<GrantRevoked>>, ClientError> {
        let path = format!("/v1/consent/grants/{}", crate::encode_segment(grant_id));
        let query: Vec<(&str, &str)> = reason.map(|r| ("reason", r)).into_iter().collect();
        self.delete_reply(self.url_encoded(&path, &query)).await
    }

    /// `POST /v1/sync/pairs`: a legacy sync pair pulling one thread from a peer.
    pub async fn create_sync_pair(
        &self,
        request: &CreateSyncPair,
    ) -> Result<Reply<SyncPair>, ClientError> {
        self.post_reply(self.url("/v1/sync/pairs", &[]), request)
            .await
    }

    /// `GET /v1/sync/pairs`.
    pub async fn sync_pairs(&self) -> Result<Reply<List<SyncPair>>, ClientError> {
        self.get_reply(self.url("/v1/sync/pairs", &[])).await
    }

    /// `GET /v1/sync/pairs/{id}`.
    pub async fn sync_pair(&self, id: &str) -> Result<Reply<SyncPair>, ClientError> {
        self.get_reply(self.url(&sync_pair_path(id, None), &[]))
            .await
    }

    /// `GET /v1/sync/pairs/{id}/trace?limit=N`: a pair's recent sync events, newest first.
    pub async fn sync_trace(
        &self,
        id: &str,
        limit: Option<u32>,
    ) -> Result<Reply<SyncTrace>, ClientError> {
        let limit = limit.map(|n| n.to_string());
        let query: Vec<(&str, &str)> = limit.iter().map(|n| ("limit", n.as_str())).collect();
        self.get_reply(self.url(&sync_pair_path(id, Some("trace")), &query))
            .await
    }

    /// `GET /v1/sync/quarantine[?pair=ID&limit=N&cursor=C]`: a page of the records peers sent
    /// that are held in quarantine, of one pair (its id or peer DID) or of all.
    pub async fn sync_quarantine(
        &self,
        pair: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Reply<ListPage<QuarantinedRecord>>, ClientError> {
        let limit = limit.map(|n| n.to_string());
        let query: Vec<(&str, &str)> = [
            pair.map(|p| ("pair", p)),
            limit.as_deref().map(|n| ("limit", n)),
            cursor.map(|c| ("cursor", c)),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.get_reply(self.url_encoded("/v1/sync/quarantine", &query))
            .await
    }

    /// `POST /v1/sync/pairs/{id}/pause`; `None` for an empty answer.
    pub async fn pause_sync_pair(&self, id: &str) -> Result<Reply<Option<SyncPair>>, ClientError> {
        self.post_empty_reply(self.url(&sync_pair_path(id, Some("pause")), &[]))
            .await
    }

    /// `POST /v1/sync/pairs/{id}/resume`; `None` for an empty answer.
    pub async fn resume_sync_pair(&self, id: &str) -> Result<Reply<Option<SyncPair>>, ClientError> {
        self.post_empty_reply(self.url(&sync_pair_path(id, Some("resume")), &[]))
            .await
    }

    /// `POST /v1/sync/pairs/{id}/kick`: pull now instead of at the next poll; `None` for an
    /// empty answer.
    pub async fn kick_sync_pair(&self, id: &str) -> Result<Reply<Option<SyncPair>>, ClientError> {
        self.post_empty_reply(self.url(&sync_pair_path(id, Some("kick")), &[]))
            .await
    }

    /// `DELETE /v1/sync/pairs/{id}`; `None` for an empty answer.
    pub async fn remove_sync_pair(&self, id: &str) -> Result<Reply<Option<SyncPair>>, ClientError> {
        self.delete_reply(self.url(&sync_pair_path(id, None), &[]))
            .await
    }
}

/// `/v1/federation/pairs/{key}[/{action}]`, the pair id or DID as one encoded segment.
fn pair_path(key: &str, action: Option<&str>) -> String {
    segment_path("/v1/federation/pairs", key, action)
}

fn pending_path(pair_id: &str, decision: &str) -> String {
    segment_path("/v1/federation/pending", pair_id, Some(decision))
}

fn sync_pair_path(id: &str, action: Option<&str>) -> String {
    segment_path("/v1/sync/pairs", id, action)
}

fn segment_path(collection: &str, id: &str, action: Option<&str>) -> String {
    let mut path = format!("{collection}/{}", crate::encode_segment(id));
    if let Some(action) = action {
        path.push('/');
        path.push_str(action);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_paths_encode_dids_as_one_segment() {
        assert_eq!(
            pair_path("fed_01", Some("pause")),
            "/v1/federation/pairs/fed_01/pause"
        );
        assert_eq!(
            pair_path("did:web:example.com:alice", None),
            "/v1/federation/pairs/did%3Aweb%3Aexample.com%3Aalice"
        );
        assert_eq!(
            pending_path("fed_9", "approve"),
            "/v1/federation/pending/fed_9/approve"
        );
    }

    #[test]
    fn sync_pair_paths_encode_the_id() {
        assert_eq!(
            sync_pair_path("sp_1", Some("kick")),
            "/v1/sync/pairs/sp_1/kick"
        );
        assert_eq!(sync_pair_path("sp/1", None), "/v1/sync/pairs/sp%2F1");
    }

    #[test]
    fn revoke_reasons_travel_in_the_query() {
        let c = Client::new("http://h:1", None).unwrap();
        let path = format!("/v1/consent/grants/{}", crate::encode_segment("cg_1"));
        assert_eq!(c.url(&path, &[]).path(), "/v1/consent/grants/cg_1");
        assert_eq!(
            c.url_encoded(&path, &[("reason", "no longer needed")])
                .as_str(),
            "http://h:1/v1/consent/grants/cg_1?reason=no%20longer%20needed"
        );
    }
}
