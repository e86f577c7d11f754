//! DidResolver against real tiny axum servers on 127.0.0.1: did:web documents, did:sync
//! operation logs served by directories, caching, refresh limits and the target policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions, PeerError};
use syncropel_protocol::did_doc::{did_web_document, did_web_for};
use syncropel_protocol::did_sync::{sign_operation, OpLog, OpType, Operation, Service};
use syncropel_protocol::Keypair;

/// One canned answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    cache_control: Option<&'static str>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(body: &Value) -> Reply {
        Reply {
            status: 200,
            cache_control: None,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// A server answering canned replies by path (404 otherwise) and counting hits per path.
#[derive(Clone, Default)]
struct Host {
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Host {
    /// Starts the server; returns it with its `127.0.0.1:port`.
    async fn start() -> (Host, String) {
        let host = Host::default();
        let state = host.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let state = state.clone();
            async move { state.answer(uri.path()).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (host, addr)
    }

    /// A server holding the [`web_document`] of the domain-form did:web of its own address; that
    /// DID.
    async fn with_web_document() -> (Host, String) {
        let (host, addr) = Host::start().await;
        let did = did_web_for(&addr, None);
        host.set(WELL_KNOWN, Reply::json(&web_document(&did)));
        (host, did)
    }

    async fn answer(&self, path: &str) -> Response {
        *self.hits.lock().unwrap().entry(path.into()).or_default() += 1;
        let reply = self.replies.lock().unwrap().get(path).cloned();
        let Some(reply) = reply else {
            return StatusCode::NOT_FOUND.into_response();
        };
        tokio::time::sleep(reply.delay).await;
        let mut resp = (
            StatusCode::from_u16(reply.status).unwrap(),
            [("content-type", "application/json")],
            reply.body,
        )
            .into_response();
        if let Some(cc) = reply.cache_control {
            resp.headers_mut()
                .insert("cache-control", cc.parse().unwrap());
        }
        resp
    }

    fn set(&self, path: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(path.into(), reply);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct Clock {
    base: Instant,
    offset_secs: Arc<AtomicU64>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
            offset_secs: Arc::new(AtomicU64::new(0)),
        }
    }

    fn advance(&self, secs: u64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_secs(self.offset_secs.load(Ordering::SeqCst))
    }
}

fn client(allow_private: bool) -> PeerClient {
    PeerClient::new(PeerClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        allow_private,
        ..PeerClientOptions::default()
    })
}

fn resolver(directories: Vec<String>) -> (DidResolver, Clock) {
    let clock = Clock::new();
    let c = clock.clone();
    let resolver = DidResolver::new(client(true), directories).with_clock(move || c.now());
    (resolver, clock)
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

fn multibase(key: &Keypair) -> String {
    key.did_key().strip_prefix("did:key:").unwrap().to_owned()
}

/// A document with key-2 (seed 2) current and key-1 (seed 1) retired.
fn web_document(did: &str) -> Value {
    did_web_document(
        did,
        &[
            ("key-2".into(), multibase(&key(2))),
            ("key-1".into(), multibase(&key(1))),
        ],
        &["key-2".into()],
        Some("https://spl.alice.dev"),
        &["did:sync:abcdefghijklmnopqrstuvwx".into()],
    )
}

const WELL_KNOWN: &str = "/.well-known/did.json";

#[tokio::test]
async fn did_web_domain_and_path_forms_resolve() {
    let (host, addr) = Host::start().await;
    let domain = did_web_for(&addr, None);
    assert!(domain.contains("%3A"), "{domain}");
    let path = did_web_for(&addr, Some("teams/alice"));
    // The path form's document names two relays too (federation-protocol.md §7.2).
    let relays = [
        "https://r1.example".to_string(),
        "https://r2.example".into(),
    ];
    let mut with_relays = web_document(&path);
    syncropel_protocol::did_doc::add_relay_services(&mut with_relays, &path, &relays);
    host.set(WELL_KNOWN, Reply::json(&web_document(&domain)));
    host.set("/teams/alice/did.json", Reply::json(&with_relays));
    let (resolver, _) = resolver(Vec::new());
    assert!(resolver.resolve(&domain).await.unwrap().relays.is_empty());
    assert_eq!(resolver.resolve(&path).await.unwrap().relays, relays);

    for did in [&domain, &path] {
        let resolved = resolver.resolve(did).await.unwrap();
        assert_eq!(&resolved.did, did);
        assert_eq!(resolved.keys, [key(2).did_key(), key(1).did_key()]);
        assert_eq!(resolved.current, [key(2).did_key()]);
        assert_eq!(resolved.endpoint.as_deref(), Some("https://spl.alice.dev"));
        assert_eq!(
            resolved.also_known_as,
            ["did:sync:abcdefghijklmnopqrstuvwx"]
        );
        assert!(resolved.handles.is_empty() && !resolved.deactivated);
        assert!(resolved.accepts(&key(1).did_key()) && resolved.accepts(&key(2).did_key()));
        assert!(!resolved.accepts(&key(3).did_key()));
        assert!(Arc::ptr_eq(&resolved, &resolver.cached(did).unwrap()));
    }
    assert_eq!(host.hits(WELL_KNOWN), 1);
    assert_eq!(host.hits("/teams/alice/did.json"), 1);
}

#[tokio::test]
async fn cache_control_is_honoured_and_clamped() {
    let (host, addr) = Host::start().await;
    let (resolver, clock) = resolver(Vec::new());
    // (path, Cache-Control, seconds the answer is cached)
    let cases = [
        ("/a", Some("public, max-age=120"), 120),
        ("/b", Some("max-age=5"), 60),
        ("/c", Some("max-age=86400"), 3600),
        ("/d", Some("no-cache"), 60),
        ("/e", None, 300),
    ];
    let mut dids = Vec::new();
    for (path, header, _) in cases {
        let did = did_web_for(&addr, Some(path));
        let mut reply = Reply::json(&web_document(&did));
        reply.cache_control = header;
        host.set(&format!("{path}/did.json"), reply);
        resolver.resolve(&did).await.unwrap();
        dids.push(did);
    }
    let mut elapsed = 0;
    let mut checkpoints: Vec<u64> = cases.iter().flat_map(|c| [c.2 - 1, c.2 + 1]).collect();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    for at in checkpoints {
        clock.advance(at - elapsed);
        elapsed = at;
        for ((path, _, ttl), did) in cases.iter().zip(&dids) {
            if at == ttl - 1 || at == ttl + 1 {
                resolver.resolve(did).await.unwrap();
                let expected = if at < *ttl { 1 } else { 2 };
                let hits = host.hits(&format!("{path}/did.json"));
                assert_eq!(hits, expected, "{path} at {at} s");
            }
        }
    }
}

#[tokio::test]
async fn refresh_bypasses_the_cache_once_per_30_seconds() {
    let (host, did) = Host::with_web_document().await;
    let (resolver, clock) = resolver(Vec::new());
    resolver.resolve(&did).await.unwrap();
    assert_eq!(host.hits(WELL_KNOWN), 1);

    // The key rotated: a forced refetch sees key-3.
    let rotated = did_web_document(
        &did,
        &[("key-3".into(), multibase(&key(3)))],
        &["key-3".into()],
        None,
        &[],
    );
    host.set(WELL_KNOWN, Reply::json(&rotated));
    let fresh = resolver.refresh(&did).await.unwrap();
    assert_eq!(fresh.keys, [key(3).did_key()]);
    assert_eq!(host.hits(WELL_KNOWN), 2);
    assert!(resolver.cached(&did).unwrap().accepts(&key(3).did_key()));

    // Within 30 s another refresh is served from the cache.
    for _ in 0..5 {
        resolver.refresh(&did).await.unwrap();
    }
    clock.advance(29);
    resolver.refresh(&did).await.unwrap();
    assert_eq!(host.hits(WELL_KNOWN), 2);
    clock.advance(1);
    resolver.refresh(&did).await.unwrap();
    assert_eq!(host.hits(WELL_KNOWN), 3);
}

#[tokio::test]
async fn hosted_policy_refuses_a_loopback_did_web() {
    let (host, did) = Host::with_web_document().await;
    let resolver = DidResolver::new(client(false), Vec::new());
    let err = resolver.resolve(&did).await.unwrap_err();
    assert_eq!(err.code(), "TARGET_FORBIDDEN", "{err}");
    let err = resolver.resolve("did:web:localhost%3A1").await.unwrap_err();
    assert_eq!(err.code(), "TARGET_FORBIDDEN", "{err}");
    assert_eq!(host.hits(WELL_KNOWN), 0);
}

#[tokio::test]
async fn bad_documents_are_refused_and_failures_cached_briefly() {
    let (host, addr) = Host::start().await;
    let (resolver, clock) = resolver(Vec::new());
    let did = |path: &str| did_web_for(&addr, Some(path));
    let foreign = web_document("did:web:mallory.dev");
    let oversize = json!({"id": did("big"), "padding": "x".repeat(64 * 1024)});
    for (path, reply, code) in [
        ("foreign", Reply::json(&foreign), "DID_INVALID"),
        ("oversize", Reply::json(&oversize), "PARSE_ERROR"),
        ("array", Reply::json(&json!([1])), "PARSE_ERROR"),
        (
            "garbage",
            Reply {
                body: "{\"id\":".into(),
                ..Reply::json(&json!({}))
            },
            "PARSE_ERROR",
        ),
        (
            "badkey",
            Reply::json(&json!({"id": did("badkey"), "verificationMethod": [
            {"id": "#key-1", "type": "Ed25519VerificationKey2020", "controller": did("badkey"),
             "publicKeyMultibase": "z6MkNotAKey"}]})),
            "DID_INVALID",
        ),
        (
            "down",
            Reply {
                status: 503,
                ..Reply::json(&json!({}))
            },
            "HTTP_5XX",
        ),
    ] {
        host.set(&format!("/{path}/did.json"), reply);
        let err = resolver.resolve(&did(path)).await.unwrap_err();
        assert_eq!(err.code(), code, "{path}: {err}");
    }
    let err = resolver.resolve(&did("missing")).await.unwrap_err();
    assert_eq!(err, PeerError::DidNotFound(did("missing")));

    // The failure is remembered for 30 s, then the host is asked again.
    let path = "/foreign/did.json";
    host.set(path, Reply::json(&web_document(&did("foreign"))));
    clock.advance(29);
    assert_eq!(
        resolver.resolve(&did("foreign")).await.unwrap_err().code(),
        "DID_INVALID"
    );
    assert!(resolver.cached(&did("foreign")).is_none());
    assert_eq!(host.hits(path), 1);
    clock.advance(2);
    resolver.resolve(&did("foreign")).await.unwrap();
    assert_eq!(host.hits(path), 2);
}

#[tokio::test]
async fn unsupported_dids_make_no_request() {
    let (resolver, _) = resolver(vec!["http://127.0.0.1:1".into()]);
    for did in [
        "did:sync:user:alice",
        "did:sync:abc",
        "did:sync:ABCDEFGHIJKLMNOPQRSTUVWX",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:plc:abc",
        "did:web:alice.dev:..",
    ] {
        let err = resolver.resolve(did).await.unwrap_err();
        assert_eq!(err.code(), "DID_UNSUPPORTED", "{did}: {err}");
        assert_eq!(
            resolver.refresh(did).await.unwrap_err().code(),
            "DID_UNSUPPORTED"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_share_one_request() {
    let (host, addr) = Host::start().await;
    let did = did_web_for(&addr, None);
    host.set(
        WELL_KNOWN,
        Reply {
            delay: Duration::from_millis(200),
            ..Reply::json(&web_document(&did))
        },
    );
    let (resolver, _) = resolver(Vec::new());
    let resolver = Arc::new(resolver);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (resolver, did) = (Arc::clone(&resolver), did.clone());
            tokio::spawn(async move { resolver.resolve(&did).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(results.iter().all(|r| Arc::ptr_eq(r, &results[0])));
    assert_eq!(host.hits(WELL_KNOWN), 1);
}

#[tokio::test]
async fn repeated_resolves_are_served_from_the_cache() {
    let (host, did) = Host::with_web_document().await;
    let resolver = DidResolver::new(client(true), Vec::new());
    let first = resolver.resolve(&did).await.unwrap();
    for _ in 0..1000 {
        assert!(Arc::ptr_eq(&first, &resolver.resolve(&did).await.unwrap()));
    }
    assert_eq!(host.hits(WELL_KNOWN), 1);
}

// ---- did:sync ----

struct SyncKeys {
    user: Keypair,
    host: Keypair,
}

fn sync_keys() -> SyncKeys {
    SyncKeys {
        user: key(10),
        host: key(11),
    }
}

fn state_op(k: &SyncKeys, kind: OpType, prev: Option<&str>, signing: &[(&str, u8)]) -> Operation {
    Operation {
        kind,
        prev: prev.map(str::to_owned),
        signing_keys: signing
            .iter()
            .map(|(name, seed)| ((*name).to_owned(), multibase(&key(*seed))))
            .collect(),
        rotation_keys: vec![k.user.did_key(), k.host.did_key()],
        handles: vec!["alice".into()],
        namespaces: vec!["alice".into()],
        services: BTreeMap::from([(
            "syncropel".into(),
            Service {
                kind: "syncropel".into(),
                endpoint: "https://alice.syncropel.app".into(),
            },
        )]),
        compromised: Vec::new(),
        created_at: "2026-05-01T12:00:00Z".into(),
        sig: None,
    }
}

const T0: i64 = 1_777_636_800;

/// Genesis with key-1 (seed 1); an update rotating to key-2 (seed 2) with key-1 kept as
/// historical; an update moving to key-3 (seed 3) and marking key-2 compromised.
fn rotated_log(k: &SyncKeys) -> OpLog {
    let mut log = OpLog::new();
    let g = log
        .apply(
            &sign_operation(
                &state_op(k, OpType::Genesis, None, &[("key-1", 1)]),
                &k.host,
            ),
            T0,
        )
        .unwrap()
        .entry
        .cid;
    let u1 = log
        .apply(
            &sign_operation(
                &state_op(k, OpType::Update, Some(&g), &[("key-2", 2)]),
                &k.user,
            ),
            T0 + 60,
        )
        .unwrap()
        .entry
        .cid;
    let mut withdraw = state_op(k, OpType::Update, Some(&u1), &[("key-3", 3)]);
    withdraw.compromised = vec!["key-2".into()];
    log.apply(&sign_operation(&withdraw, &k.user), T0 + 120)
        .unwrap();
    log
}

fn operations_body(did: &str, log: &OpLog) -> Value {
    json!({"object": "did_operations", "did": did, "operations": log.entries})
}

fn hash_of(did: &str) -> String {
    did.strip_prefix("did:sync:").unwrap().to_owned()
}

/// A directory serving `/directory/{hash}/operations` from a map; counts requests.
async fn directory(logs: HashMap<String, Value>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let logs = Arc::new(logs);
    let app = Router::new().route(
        "/directory/{hash}/operations",
        get(move |Path(hash): Path<String>| {
            let (logs, counter) = (Arc::clone(&logs), Arc::clone(&counter));
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                match logs.get(&hash) {
                    Some(body) => axum::Json(body.clone()).into_response(),
                    None => (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"object": "error", "code": "NOT_FOUND", "message": "no such DID"})),
                    )
                        .into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), hits)
}

#[tokio::test]
async fn did_sync_log_is_replayed_into_keys() {
    let k = sync_keys();
    let log = rotated_log(&k);
    let did = log.did().unwrap();
    let (empty, empty_hits) = directory(HashMap::new()).await;
    let (dir, dir_hits) = directory(HashMap::from([(
        hash_of(&did),
        operations_body(&did, &log),
    )]))
    .await;
    // The first directory does not know the DID; the second is asked.
    let (resolver, clock) = resolver(vec![empty, dir]);
    let resolved = resolver.resolve(&did).await.unwrap();
    assert_eq!(resolved.did, did);
    assert_eq!(resolved.keys, [key(1).did_key(), key(3).did_key()]);
    assert_eq!(resolved.current, [key(3).did_key()]);
    assert_eq!(resolved.head, log.entries.last().map(|e| e.cid.clone()));
    assert!(
        resolved.accepts(&key(1).did_key()),
        "a retired key still verifies old records"
    );
    assert!(
        !resolved.accepts(&key(2).did_key()),
        "a compromised key verifies nothing"
    );
    assert_eq!(
        resolved.endpoint.as_deref(),
        Some("https://alice.syncropel.app")
    );
    assert_eq!(resolved.handles, ["alice"]);
    assert!(!resolved.deactivated);
    assert_eq!(
        (
            empty_hits.load(Ordering::SeqCst),
            dir_hits.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    // Cached for 10 minutes.
    clock.advance(599);
    resolver.resolve(&did).await.unwrap();
    assert_eq!(dir_hits.load(Ordering::SeqCst), 1);
    clock.advance(2);
    resolver.resolve(&did).await.unwrap();
    assert_eq!(dir_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn did_sync_unknown_everywhere_is_not_found() {
    let (a, _) = directory(HashMap::new()).await;
    let (b, b_hits) = directory(HashMap::new()).await;
    let (resolver, _) = resolver(vec![a, b]);
    let did = "did:sync:abcdefghijklmnopqrstuvwx";
    let err = resolver.resolve(did).await.unwrap_err();
    assert_eq!(err, PeerError::DidNotFound(did.into()));
    assert_eq!(b_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn lying_directories_are_refused() {
    let k = sync_keys();
    let log = rotated_log(&k);
    let did = log.did().unwrap();
    let body = operations_body(&did, &log);

    let mut tampered = body.clone();
    tampered["operations"][1]["op"]["handles"] = json!(["mallory"]);
    let mut wrong_cid = body.clone();
    wrong_cid["operations"][2]["cid"] = json!("0".repeat(64));
    let mut nullified = body.clone();
    nullified["operations"][2]["nullified"] = json!(true);
    let mut reordered = body.clone();
    reordered["operations"].as_array_mut().unwrap().swap(1, 2);
    // Another DID's valid log served under this DID.
    let other = {
        let other_keys = SyncKeys {
            user: key(20),
            host: key(21),
        };
        let mut other = OpLog::new();
        other
            .apply(
                &sign_operation(
                    &state_op(&other_keys, OpType::Genesis, None, &[("key-1", 1)]),
                    &other_keys.host,
                ),
                T0,
            )
            .unwrap();
        operations_body(&did, &other)
    };
    let mut other_did = body.clone();
    other_did["did"] = json!("did:sync:abcdefghijklmnopqrstuvwx");
    let empty = json!({"object": "did_operations", "did": did, "operations": []});
    let not_ops = json!({"object": "did_document", "id": did});

    for (what, served) in [
        ("tampered op", tampered),
        ("wrong cid", wrong_cid),
        ("false nullified flag", nullified),
        ("reordered", reordered),
        ("another DID's log", other),
        ("answer for another DID", other_did),
        ("empty log", empty),
        ("not an operation log", not_ops),
    ] {
        let (dir, _) = directory(HashMap::from([(hash_of(&did), served)])).await;
        let (resolver, _) = resolver(vec![dir]);
        let err = resolver.resolve(&did).await.unwrap_err();
        assert_eq!(err.code(), "DID_INVALID", "{what}: {err}");
    }

    // An honest directory after a lying one is still used.
    let mut tampered = body.clone();
    tampered["operations"][0]["op"]["handles"] = json!(["mallory"]);
    let (liar, _) = directory(HashMap::from([(hash_of(&did), tampered)])).await;
    let (honest, _) = directory(HashMap::from([(hash_of(&did), body)])).await;
    let (resolver, _) = resolver(vec![liar, honest]);
    assert_eq!(resolver.resolve(&did).await.unwrap().handles, ["alice"]);
}

#[tokio::test]
async fn deactivated_did_sync_verifies_nothing() {
    let k = sync_keys();
    let mut log = OpLog::new();
    let g = log
        .apply(
            &sign_operation(
                &state_op(&k, OpType::Genesis, None, &[("key-1", 1)]),
                &k.host,
            ),
            T0,
        )
        .unwrap()
        .entry
        .cid;
    let mut tombstone = state_op(&k, OpType::Tombstone, Some(&g), &[]);
    tombstone.rotation_keys.clear();
    tombstone.handles.clear();
    tombstone.namespaces.clear();
    tombstone.services.clear();
    log.apply(&sign_operation(&tombstone, &k.user), T0 + 60)
        .unwrap();
    let did = log.did().unwrap();
    let (dir, _) = directory(HashMap::from([(
        hash_of(&did),
        operations_body(&did, &log),
    )]))
    .await;
    let (resolver, _) = resolver(vec![dir]);
    let resolved = resolver.resolve(&did).await.unwrap();
    assert!(resolved.deactivated);
    assert!(resolved.keys.is_empty() && resolved.current.is_empty());
    assert!(!resolved.accepts(&key(1).did_key()));
}
