//! A steward as its operator drives it: an admin token, a typed client, and the steps the
//! federation tests take again and again.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use syncropel_client::api::{CreateNamespace, PullRequest, StartPair};
use syncropel_client::{encode_segment, Client, Pairing};
use syncropel_federation::state as fstate;
use syncropel_protocol::pair::outbound_secret_handle;

use crate::local::{Options, Stopped, TestSteward, TENANT};

/// How long [`Node::arrived`] waits for a record.
const ARRIVAL: Duration = Duration::from_secs(15);

/// A local steward with an admin token and a typed client sending it.
pub struct Node {
    pub steward: TestSteward,
    pub token: String,
    pub client: Client,
}

impl Node {
    pub async fn start(options: Options) -> Node {
        let steward = TestSteward::start_with(options).await;
        let token = steward.admin().await;
        let client = steward.client(&token);
        Node {
            steward,
            token,
            client,
        }
    }

    pub fn did(&self) -> String {
        self.steward.did()
    }

    pub fn url(&self) -> &str {
        &self.steward.url
    }

    /// Stops the steward (see [`TestSteward::stop`]).
    pub async fn stop(self) -> Stopped {
        self.steward.stop().await
    }

    /// A raw `GET` with the admin token: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.steward.get(&self.token, path).await
    }

    /// A raw `POST` with the admin token: status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.steward.post(&self.token, path, body).await
    }

    /// A raw `GET` as a peer sends it: with its pair bearer and the actor it claims.
    pub async fn get_as(&self, bearer: &str, actor: &str, path: &str) -> (u16, Value) {
        let request = self
            .steward
            .http
            .get(format!("{}{path}", self.steward.url))
            .bearer_auth(bearer)
            .header("x-syncropel-actor", actor);
        self.steward.send(request).await
    }

    /// Emits an envelope, which must be new; the record as stored.
    pub async fn write(&self, envelope: &Value) -> Value {
        let emitted = self.client.emit::<Value>(envelope).await.unwrap();
        assert!(emitted.created, "not new: {}", emitted.record);
        emitted.record
    }

    /// Writes a `KNOW` record (see [`crate::know`]); the record as stored.
    pub async fn emit(&self, thread: &str, actor: &str, clock: i64, body: Value) -> Value {
        self.write(&crate::know(thread, actor, clock, body)).await
    }

    /// The record `id` (`200`), or `None` when the steward does not hold it (`404`); read raw,
    /// so that any other status fails the test.
    pub async fn record(&self, id: &str) -> Option<Value> {
        let (status, body) = self
            .get(&format!("/v1/records/{}", encode_segment(id)))
            .await;
        match status {
            200 => Some(body),
            404 => None,
            _ => panic!("GET record {id}: {status} {body}"),
        }
    }

    /// Waits for the record `id` to arrive.
    pub async fn arrived(&self, id: &str) -> Value {
        let what = format!("record {id} on {}", self.steward.url);
        crate::eventually(&what, ARRIVAL, || self.record(id)).await
    }

    /// The first 1000 records of `thread`, read raw: the listing answers `200`.
    pub async fn records(&self, thread: &str) -> Vec<Value> {
        let path = format!("/v1/records?thread={}&limit=1000", encode_segment(thread));
        let (status, page) = self.get(&path).await;
        assert_eq!(status, 200, "{page}");
        page["data"].as_array().unwrap().clone()
    }

    /// The ids of the first 1000 records of `thread`; none is listed twice.
    pub async fn ids(&self, thread: &str) -> BTreeSet<String> {
        let records = self.records(thread).await;
        let ids: BTreeSet<String> = records
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), records.len(), "a record is listed twice");
        ids
    }

    /// Creates (`201`) or re-activates (`200`) a namespace.
    pub async fn register_namespace(&self, id: &str) {
        let namespace = CreateNamespace {
            id: id.into(),
            description: None,
        };
        let created = self.client.create_namespace(&namespace).await.unwrap();
        assert!(
            matches!(created.status(), 200 | 201),
            "{}: {}",
            created.status(),
            created.json()
        );
    }

    /// Pairs with the steward at `peer_url`, which approves at once (`200`); our view of the
    /// pair.
    pub async fn pair_with(&self, peer_url: &str) -> Value {
        let request = StartPair {
            peer_url: peer_url.into(),
            ..StartPair::default()
        };
        let started = self.client.start_pairing(&request).await.unwrap();
        assert_eq!(started.status(), 200, "{}", started.json());
        let (pairing, view) = started.into_parts();
        assert!(matches!(pairing, Pairing::Paired(_)), "{view}");
        assert_eq!(view["state"], "active", "{view}");
        view
    }

    /// A pair by its id, its peer's DID or its peer's URL (`200`).
    pub async fn pair(&self, key: &str) -> Value {
        let pair = self.client.federation_pair(key).await.unwrap();
        assert_eq!(pair.status(), 200, "{}", pair.json());
        pair.into_json()
    }

    /// A one-shot pull of `thread` from `peer` through the pair (which also starts the job);
    /// it answers `200`.
    pub async fn pull(&self, thread: &str, peer: &str) -> Value {
        self.pull_request(PullRequest {
            thread: thread.into(),
            peer: peer.into(),
            ..PullRequest::default()
        })
        .await
    }

    /// [`Node::pull`] into our `namespace` (federation-protocol.md §6.2).
    pub async fn pull_into(&self, thread: &str, peer: &str, namespace: &str) -> Value {
        self.pull_request(PullRequest {
            thread: thread.into(),
            peer: peer.into(),
            namespace: Some(namespace.into()),
            ..PullRequest::default()
        })
        .await
    }

    async fn pull_request(&self, request: PullRequest) -> Value {
        let pulled = self.client.pull(&request).await.unwrap();
        assert_eq!(pulled.status(), 200, "{}", pulled.json());
        pulled.into_json()
    }

    /// The bearer the peer issued us for a pair, from our secret store.
    pub async fn outbound_token(&self, pair_id: &str) -> Option<String> {
        fstate::open_secret(
            self.steward.state.store.as_ref(),
            TENANT,
            &self.steward.tenant.identity.key,
            &outbound_secret_handle(pair_id),
        )
        .await
        .unwrap()
    }

    /// Quarantined records (id -> code), of one source or of all.
    pub async fn quarantine(&self, source: Option<&str>) -> HashMap<String, String> {
        self.steward
            .state
            .store
            .state_list(TENANT, fstate::QUARANTINE)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(_, text)| {
                let entry: Value = serde_json::from_str(&text).unwrap();
                let wanted = source.is_none_or(|source| entry["source"] == source);
                wanted.then(|| {
                    (
                        entry["id"].as_str().unwrap().to_string(),
                        entry["code"].as_str().unwrap().to_string(),
                    )
                })
            })
            .collect()
    }
}
