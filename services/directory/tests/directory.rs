//! The directory over real HTTP, every scenario against SQLite (a temporary file) and Postgres
//! (a database of its own on the server of `DATABASE_URL`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncropel_directory::{app, AppState, Clock, Rules, Store};
use syncropel_protocol::did_sync::{
    self, did_from_genesis, sign_operation, LoggedOp, OpLog, OpType, Operation, Service,
};
use syncropel_protocol::{ErrorCode, Keypair};

const T0: i64 = 1_777_636_800;
const HOUR: i64 = 3600;

struct Server {
    base: String,
    http: reqwest::Client,
    clock: Clock,
    /// Cancelling it is what SIGTERM does first: the server drains.
    stopping: tokio_util::sync::CancellationToken,
}

impl Server {
    async fn start(database_url: &str) -> Server {
        Server::with_store(Store::open(database_url).await.unwrap()).await
    }

    async fn with_store(store: Store) -> Server {
        let store = Arc::new(store);
        let clock = Clock::manual(T0);
        let stopping = tokio_util::sync::CancellationToken::new();
        let state = AppState {
            store,
            rules: Rules::default(),
            clock: clock.clone(),
            stopping: stopping.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            clock,
            stopping,
        }
    }

    async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn post_bytes(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
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

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_bytes(path, body.to_string()).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        Server::answer(response).await
    }

    async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Posts a genesis, expecting 201; returns the DID's hash.
    async fn create(&self, genesis: &Value) -> String {
        let (status, body) = self.post("/directory/genesis", genesis).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hash_of(body["did"].as_str().unwrap())
    }

    /// Posts an update, expecting 200; returns its cid.
    async fn update(&self, hash: &str, op: &Value) -> String {
        let (status, body) = self.post(&format!("/directory/update/{hash}"), op).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["cid"].as_str().unwrap().to_owned()
    }

    async fn document(&self, hash: &str) -> Value {
        let (status, body) = self.get(&format!("/directory/{hash}/did.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn operations(&self, hash: &str) -> Vec<LoggedOp> {
        let (status, body) = self.get(&format!("/directory/{hash}/operations")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["object"], "did_operations");
        assert_eq!(body["did"], format!("did:sync:{hash}"));
        serde_json::from_value(body["operations"].clone()).unwrap()
    }

    async fn export_all(&self) -> Vec<Value> {
        let (status, text) = self.get_text("/directory/export").await;
        assert_eq!(status, StatusCode::OK);
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The downloaded log replays with `OpLog::apply` to the server's document.
    async fn assert_replays(&self, hash: &str) {
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

fn hash_of(did: &str) -> String {
    did.strip_prefix("did:sync:").unwrap().to_owned()
}

fn assert_error(answer: &(StatusCode, Value), code: ErrorCode) {
    let (status, body) = answer;
    assert_eq!(status.as_u16(), code.http_status(), "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["code"], code.as_str(), "{body}");
    assert_eq!(body["type"], code.error_type(), "{body}");
    assert!(body["message"].is_string(), "{body}");
}

fn multibase(key: &Keypair) -> String {
    key.did_key().strip_prefix("did:key:").unwrap().to_owned()
}

/// One identity: user (highest priority) and host rotation keys, three record keys.
struct Ident {
    user: Keypair,
    host: Keypair,
    record: [Keypair; 3],
    handle: String,
}

impl Ident {
    fn new(seed: u8, handle: &str) -> Ident {
        let key = |n: u8| Keypair::from_seed(&[seed.wrapping_mul(8).wrapping_add(n); 32]);
        Ident {
            user: key(1),
            host: key(2),
            record: [key(3), key(4), key(5)],
            handle: handle.to_owned(),
        }
    }

    fn op(&self, kind: OpType, prev: Option<&str>) -> Operation {
        Operation {
            kind,
            prev: prev.map(str::to_owned),
            signing_keys: BTreeMap::from([("key-1".to_owned(), multibase(&self.record[0]))]),
            rotation_keys: vec![self.user.did_key(), self.host.did_key()],
            handles: vec![self.handle.clone()],
            namespaces: Vec::new(),
            services: BTreeMap::from([(
                "syncropel".to_owned(),
                Service {
                    kind: "syncropel".to_owned(),
                    endpoint: format!("https://{}.example", self.handle),
                },
            )]),
            compromised: Vec::new(),
            created_at: "2026-05-01T12:00:00Z".to_owned(),
            sig: None,
        }
    }

    fn genesis(&self) -> Value {
        sign_operation(&self.op(OpType::Genesis, None), &self.host)
    }

    fn update(&self, prev: &str) -> Operation {
        self.op(OpType::Update, Some(prev))
    }

    fn tombstone(&self, prev: &str) -> Value {
        let mut op = self.op(OpType::Tombstone, Some(prev));
        op.signing_keys.clear();
        op.rotation_keys.clear();
        op.handles.clear();
        op.services.clear();
        sign_operation(&op, &self.host)
    }
}

fn with_endpoint(mut op: Operation, endpoint: &str) -> Operation {
    op.services.get_mut("syncropel").unwrap().endpoint = endpoint.to_owned();
    op
}

async fn create_resolve_and_retry(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let did = did_from_genesis(&genesis);
    let (status, body) = s.post("/directory/genesis", &genesis).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["did"], did);
    assert_eq!(body["cid"], did_sync::cid(&genesis));
    let hash = hash_of(&did);

    let key = format!("{did}#key-1");
    let expected = json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/ed25519-2020/v1",
        ],
        "id": did,
        "alsoKnownAs": ["syncropel:handle:alice"],
        "verificationMethod": [{
            "id": key,
            "type": "Ed25519VerificationKey2020",
            "controller": did,
            "publicKeyMultibase": multibase(&alice.record[0]),
        }],
        "authentication": [key],
        "assertionMethod": [key],
        "service": [{
            "id": format!("{did}#syncropel"),
            "type": "syncropel",
            "serviceEndpoint": "https://alice.example",
        }],
    });
    assert_eq!(s.document(&hash).await, expected);
    let (status, body) = s.get(&format!("/directory/resolve?did={did}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, expected);

    // A provisioning retry of the very same genesis is answered 200 with the same DID.
    s.clock.advance(60);
    let (status, body) = s.post("/directory/genesis", &genesis).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["did"], did);
    assert_eq!(body["received_at"], T0);
    assert_eq!(s.operations(&hash).await.len(), 1);

    let (status, body) = s.get("/directory/handle/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"handle": "alice", "did": did}));
    s.assert_replays(&hash).await;
}

async fn update_endpoint(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let hash = s.create(&genesis).await;
    s.clock.advance(HOUR);
    let op = with_endpoint(
        alice.update(&did_sync::cid(&genesis)),
        "https://moved.example",
    );
    let cid = s.update(&hash, &sign_operation(&op, &alice.host)).await;
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://moved.example"
    );
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].cid, cid);
    assert_eq!(log[1].received_at, T0 + HOUR);
    s.assert_replays(&hash).await;
}

async fn rotate_signing_keys(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let hash = s.create(&genesis).await;
    let did = format!("did:sync:{hash}");

    let mut rotate = alice.update(&did_sync::cid(&genesis));
    rotate.signing_keys = BTreeMap::from([("key-2".to_owned(), multibase(&alice.record[1]))]);
    let u1 = s.update(&hash, &sign_operation(&rotate, &alice.user)).await;
    let doc = s.document(&hash).await;
    let ids: Vec<&str> = doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("{did}#key-2"), format!("{did}#key-1")]);
    assert_eq!(doc["assertionMethod"], json!([format!("{did}#key-2")]));
    assert_eq!(doc["authentication"], json!([format!("{did}#key-2")]));

    let mut withdraw = rotate.clone();
    withdraw.prev = Some(u1);
    withdraw.compromised = vec!["key-1".to_owned()];
    s.update(&hash, &sign_operation(&withdraw, &alice.user))
        .await;
    let doc = s.document(&hash).await;
    let methods = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(methods.len(), 1);
    assert_eq!(
        methods[0]["publicKeyMultibase"],
        multibase(&alice.record[1])
    );
    s.assert_replays(&hash).await;
}

async fn recovery_inside_window(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let hash = s.create(&genesis).await;
    s.clock.advance(HOUR);
    let hijack = with_endpoint(alice.update(&g), "https://mallory.example");
    let b = s.update(&hash, &sign_operation(&hijack, &alice.host)).await;

    s.clock.advance(71 * HOUR);
    let mut fork = with_endpoint(alice.update(&g), "https://recovered.example");
    fork.rotation_keys = vec![alice.user.did_key()];
    let (status, body) = s
        .post(
            &format!("/directory/update/{hash}"),
            &sign_operation(&fork, &alice.user),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nullified"], json!([b]));

    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 3);
    assert!(log[1].nullified && log[1].cid == b);
    assert!(!log[0].nullified && !log[2].nullified);
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://recovered.example"
    );
    s.assert_replays(&hash).await;
}

async fn recovery_outside_window(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let hash = s.create(&genesis).await;
    s.clock.advance(HOUR);
    let hijack = with_endpoint(alice.update(&g), "https://mallory.example");
    s.update(&hash, &sign_operation(&hijack, &alice.host)).await;

    s.clock.advance(72 * HOUR + 1);
    let fork = with_endpoint(alice.update(&g), "https://recovered.example");
    let answer = s
        .post(
            &format!("/directory/update/{hash}"),
            &sign_operation(&fork, &alice.user),
        )
        .await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    assert_eq!(s.operations(&hash).await.len(), 2);
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://mallory.example"
    );
}

async fn forged_replayed_and_stale_ops(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let hash = s.create(&genesis).await;
    let path = format!("/directory/update/{hash}");
    let op = with_endpoint(alice.update(&g), "https://next.example");

    // Signed by a record key, which may sign records but never rotate.
    let answer = s.post(&path, &sign_operation(&op, &alice.record[0])).await;
    assert_error(&answer, ErrorCode::KeyNotAuthorized);
    // Genesis signed by a key outside its own rotation keys.
    let outsider = sign_operation(&Ident::new(2, "bob").op(OpType::Genesis, None), &alice.user);
    let answer = s.post("/directory/genesis", &outsider).await;
    assert_error(&answer, ErrorCode::KeyNotAuthorized);
    // A signature by another key under the host's key id.
    let mut bad_sig = sign_operation(&op, &alice.host);
    bad_sig["sig"]["value"] = sign_operation(&op, &alice.user)["sig"]["value"].clone();
    assert_error(&s.post(&path, &bad_sig).await, ErrorCode::SignatureInvalid);
    // A body changed after signing.
    let mut tampered = sign_operation(&op, &alice.host);
    tampered["handles"] = json!(["mallory"]);
    assert_error(&s.post(&path, &tampered).await, ErrorCode::SignatureInvalid);
    assert_eq!(s.operations(&hash).await.len(), 1);

    let signed = sign_operation(&op, &alice.host);
    let u1 = s.update(&hash, &signed).await;
    // The same op again.
    assert_error(&s.post(&path, &signed).await, ErrorCode::PrevMismatch);
    // A different op by the same key on the old head.
    let stale = with_endpoint(alice.update(&g), "https://stale.example");
    let answer = s.post(&path, &sign_operation(&stale, &alice.host)).await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    // A prev that is no op of this DID.
    let unknown = with_endpoint(alice.update(&"0".repeat(64)), "https://x.example");
    let answer = s.post(&path, &sign_operation(&unknown, &alice.host)).await;
    assert_error(&answer, ErrorCode::PrevMismatch);
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].cid, u1);
    assert_eq!(s.export_all().await.len(), 2);
}

async fn handles(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let a_genesis = alice.genesis();
    let a = s.create(&a_genesis).await;

    // Bob's genesis claiming alice's handle.
    let mut bob = Ident::new(2, "alice");
    assert_error(
        &s.post("/directory/genesis", &bob.genesis()).await,
        ErrorCode::HandleTaken,
    );
    bob.handle = "bob".to_owned();
    let b_genesis = bob.genesis();
    let b = s.create(&b_genesis).await;

    // Bob's update adding it.
    let mut grab = bob.update(&did_sync::cid(&b_genesis));
    grab.handles = vec!["bob".to_owned(), "alice".to_owned()];
    let path = format!("/directory/update/{b}");
    let answer = s.post(&path, &sign_operation(&grab, &bob.host)).await;
    assert_error(&answer, ErrorCode::HandleTaken);

    // Alice drops it; then Bob can take it.
    let mut drop = alice.update(&did_sync::cid(&a_genesis));
    drop.handles = vec!["alice-2".to_owned()];
    s.update(&a, &sign_operation(&drop, &alice.host)).await;
    s.update(&b, &sign_operation(&grab, &bob.host)).await;

    let (status, body) = s.get("/directory/handle/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"handle": "alice", "did": format!("did:sync:{b}")})
    );
    let (_, body) = s.get("/directory/handle/alice-2").await;
    assert_eq!(body["did"], format!("did:sync:{a}"));
    assert_error(&s.get("/directory/handle/carol").await, ErrorCode::NotFound);
    assert_eq!(
        s.document(&b).await["alsoKnownAs"],
        json!(["syncropel:handle:bob", "syncropel:handle:alice"])
    );
    assert_eq!(
        s.document(&a).await["alsoKnownAs"],
        json!(["syncropel:handle:alice-2"])
    );
    s.assert_replays(&a).await;
    s.assert_replays(&b).await;
}

async fn recovered_handles_count_only_live_ops(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let a = s.create(&genesis).await;
    // The host key moves alice to another handle, then recovery undoes that op.
    let mut moved = alice.update(&g);
    moved.handles = vec!["alice-moved".to_owned()];
    s.update(&a, &sign_operation(&moved, &alice.host)).await;
    s.clock.advance(HOUR);
    let recover = with_endpoint(alice.update(&g), "https://recovered.example");
    s.update(&a, &sign_operation(&recover, &alice.user)).await;

    assert_error(
        &s.get("/directory/handle/alice-moved").await,
        ErrorCode::NotFound,
    );
    let (_, body) = s.get("/directory/handle/alice").await;
    assert_eq!(body["did"], format!("did:sync:{a}"));
    let bob = Ident::new(2, "alice-moved");
    s.create(&bob.genesis()).await;
}

async fn tombstone(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let hash = s.create(&genesis).await;
    let did = format!("did:sync:{hash}");
    let tomb = alice.tombstone(&did_sync::cid(&genesis));
    // Tombstones go to /revoke, updates to /update.
    let answer = s.post(&format!("/directory/update/{hash}"), &tomb).await;
    assert_error(&answer, ErrorCode::ValidationError);
    let (status, body) = s.post(&format!("/directory/revoke/{hash}"), &tomb).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_error(
        &s.get(&format!("/directory/{hash}/did.json")).await,
        ErrorCode::DidDeactivated,
    );
    assert_error(
        &s.get(&format!("/directory/resolve?did={did}")).await,
        ErrorCode::DidDeactivated,
    );
    let log = s.operations(&hash).await;
    assert_eq!(log.len(), 2);
    let mut replay = OpLog::new();
    for entry in &log {
        replay.apply(&entry.op, entry.received_at).unwrap();
    }
    assert!(replay.current().unwrap().deactivated);
    // Its handle is free again.
    assert_error(&s.get("/directory/handle/alice").await, ErrorCode::NotFound);
    s.create(&Ident::new(2, "alice").genesis()).await;
}

async fn namespace_peers(db: String) {
    let s = Server::start(&db).await;
    let mut ids = Vec::new();
    for (seed, handle, namespaces) in [
        (1, "alice", vec!["acme"]),
        (2, "bob", vec!["acme", "other"]),
        (3, "carol", vec![]),
    ] {
        let id = Ident::new(seed, handle);
        let mut op = id.op(OpType::Genesis, None);
        op.namespaces = namespaces.into_iter().map(str::to_owned).collect();
        let genesis = sign_operation(&op, &id.host);
        let hash = s.create(&genesis).await;
        ids.push((id, genesis, hash));
    }
    let (status, body) = s.get("/directory/namespace/acme/peers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["namespace"], "acme");
    let mut peers = body["peers"].as_array().unwrap().clone();
    peers.sort_by_key(|p| p["handles"][0].as_str().unwrap().to_owned());
    assert_eq!(peers.len(), 2);
    for (peer, (id, _, hash)) in peers.iter().zip(&ids) {
        assert_eq!(peer["did"], format!("did:sync:{hash}"));
        assert_eq!(peer["endpoint"], format!("https://{}.example", id.handle));
        assert_eq!(peer["handles"], json!([id.handle]));
        assert_eq!(peer["updated_at"], "2026-05-01T12:00:00Z");
    }
    // A tombstoned DID drops out.
    let (alice, genesis, hash) = &ids[0];
    let tomb = alice.tombstone(&did_sync::cid(genesis));
    let (status, _) = s.post(&format!("/directory/revoke/{hash}"), &tomb).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = s.get("/directory/namespace/acme/peers").await;
    assert_eq!(body["peers"].as_array().unwrap().len(), 1);
    let (_, body) = s.get("/directory/namespace/nobody/peers").await;
    assert_eq!(body["peers"], json!([]));
    assert_error(
        &s.get("/directory/namespace/Not%20Valid!/peers").await,
        ErrorCode::NamespaceIdInvalid,
    );
}

async fn export_paging(db: String) {
    let s = Server::start(&db).await;
    let mut expected = Vec::new();
    for seed in 1..=3 {
        let id = Ident::new(seed, &format!("user-{seed}"));
        let genesis = id.genesis();
        let hash = s.create(&genesis).await;
        let op = with_endpoint(id.update(&did_sync::cid(&genesis)), "https://b.example");
        let cid = s.update(&hash, &sign_operation(&op, &id.host)).await;
        expected.push(did_sync::cid(&genesis));
        expected.push(cid);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, text) = s
            .get_text(&format!("/directory/export?after={after}&count=4"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() <= 4);
        if lines.is_empty() {
            break;
        }
        for line in &lines {
            let seq = line["seq"].as_i64().unwrap();
            assert!(seq > after);
            after = seq;
            let entry: LoggedOp = serde_json::from_value(json!({
                "cid": line["cid"],
                "op": line["op"],
                "received_at": line["received_at"],
                "nullified": line["nullified"],
            }))
            .unwrap();
            assert_eq!(entry.cid, did_sync::cid(&entry.op));
            assert!(line["did"].as_str().unwrap().starts_with("did:sync:"));
            seen.push(entry.cid);
        }
    }
    assert_eq!(seen, expected);
    for bad in ["count=0", "count=1001", "after=x"] {
        let (status, body) = s.get(&format!("/directory/export?{bad}")).await;
        assert_error(&(status, body), ErrorCode::ValidationError);
    }
}

async fn rate_limit(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let hash = s.create(&genesis).await;
    let path = format!("/directory/update/{hash}");
    let mut head = did_sync::cid(&genesis);
    let mut n = 0;
    let mut next = |head: &str| {
        n += 1;
        let op = with_endpoint(alice.update(head), &format!("https://n{n}.example"));
        sign_operation(&op, &alice.host)
    };
    // Genesis plus nine updates fill the hour.
    for _ in 0..9 {
        head = s.update(&hash, &next(&head)).await;
    }
    s.clock.advance(600);
    let response = s
        .http
        .post(format!("{}{path}", s.base))
        .body(next(&head).to_string())
        .send()
        .await
        .unwrap();
    let retry: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, HOUR - 600);
    assert_error(&Server::answer(response).await, ErrorCode::RateLimited);
    assert_eq!(s.operations(&hash).await.len(), 10);

    // 30 a day: two more hours of ten each, then the day is full.
    for _ in 0..2 {
        s.clock.advance(HOUR);
        for _ in 0..10 {
            head = s.update(&hash, &next(&head)).await;
        }
    }
    s.clock.advance(HOUR);
    assert_error(&s.post(&path, &next(&head)).await, ErrorCode::RateLimited);
    s.clock.set(T0 + 24 * HOUR);
    s.update(&hash, &next(&head)).await;
}

/// A lower-priority key filling the quota cannot hold off the owner's recovery fork.
async fn rate_limit_spares_recovery(db: String) {
    let s = Server::start(&db).await;
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let hash = s.create(&genesis).await;
    let path = format!("/directory/update/{hash}");
    let mut head = g.clone();
    let mut hijacks = Vec::new();
    for n in 0..9 {
        let op = with_endpoint(alice.update(&head), &format!("https://m{n}.example"));
        head = s.update(&hash, &sign_operation(&op, &alice.host)).await;
        hijacks.push(head.clone());
    }
    let op = with_endpoint(alice.update(&head), "https://m9.example");
    let answer = s.post(&path, &sign_operation(&op, &alice.host)).await;
    assert_error(&answer, ErrorCode::RateLimited);

    s.clock.advance(600);
    let mut fork = with_endpoint(alice.update(&g), "https://recovered.example");
    fork.rotation_keys = vec![alice.user.did_key()];
    let (status, body) = s.post(&path, &sign_operation(&fork, &alice.user)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nullified"], json!(hijacks));
    let recovered = body["cid"].as_str().unwrap().to_owned();
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://recovered.example"
    );

    // A plain update by the same key is still held to the quota.
    let next = with_endpoint(alice.update(&recovered), "https://next.example");
    let answer = s.post(&path, &sign_operation(&next, &alice.user)).await;
    assert_error(&answer, ErrorCode::RateLimited);
    assert_eq!(s.operations(&hash).await.len(), 11);
    s.assert_replays(&hash).await;
}

async fn bad_input_changes_nothing(db: String) {
    let s = Server::start(&db).await;
    let genesis = Ident::new(1, "alice").genesis();
    let text = genesis.to_string();

    let malformed = s.post_bytes("/directory/genesis", "{\"type\":").await;
    assert_error(&malformed, ErrorCode::InvalidJson);
    let duplicate = text.replacen('{', "{\"type\":\"genesis\",", 1);
    assert_error(
        &s.post_bytes("/directory/genesis", duplicate).await,
        ErrorCode::InvalidJson,
    );
    let oversize = format!("{text:<20000}");
    assert_error(
        &s.post_bytes("/directory/genesis", oversize).await,
        ErrorCode::PayloadTooLarge,
    );
    let mut big = Ident::new(1, "alice").op(OpType::Genesis, None);
    big.services.get_mut("syncropel").unwrap().endpoint =
        format!("https://{}.example", "a".repeat(8000));
    let big = sign_operation(&big, &Ident::new(1, "alice").host);
    assert_error(
        &s.post("/directory/genesis", &big).await,
        ErrorCode::OpTooLarge,
    );
    let mut wrong = genesis.clone();
    wrong["handles"] = json!(5);
    assert_error(
        &s.post("/directory/genesis", &wrong).await,
        ErrorCode::ValidationError,
    );
    assert_error(
        &s.post("/directory/genesis", &json!([genesis])).await,
        ErrorCode::ValidationError,
    );
    let mut unknown_member = genesis.clone();
    unknown_member["extra"] = json!("x");
    assert_error(
        &s.post("/directory/genesis", &unknown_member).await,
        ErrorCode::ValidationError,
    );

    let unknown = "a".repeat(24);
    for path in [
        format!("/directory/{unknown}/did.json"),
        format!("/directory/{unknown}/operations"),
        format!("/directory/resolve?did=did:sync:{unknown}"),
        "/directory/not-a-hash/did.json".to_owned(),
        "/nowhere".to_owned(),
    ] {
        assert_error(&s.get(&path).await, ErrorCode::NotFound);
    }
    let update = sign_operation(
        &Ident::new(1, "alice").update(&did_sync::cid(&genesis)),
        &Ident::new(1, "alice").host,
    );
    assert_error(
        &s.post(&format!("/directory/update/{unknown}"), &update)
            .await,
        ErrorCode::NotFound,
    );
    assert!(s.export_all().await.is_empty());
    assert_error(&s.get("/directory/handle/alice").await, ErrorCode::NotFound);
}

/// Requests axum's extractors cannot parse are answered in the error envelope too.
async fn malformed_requests(db: String) {
    let s = Server::start(&db).await;
    for path in [
        "/directory/export?after=abc",
        "/directory/export?count=",
        "/directory/resolve",
        "/directory/resolve?did=%ZZ",
        "/directory/resolve?did=%FF",
        "/directory/resolve?did",
        "/directory/%FF/did.json",
        "/directory/%FF/operations",
        "/directory/handle/%C3%28",
        "/directory/namespace/%FF/peers",
    ] {
        let answer = s.get(path).await;
        assert_error(&answer, ErrorCode::ValidationError);
    }
    let update = sign_operation(
        &Ident::new(1, "alice").update(&"0".repeat(64)),
        &Ident::new(1, "alice").host,
    );
    for path in ["/directory/update/%FF", "/directory/revoke/%FF"] {
        assert_error(&s.post(path, &update).await, ErrorCode::ValidationError);
    }
}

/// Racing writers: one head, one handle holder, one genesis.
async fn concurrent_writes_are_serialized(db: String) {
    let s = Arc::new(Server::start(&db).await);
    let alice = Ident::new(1, "alice");
    let genesis = alice.genesis();
    let g = did_sync::cid(&genesis);
    let hash = s.create(&genesis).await;
    let path = format!("/directory/update/{hash}");
    let mut racers = Vec::new();
    for i in 0..6 {
        let op = with_endpoint(alice.update(&g), &format!("https://r{i}.example"));
        let op = sign_operation(&op, &alice.host);
        let (s, path) = (s.clone(), path.clone());
        racers.push(tokio::spawn(async move { s.post(&path, &op).await }));
    }
    let mut statuses = Vec::new();
    for racer in racers {
        let answer = racer.await.unwrap();
        if answer.0 != StatusCode::OK {
            assert_error(&answer, ErrorCode::PrevMismatch);
        }
        statuses.push(answer.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(s.operations(&hash).await.len(), 2);

    // Two DIDs claiming one handle, each genesis posted twice.
    let mut racers = Vec::new();
    for seed in [2, 3, 2, 3] {
        let genesis = Ident::new(seed, "shared").genesis();
        let s = s.clone();
        racers.push(tokio::spawn(async move {
            s.post("/directory/genesis", &genesis).await
        }));
    }
    let mut created = 0;
    for racer in racers {
        let answer = racer.await.unwrap();
        match answer.0 {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            _ => assert_error(&answer, ErrorCode::HandleTaken),
        }
    }
    assert_eq!(created, 1);
    let (_, body) = s.get("/directory/handle/shared").await;
    let holder = hash_of(body["did"].as_str().unwrap());
    assert_eq!(s.operations(&holder).await.len(), 1);
    assert_eq!(s.export_all().await.len(), 3);
}

/// Each scenario once per backend.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("directory.db").display());
                    super::$name(url).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    syncropel_store::testing::with_test_database(super::$name).await;
                }
            )*
        }
    };
}

scenarios!(
    create_resolve_and_retry,
    update_endpoint,
    rotate_signing_keys,
    recovery_inside_window,
    recovery_outside_window,
    forged_replayed_and_stale_ops,
    handles,
    recovered_handles_count_only_live_ops,
    tombstone,
    namespace_peers,
    export_paging,
    rate_limit,
    rate_limit_spares_recovery,
    bad_input_changes_nothing,
    malformed_requests,
    concurrent_writes_are_serialized,
    probes_follow_the_database_and_the_drain,
);

/// `/health` always answers; `/ready` only while the database holds every migration and the
/// server is not draining (Kubernetes' readiness probe).
async fn probes_follow_the_database_and_the_drain(db: String) {
    let server = Server::start(&db).await;
    let (status, body) = server.get("/health").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
    let (status, body) = server.get("/ready").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("ready")),
        "{body}"
    );

    // Draining: not ready, but still answering requests.
    server.stopping.cancel();
    assert_error(&server.get("/ready").await, ErrorCode::ShuttingDown);
    assert_eq!(
        server.get("/directory/handle/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    // A database missing this build's newest migration is not ready; liveness is unmoved.
    let server = Server::start(&db).await;
    let forget = "DELETE FROM _sqlx_migrations \
                  WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query(forget).execute(&pool).await.unwrap();
        pool.close().await;
    }
    assert_error(&server.get("/ready").await, ErrorCode::NotReady);
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
}

/// Replicas over one Postgres database: each serves a document from memory for its lifetime,
/// and the replica that wrote serves its own write at once.
#[tokio::test]
async fn postgres_replicas_share_documents() {
    syncropel_store::testing::with_test_database(|db: String| async move {
        let lasting = Duration::from_secs(3600);
        let writer = Store::open_with_document_lifetime(&db, lasting)
            .await
            .unwrap();
        let a = Server::with_store(writer).await;
        let b = Server::with_store(
            Store::open_with_document_lifetime(&db, lasting)
                .await
                .unwrap(),
        )
        .await;
        let c = Server::with_store(
            Store::open_with_document_lifetime(&db, Duration::ZERO)
                .await
                .unwrap(),
        )
        .await;
        let alice = Ident::new(1, "alice");
        let genesis = alice.genesis();
        let hash = a.create(&genesis).await;
        let endpoint = |doc: Value| doc["service"][0]["serviceEndpoint"].clone();
        for s in [&a, &b, &c] {
            assert_eq!(endpoint(s.document(&hash).await), "https://alice.example");
        }

        let op = with_endpoint(
            alice.update(&did_sync::cid(&genesis)),
            "https://moved.example",
        );
        a.update(&hash, &sign_operation(&op, &alice.host)).await;
        assert_eq!(endpoint(a.document(&hash).await), "https://moved.example");
        assert_eq!(endpoint(c.document(&hash).await), "https://moved.example");
        // Within its lifetime, b's entry still holds the document it read.
        assert_eq!(endpoint(b.document(&hash).await), "https://alice.example");
    })
    .await;
}
