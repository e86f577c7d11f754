//! The directory on 127.0.0.1 with a manual clock, and the requests the scenarios make of it.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use syncropel_directory::{app, AppState, Clock, Rules, Store};
use syncropel_protocol::did_sync::{self, LoggedOp, OpLog};
use syncropel_protocol::ErrorCode;

use crate::ident::Ident;
use crate::T0;

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Clock,
    /// Cancelling it is what SIGTERM does first: the server drains.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl Server {
    pub async fn start(database_url: &str) -> Server {
        Server::with_store(Store::open(database_url).await.unwrap()).await
    }

    pub async fn with_store(store: Store) -> Server {
        Server::with_rules(store, Rules::default()).await
    }

    /// Served as the `directory` binary serves it: with each connection's peer address.
    pub async fn with_rules(store: Store, rules: Rules) -> Server {
        let store = Arc::new(store);
        let clock = Clock::manual(T0);
        let stopping = tokio_util::sync::CancellationToken::new();
        let state = AppState::new(store, rules, clock.clone(), stopping.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            clock,
            stopping,
        }
    }

    pub async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn post_bytes(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Server::answer(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_bytes(path, body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        Server::answer(self.send_get(path).await).await
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self.send_get(path).await;
        (response.status(), response.text().await.unwrap())
    }

    async fn send_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Creates the DID of `Ident::new(1, "alice")`: her identity, her genesis's cid and the DID's
    /// hash.
    pub async fn create_alice(&self) -> (Ident, String, String) {
        let alice = Ident::new(1, "alice");
        let genesis = alice.genesis();
        let hash = self.create(&genesis).await;
        (alice, did_sync::cid(&genesis), hash)
    }

    /// Posts a genesis, expecting 201; returns the DID's hash.
    pub async fn create(&self, genesis: &Value) -> String {
        let (status, body) = self.post("/directory/genesis", genesis).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hash_of(body["did"].as_str().unwrap())
    }

    /// Posts an update, expecting 200; returns its cid.
    pub async fn update(&self, hash: &str, op: &Value) -> String {
        let (status, body) = self.post(&format!("/directory/update/{hash}"), op).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["cid"].as_str().unwrap().to_owned()
    }

    pub async fn document(&self, hash: &str) -> Value {
        let (status, body) = self.get(&format!("/directory/{hash}/did.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn operations(&self, hash: &str) -> Vec<LoggedOp> {
        let (status, body) = self.get(&format!("/directory/{hash}/operations")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["object"], "did_operations");
        assert_eq!(body["did"], format!("did:sync:{hash}"));
        serde_json::from_value(body["operations"].clone()).unwrap()
    }

    pub async fn export_all(&self) -> Vec<Value> {
        let (status, text) = self.get_text("/directory/export").await;
        assert_eq!(status, StatusCode::OK);
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The downloaded log replays with `OpLog::apply` to the server's document.
    pub async fn assert_replays(&self, hash: &str) {
        let downloaded = self.operations(hash).await;
        let mut log = OpLog::new();
        for entry in &downloaded {
            log.apply(&entry.op, entry.received_at).unwrap();
        }
        assert_eq!(
            log.entries, downloaded,
            "replay marks the same ops nullified"
        );
        let state = log.current().unwrap();
        assert_eq!(did_sync::document(&state), self.document(hash).await);
    }
}

pub fn hash_of(did: &str) -> String {
    did.strip_prefix("did:sync:").unwrap().to_owned()
}

pub fn assert_error(answer: &(StatusCode, Value), code: ErrorCode) {
    let (status, body) = answer;
    assert_eq!(status.as_u16(), code.http_status(), "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["code"], code.as_str(), "{body}");
    assert_eq!(body["type"], code.error_type(), "{body}");
    assert!(body["message"].is_string(), "{body}");
}
