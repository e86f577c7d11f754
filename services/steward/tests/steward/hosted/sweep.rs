//! The isolation sweep: four tenants on one database, each holding records, a service account
//! and its token, namespaces, a consent grant, a sync pair and a federation pair (C with D) or a
//! pending pair request (A to B), all naming a secret marker of that tenant. Then every
//! credential of every tenant (admin tokens, read-only tokens, the pair tokens C and D issued each
//! other) is sent to every other tenant on every route the router serves, aimed at that tenant's
//! real objects, through a replica that addresses tenants by path and through one that addresses
//! them by host. Every answer must be the refusal the route's door gives a stranger (or, on the
//! routes open by design, an answer without any tenant's data), no answer may carry another
//! tenant's marker, and afterwards no tenant's rows have changed. A control pass then replays
//! the reads with each tenant's own token: they find the objects the sweep aimed at.
//!
//! Request bodies, path variants and how the token is presented are picked by a xorshift
//! generator seeded with [`SEED`] (or `SWEEP_SEED` from the environment), printed at the start,
//! so a failure reproduces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};
use syncropel_client::encode_segment;
use syncropel_federation::state as fstate;
use syncropel_protocol::pair::outbound_secret_handle;
use syncropel_protocol::sha256_hex;
use syncropel_store::StateChange;
use syncropel_testkit::hosted::{tenant_request, Config, Replica};
use syncropel_testkit::{envelope, error_code, with_test_database};

use super::sql;

/// The default seed of the request generator.
const SEED: u64 = 0x5eed_5eed_5eed;
const LABELS: [&str; 4] = ["sweep-a", "sweep-b", "sweep-c", "sweep-d"];
/// The thread every tenant writes its secret records to: the same name everywhere.
const THREAD: &str = "th_sweep";
/// How long a cross-tenant answer may take to arrive and be read in full.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long the owner's own reads are read for (a watch is a stream that does not end).
const OWN_READ_FOR: Duration = Duration::from_millis(300);
/// The refusal of a token the addressed tenant does not know.
const AUTH_INVALID: (u16, &str) = (401, "AUTH_INVALID");
const NOT_FOUND: (u16, &str) = (404, "NOT_FOUND");
const INVITE_NOT_FOUND: (u16, &str) = (404, "INVITE_NOT_FOUND");
const UNAUTHENTICATED_INITIATOR: (u16, &str) = (403, "UNAUTHENTICATED_INITIATOR");

/// A small xorshift64 generator: reproducible choices with no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// 32 random bytes as 64 hex characters (a nonce).
    fn hex64(&mut self) -> String {
        (0..4).map(|_| format!("{:016x}", self.next())).collect()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What a route asks of a caller, and so what another tenant's credential must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    /// A token of the addressed tenant: any other is unknown there (`401 AUTH_INVALID`).
    Token,
    /// Open by design, public data only: `200` to anyone.
    Public,
    /// Open by design, authenticated by the signature a federation message carries: a message
    /// not signed by the right key is refused with this (status, code).
    Signed((u16, &'static str)),
    /// Open by design, the id in its path is the credential (an invite): an id another tenant
    /// issued is unknown here, refused with this (status, code).
    Held((u16, &'static str)),
    /// Not served at a tenant's address of a hosted steward (platform or `spl serve` routes, or
    /// a did:web document a did:key tenant does not have): `404 NOT_FOUND`.
    NotHere,
}

/// One request a route may be sent: path (with its query) and body.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    body: Option<Value>,
    /// An answer that may not end (a watch, a longpoll): never replayed with the owner's token.
    stream: bool,
}

#[derive(Clone, Debug)]
struct Route {
    method: Method,
    /// The route as the router declares it; `None` for routes the fallback serves.
    pattern: Option<&'static str>,
    door: Door,
    /// The requests to choose from.
    requests: Vec<Request>,
    /// Changes nothing: replayed with the owner's own token in the control pass.
    read_only: bool,
}

impl Route {
    fn new(method: Method, pattern: &'static str, door: Door) -> Route {
        Route {
            read_only: method == Method::GET,
            method,
            pattern: Some(pattern),
            door,
            requests: Vec::new(),
        }
    }

    fn fallback(method: Method, door: Door) -> Route {
        Route {
            pattern: None,
            ..Route::new(method, "", door)
        }
    }

    fn at(mut self, path: impl Into<String>) -> Route {
        self.requests.push(Request {
            path: path.into(),
            body: None,
            stream: false,
        });
        self
    }

    fn streaming_at(mut self, path: impl Into<String>) -> Route {
        self.requests.push(Request {
            path: path.into(),
            body: None,
            stream: true,
        });
        self
    }

    fn with(mut self, path: impl Into<String>, body: Value) -> Route {
        self.requests.push(Request {
            path: path.into(),
            body: Some(body),
            stream: false,
        });
        self
    }

    /// A POST that only reads.
    fn reads(mut self) -> Route {
        self.read_only = true;
        self
    }
}

/// What a request is aimed at: a tenant's real objects (the target) or who the requester claims
/// to be (the requester's own).
#[derive(Clone, Debug, Default)]
struct Aim {
    label: String,
    marker: String,
    did: String,
    signer: String,
    url: String,
    instance: String,
    records: Vec<String>,
    service_accounts: Vec<String>,
    token_ids: Vec<String>,
    namespaces: Vec<String>,
    grant: String,
    sync_pair: String,
    /// A federation pair (active, or a pending request) of this tenant, and its peer.
    pair: String,
    peer_did: String,
    /// An open invite of this tenant, a member and one of its agent sub-grants.
    invite: String,
    member: String,
    agent_grant: String,
}

/// A signature over nothing this tenant ever signed: right shape, wrong bytes.
fn forged_sig(signer: &str) -> Value {
    json!({"alg": "Ed25519", "key_id": signer, "value": "A".repeat(86)})
}

/// Every route the steward's router serves, as the requests of `from` aimed at `to`.
///
/// This list MUST follow the router (`services/steward/src/app.rs`, `routes/federation/mod.rs`,
/// `hosted/provision.rs`): `the_sweep_covers_every_route_of_the_router` fails when a route is
/// added there (or documented in docs/api.md) and not here.
fn routes(to: &Aim, from: &Aim, rng: &mut Rng) -> Vec<Route> {
    use Door::*;
    use Method as M;
    let record = rng.pick(&to.records).clone();
    let sa = rng.pick(&to.service_accounts).clone();
    let token_id = rng.pick(&to.token_ids).clone();
    let namespace = rng.pick(&to.namespaces).clone();
    let (pair, grant, sync_pair) = (&to.pair, &to.grant, &to.sync_pair);
    let pair_key = rng.pick(&[to.pair.clone(), to.peer_did.clone()]).clone();
    let init = |nonce: String, signed: bool| {
        let mut init = json!({
            "actor_did": from.did,
            "peer_url": from.url,
            "responder_did": to.did,
            "nonce": nonce,
            "namespace": "default",
            "issued_at_ms": now_ms(),
        });
        if signed {
            init["sig"] = forged_sig(&from.signer);
        }
        init
    };
    let refresh = |nonce: String| {
        json!({
            "pair_id": to.pair,
            "generation": 1,
            "nonce": nonce,
            "issued_at_ms": now_ms(),
            "sig": forged_sig(&from.signer),
        })
    };
    let intruder = envelope(THREAD, 900, json!({"text": "intruder"}));
    vec![
        // Open routes at the root.
        Route::new(M::GET, "/health", Public).at("/health"),
        Route::new(M::GET, "/ready", Public).at("/ready"),
        Route::new(M::GET, "/.well-known/syncropel", Public).at("/.well-known/syncropel"),
        Route::fallback(M::GET, NotHere).at("/.well-known/did.json"),
        Route::fallback(M::GET, NotHere)
            .at(format!("/{}/did.json", to.label))
            .at("/v1/did.json"),
        Route::new(M::GET, "/metrics", NotHere).at("/metrics"),
        // Platform routes: only on the platform's address.
        Route::new(M::POST, "/provision", NotHere).with(
            "/provision",
            json!({"label": "sneaky", "bootstrap_token": "sneaky-bootstrap-token"}),
        ),
        Route::new(M::GET, "/provision/{id}", NotHere).at(format!("/provision/{}", to.instance)),
        Route::new(M::DELETE, "/provision/{id}", NotHere)
            .at(format!("/provision/{}", to.instance)),
        Route::new(M::POST, "/provision/{id}/suspend", NotHere)
            .at(format!("/provision/{}/suspend", to.instance)),
        Route::new(M::POST, "/provision/{id}/resume", NotHere)
            .at(format!("/provision/{}/resume", to.instance)),
        // `spl serve` only.
        Route::new(M::POST, "/v1/bootstrap/service-account", NotHere).with(
            "/v1/bootstrap/service-account",
            json!({"name": "sneaky", "scopes": ["admin"]}),
        ),
        // Records and threads.
        Route::new(M::POST, "/v1/records", Token)
            .with("/v1/records", intruder.clone())
            .with(
                "/v1/records",
                json!({"act": "KNOW", "actor": from.did, "thread": THREAD, "clock": 901, "body": {}}),
            ),
        Route::new(M::GET, "/v1/records", Token)
            .at("/v1/records")
            .at(format!("/v1/records?thread={THREAD}&limit=5"))
            .at("/v1/records?actor=did:example:test&since=0&limit=1000"),
        Route::new(M::POST, "/v1/records/batch", Token)
            .with("/v1/records/batch", json!({"records": [intruder]}))
            .with(
                "/v1/records/batch",
                json!({"records": [envelope(THREAD, 902, json!({})), envelope("th_other", 1, json!({}))]}),
            ),
        Route::new(M::POST, "/v1/records/query", Token)
            .with("/v1/records/query", json!({"filter": {"thread": THREAD}}))
            .with(
                "/v1/records/query",
                json!({"filter": {"body.text": {"$like": "secret%"}}, "limit": 10}),
            )
            .reads(),
        Route::new(M::POST, "/v1/records/search", Token)
            .with("/v1/records/search", json!({"query": "secret"}))
            .with("/v1/records/search", json!({"query": to.marker, "limit": 5}))
            .reads(),
        Route::new(M::GET, "/v1/records/{id}", Token).at(format!("/v1/records/{record}")),
        Route::new(M::GET, "/v1/threads", Token)
            .at("/v1/threads")
            .at("/v1/threads?limit=5"),
        Route::new(M::POST, "/v1/threads", Token)
            .with("/v1/threads", json!({"title": "intruder"}))
            .with("/v1/threads", json!({"id": THREAD})),
        Route::new(M::DELETE, "/v1/threads/{id}", Token).at(format!("/v1/threads/{THREAD}")),
        Route::new(M::GET, "/v1/threads/{id}/records", Token)
            .at(format!("/v1/threads/{THREAD}/records"))
            .at(format!("/v1/threads/{THREAD}/records?limit=2")),
        Route::new(M::GET, "/v1/threads/{id}/watch", Token)
            .streaming_at(format!("/v1/threads/{THREAD}/watch"))
            .streaming_at(format!("/v1/threads/{THREAD}/watch?since_clock=0")),
        Route::new(M::GET, "/v1/health", Token).at("/v1/health"),
        Route::new(M::GET, "/v1/capabilities", Public).at("/v1/capabilities"),
        // Accounts, tokens, namespaces, identity.
        Route::new(M::POST, "/v1/service-accounts", Token)
            .with(
                "/v1/service-accounts",
                json!({"name": "intruder", "scopes": ["admin"]}),
            )
            .with(
                "/v1/service-accounts",
                json!({"name": "intruder", "scopes": ["records:read"], "allowed_actors": [from.did]}),
            ),
        Route::new(M::GET, "/v1/service-accounts", Token).at("/v1/service-accounts"),
        Route::new(M::POST, "/v1/service-accounts/{id}/tokens", Token)
            .with(format!("/v1/service-accounts/{sa}/tokens"), json!({}))
            .with(
                format!("/v1/service-accounts/{sa}/tokens"),
                json!({"ttl_seconds": 60}),
            ),
        Route::new(M::DELETE, "/v1/tokens/{token_id}", Token).at(format!("/v1/tokens/{token_id}")),
        Route::new(M::GET, "/v1/namespaces", Token).at("/v1/namespaces"),
        Route::new(M::POST, "/v1/namespaces", Token)
            .with("/v1/namespaces", json!({"id": "intruder"}))
            .with(
                "/v1/namespaces",
                json!({"id": format!("{namespace}/intruder"), "description": "x"}),
            ),
        Route::new(M::GET, "/v1/namespaces/{*id}", Token).at(format!("/v1/namespaces/{namespace}")),
        Route::new(M::DELETE, "/v1/namespaces/{*id}", Token)
            .at(format!("/v1/namespaces/{namespace}")),
        Route::new(M::POST, "/v1/secrets/{operation}", Token)
            .with("/v1/secrets/list", json!({}))
            .with("/v1/secrets/get", json!({"handle": "anything"}))
            .with("/v1/secrets/set", json!({"handle": "planted", "value": "x"}))
            .with("/v1/secrets/delete", json!({"handle": "anything"})),
        // Members and invites: an invite's id opens its routes, but only at its own tenant.
        Route::new(M::GET, "/v1/scope_presets", Public).at("/v1/scope_presets"),
        Route::new(M::POST, "/v1/invites", Token)
            .with("/v1/invites", json!({"scopes": ["admin"], "max_uses": 5}))
            .with(
                "/v1/invites",
                json!({"membership": {"preset": "admin", "label": "intruder"}}),
            ),
        Route::new(M::GET, "/v1/invites/{id}", Held(INVITE_NOT_FOUND))
            .at(format!("/v1/invites/{}", from.invite)),
        Route::new(M::DELETE, "/v1/invites/{id}", Token).at(format!("/v1/invites/{}", to.invite)),
        Route::new(M::POST, "/v1/invites/{id}/redeem", Held(INVITE_NOT_FOUND)).with(
            format!("/v1/invites/{}/redeem", from.invite),
            json!({"holder_type": "guest", "holder_pubkey": rng.hex64(), "member_label": "intruder", "custody": "custodial"}),
        ),
        Route::new(M::GET, "/v1/members", Token).at("/v1/members"),
        Route::new(M::POST, "/v1/members/adopt", Token)
            .with("/v1/members/adopt", json!({"label": "intruder"}))
            .with(
                "/v1/members/adopt",
                json!({"label": "intruder", "sa_id": sa.clone()}),
            ),
        Route::new(M::DELETE, "/v1/members/{label}", Token)
            .at(format!("/v1/members/{}", to.member)),
        Route::new(M::POST, "/v1/members/{label}/grants", Token).with(
            format!("/v1/members/{}/grants", to.member),
            json!({"aud": from.did, "scopes": ["records:read"]}),
        ),
        Route::new(M::DELETE, "/v1/members/{label}/grants/{grant_id}", Token).at(format!(
            "/v1/members/{}/grants/{}",
            to.member, to.agent_grant
        )),
        Route::new(M::GET, "/v1/config", Token).at("/v1/config"),
        Route::new(M::POST, "/v1/config/{topic}", Token)
            .at("/v1/config/store_bounds")
            .with("/v1/config/store_bounds", json!({"max_total_bytes": 1})),
        Route::new(M::GET, "/v1/identity", Token).at("/v1/identity"),
        Route::new(M::POST, "/v1/identity/upgrade", Token)
            .at("/v1/identity/upgrade")
            .with("/v1/identity/upgrade", json!({})),
        // Moving a tenant: its bundle for its own admin only; a fence only with a notice signed
        // by its own key.
        Route::new(M::POST, "/v1/portability/export", Token)
            .with("/v1/portability/export", json!({"no_identity": true}))
            .with(
                "/v1/portability/export",
                json!({"passphrase": "a passphrase long enough"}),
            ),
        Route::new(M::POST, "/v1/portability/import", Token)
            .with("/v1/portability/import", json!({}))
            .at("/v1/portability/import?dry_run=true"),
        Route::new(
            M::POST,
            "/v1/portability/fence",
            Signed((422, "SIGNATURE_INVALID")),
        )
        .with(
            "/v1/portability/fence",
            json!({"object": "instance_moved", "did": to.did, "moved_to": from.url,
                   "at": "2026-01-01T00:00:00Z", "sig": forged_sig(&from.signer)}),
        ),
        // The sync feed and one-thread sync pairs.
        Route::new(M::GET, "/v1/sync/changes", Token)
            .at(format!("/v1/sync/changes?thread={THREAD}"))
            .streaming_at(format!(
                "/v1/sync/changes?thread={THREAD}&feed=longpoll&limit=10"
            ))
            .streaming_at(format!("/v1/sync/changes?thread={THREAD}&feed=continuous")),
        Route::new(M::GET, "/v1/federation/sync/changes", Token)
            .at(format!("/v1/federation/sync/changes?thread={THREAD}"))
            .streaming_at(format!(
                "/v1/federation/sync/changes?thread={THREAD}&feed=longpoll"
            )),
        Route::new(M::POST, "/v1/sync/records", Token)
            .with("/v1/sync/records", json!({"ids": [record]}))
            .with("/v1/sync/records", json!({"ids": to.records}))
            .with("/v1/sync/records", json!({"records": []}))
            .reads(),
        Route::new(M::POST, "/v1/sync/pull", Token)
            .with(
                "/v1/sync/pull",
                json!({"thread": THREAD, "peer": to.peer_did}),
            )
            .with(
                "/v1/sync/pull",
                json!({"thread": THREAD, "peer": from.url, "peer_token": "spl_prod_x_y"}),
            ),
        Route::new(M::POST, "/v1/sync/pairs", Token).with(
            "/v1/sync/pairs",
            json!({"peer_did": from.did, "peer_url": from.url, "thread_id": THREAD}),
        ),
        Route::new(M::GET, "/v1/sync/pairs", Token).at("/v1/sync/pairs"),
        Route::new(M::GET, "/v1/sync/pairs/{id}", Token).at(format!("/v1/sync/pairs/{sync_pair}")),
        Route::new(M::DELETE, "/v1/sync/pairs/{id}", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}")),
        Route::new(M::POST, "/v1/sync/pairs/{id}/pause", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}/pause")),
        Route::new(M::POST, "/v1/sync/pairs/{id}/resume", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}/resume")),
        Route::new(M::POST, "/v1/sync/pairs/{id}/kick", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}/kick")),
        Route::new(M::GET, "/v1/sync/pairs/{id}/stats", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}/stats")),
        Route::new(M::GET, "/v1/sync/pairs/{id}/trace", Token)
            .at(format!("/v1/sync/pairs/{sync_pair}/trace")),
        Route::new(M::GET, "/v1/sync/health", Token).at("/v1/sync/health"),
        Route::new(M::GET, "/v1/sync/quarantine", Token)
            .at("/v1/sync/quarantine")
            .at(format!("/v1/sync/quarantine?pair={sync_pair}&limit=5")),
        // Their mirror under /v1/federation/sync.
        Route::new(M::POST, "/v1/federation/sync/records", Token)
            .with("/v1/federation/sync/records", json!({"ids": to.records}))
            .reads(),
        Route::new(M::POST, "/v1/federation/sync/pull", Token).with(
            "/v1/federation/sync/pull",
            json!({"thread": THREAD, "peer": to.peer_did}),
        ),
        Route::new(M::POST, "/v1/federation/sync/pairs", Token).with(
            "/v1/federation/sync/pairs",
            json!({"peer_did": from.did, "peer_url": from.url, "thread_id": THREAD}),
        ),
        Route::new(M::GET, "/v1/federation/sync/pairs", Token).at("/v1/federation/sync/pairs"),
        Route::new(M::GET, "/v1/federation/sync/pairs/{id}", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}")),
        Route::new(M::DELETE, "/v1/federation/sync/pairs/{id}", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}")),
        Route::new(M::POST, "/v1/federation/sync/pairs/{id}/pause", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}/pause")),
        Route::new(M::POST, "/v1/federation/sync/pairs/{id}/resume", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}/resume")),
        Route::new(M::POST, "/v1/federation/sync/pairs/{id}/kick", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}/kick")),
        Route::new(M::GET, "/v1/federation/sync/pairs/{id}/stats", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}/stats")),
        Route::new(M::GET, "/v1/federation/sync/pairs/{id}/trace", Token)
            .at(format!("/v1/federation/sync/pairs/{sync_pair}/trace")),
        Route::new(M::GET, "/v1/federation/sync/health", Token).at("/v1/federation/sync/health"),
        // The pairing handshake: peer-facing, signed rather than authenticated by a token.
        Route::new(M::POST, "/v1/federation/pair", Signed(UNAUTHENTICATED_INITIATOR))
            .with("/v1/federation/pair", init(rng.hex64(), false))
            .with("/v1/federation/pair", init(rng.hex64(), true)),
        Route::new(
            M::POST,
            "/v1/federation/pair/init",
            Signed(UNAUTHENTICATED_INITIATOR),
        )
        .with("/v1/federation/pair/init", init(rng.hex64(), false))
        .with("/v1/federation/pair/init", init(rng.hex64(), true)),
        // Only the initiator knows its nonce: any other answers 404.
        Route::new(M::POST, "/v1/federation/pair/poll", Signed(NOT_FOUND))
            .with("/v1/federation/pair/poll", json!({"nonce": rng.hex64()})),
        Route::new(M::POST, "/v1/federation/pair/confirm", Signed(NOT_FOUND)).with(
            "/v1/federation/pair/confirm",
            json!({"nonce": rng.hex64(), "pair_id": pair, "issued_at_ms": now_ms()}),
        ),
        Route::new(
            M::POST,
            "/v1/federation/pair/refresh",
            Signed(UNAUTHENTICATED_INITIATOR),
        )
        .with("/v1/federation/pair/refresh", refresh(rng.hex64())),
        Route::new(M::POST, "/v1/federation/pair/notify-revoke", Token).with(
            "/v1/federation/pair/notify-revoke",
            json!({"pair_id": pair, "issued_at_ms": now_ms(), "sig": forged_sig(&from.signer)}),
        ),
        // The operator's side of pairs.
        Route::new(M::POST, "/v1/federation/pairs", Token)
            .with("/v1/federation/pairs", json!({"peer_url": from.url}))
            .with(
                "/v1/federation/pairs",
                json!({"peer_url": from.url, "namespaces": ["default"], "maps": []}),
            ),
        Route::new(M::GET, "/v1/federation/pairs", Token).at("/v1/federation/pairs"),
        Route::new(M::GET, "/v1/federation/pairs/{id}", Token)
            .at(format!("/v1/federation/pairs/{pair_key}")),
        Route::new(M::POST, "/v1/federation/pairs/{id}/poll", Token)
            .at(format!("/v1/federation/pairs/{pair}/poll")),
        Route::new(M::POST, "/v1/federation/pairs/{id}/config", Token)
            .with(
                format!("/v1/federation/pairs/{pair_key}/config"),
                json!({"thread_allow_add": THREAD}),
            )
            .with(
                format!("/v1/federation/pairs/{pair_key}/config"),
                json!({"thread_rule": "true"}),
            ),
        Route::new(M::POST, "/v1/federation/pairs/{id}/pause", Token)
            .at(format!("/v1/federation/pairs/{pair_key}/pause"))
            .with(
                format!("/v1/federation/pairs/{pair_key}/pause"),
                json!({"reason": "intruder"}),
            ),
        Route::new(M::POST, "/v1/federation/pairs/{id}/resume", Token)
            .at(format!("/v1/federation/pairs/{pair_key}/resume")),
        Route::new(M::POST, "/v1/federation/pairs/{id}/revoke", Token)
            .at(format!("/v1/federation/pairs/{pair_key}/revoke"))
            .with(
                format!("/v1/federation/pairs/{pair_key}/revoke"),
                json!({"reason": "intruder"}),
            ),
        Route::new(M::POST, "/v1/federation/pairs/{id}/push", Token).with(
            format!("/v1/federation/pairs/{pair_key}/push"),
            json!({"thread": THREAD}),
        ),
        Route::new(M::POST, "/v1/federation/pairs/{id}/grants", Token)
            .with(
                format!("/v1/federation/pairs/{pair_key}/grants"),
                json!({"namespace": "intruder"}),
            )
            .with(
                format!("/v1/federation/pairs/{pair_key}/grants"),
                json!({"namespace": namespace, "maps": ["intruder"], "hash_levels": ["L0"]}),
            ),
        Route::new(M::DELETE, "/v1/federation/pairs/{id}/grants/{grant_id}", Token)
            .at(format!("/v1/federation/pairs/{pair_key}/grants/{grant}"))
            .at(format!(
                "/v1/federation/pairs/{pair_key}/grants/{grant}?reason=intruder"
            )),
        Route::new(M::POST, "/v1/federation/pairs/{id}/refresh", Token)
            .at(format!("/v1/federation/pairs/{pair}/refresh")),
        Route::new(M::POST, "/v1/federation/pairs/{id}/url", Token)
            .with(format!("/v1/federation/pairs/{pair}/url"), json!({"url": from.url})),
        Route::new(M::POST, "/v1/federation/pairs/{id}/introducible", Token)
            .with(
                format!("/v1/federation/pairs/{pair_key}/introducible"),
                json!({"introducible": true}),
            )
            .with(
                format!("/v1/federation/pairs/{pair_key}/introducible"),
                json!({"introducible": false}),
            ),
        Route::new(M::GET, "/v1/federation/pending", Token).at("/v1/federation/pending"),
        Route::new(M::POST, "/v1/federation/pending/{id}/approve", Token)
            .at(format!("/v1/federation/pending/{pair}/approve"))
            .with(format!("/v1/federation/pending/{pair}/approve"), json!({})),
        Route::new(M::POST, "/v1/federation/pending/{id}/reject", Token)
            .at(format!("/v1/federation/pending/{pair}/reject"))
            .with(
                format!("/v1/federation/pending/{pair}/reject"),
                json!({"reason": "intruder"}),
            ),
        Route::new(M::GET, "/v1/federation/peers", Token).at("/v1/federation/peers"),
        Route::new(M::GET, "/v1/federation/actor-keys", Token)
            .at("/v1/federation/actor-keys?did=did:sync:user:alice"),
        Route::new(M::GET, "/v1/federation/introductions", Token)
            .at(format!("/v1/federation/introductions?via={}", to.peer_did)),
        Route::new(M::GET, "/v1/discovery/mdns", Token).at("/v1/discovery/mdns"),
        // Relays.
        Route::new(M::GET, "/v1/federation/relay", Token).at("/v1/federation/relay"),
        Route::new(M::GET, "/v1/federation/relay/queues", Token)
            .at("/v1/federation/relay/queues")
            .at(format!("/v1/federation/relay/queues?peer={pair_key}")),
        Route::new(M::POST, "/v1/federation/relay/kick", Token).at("/v1/federation/relay/kick"),
        Route::new(M::POST, "/v1/federation/relay/purge", Token)
            .with("/v1/federation/relay/purge", json!({"peer": pair_key}))
            .with("/v1/federation/relay/purge", json!({"peer": to.peer_did})),
        // Consent.
        Route::new(M::POST, "/v1/consent/grants", Token)
            .with(
                "/v1/consent/grants",
                json!({"target_namespace": "intruder"}),
            )
            .with(
                "/v1/consent/grants",
                json!({"source_namespace": namespace, "target_namespace": "intruder", "peer_did": from.did}),
            ),
        Route::new(M::GET, "/v1/consent/grants", Token)
            .at("/v1/consent/grants")
            .at(format!("/v1/consent/grants?namespace={namespace}")),
        Route::new(M::DELETE, "/v1/consent/grants/{id}", Token)
            .at(format!("/v1/consent/grants/{grant}"))
            .at(format!("/v1/consent/grants/{grant}?reason=intruder")),
    ]
}

// ---------------------------------------------------------------------------------------------
// The route list against the router and docs/api.md
// ---------------------------------------------------------------------------------------------

/// `{id}`, `{*id}`, `{token_id}` are all one parameter; a query string is not part of a route.
fn normalize(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// (METHOD, path) of every `.route("path", handlers)` call in `text`, under `prefix`.
fn route_calls(text: &str, prefix: &str) -> BTreeSet<(String, String)> {
    const START: &str = ".route(";
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        rest = &rest[at + START.len()..];
        let args = rest.trim_start();
        let Some(args) = args.strip_prefix('"') else {
            continue;
        };
        let Some(end) = args.find('"') else { break };
        let path = &args[..end];
        // The handlers: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let mut close = args.len();
        for (i, c) in args[end..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                close = end + i;
                break;
            }
        }
        let handlers = &args[end + 1..close];
        for method in ["get", "post", "put", "patch", "delete"] {
            let call = format!("{method}(");
            let mut from = 0;
            while let Some(i) = handlers[from..].find(&call) {
                let i = from + i;
                let before = handlers[..i].chars().next_back();
                if !before.is_some_and(|b| b.is_alphanumeric() || b == '_' || b == ':') {
                    found.insert((method.to_uppercase(), normalize(&format!("{prefix}{path}"))));
                }
                from = i + call.len();
            }
        }
    }
    found
}

/// Every route the router declares, read from its source as tests/docs/test_reference.py does.
fn router_routes() -> BTreeSet<(String, String)> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    let read = |file: &str| {
        let text = std::fs::read_to_string(format!("{src}{file}")).unwrap();
        text.split("#[cfg(test)]").next().unwrap().to_string()
    };
    let app = read("app.rs");
    // app.rs: routes before `let mut root` belong to the `v1` router, nested at `/v1`.
    let (v1, root) = app.split_once("let mut root").unwrap();
    let mut routes = route_calls(v1, "/v1");
    routes.extend(route_calls(root, ""));
    routes.extend(route_calls(&read("routes/federation/mod.rs"), "/v1"));
    routes.extend(route_calls(&read("hosted/provision.rs"), ""));
    routes
}

/// `METHOD /path` in the first cell of docs/api.md's table rows; `…/x` after a route means that
/// route's last segment replaced by `x`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let mut routes = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split(" | ").next().unwrap_or_default();
        let mut last: Option<(String, String)> = None;
        for code in cell.split('`').skip(1).step_by(2) {
            let (method, path) = if let Some(tail) = code.strip_prefix('…') {
                let (method, previous) = last.clone().unwrap_or_else(|| panic!("{line}"));
                let parent = previous.rsplit_once('/').map_or("", |(p, _)| p).to_string();
                (method, format!("{parent}{tail}"))
            } else {
                match code.split_once(' ') {
                    Some((m, p))
                        if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m)
                            && p.starts_with('/') =>
                    {
                        (m.to_string(), p.to_string())
                    }
                    _ => continue,
                }
            };
            routes.insert((method.clone(), normalize(&path)));
            last = Some((method, path));
        }
    }
    routes
}

/// A target with something in every slot, for the route list alone.
fn dummy_aim(label: &str) -> Aim {
    Aim {
        label: label.into(),
        marker: format!("secret-{label}"),
        did: "did:key:z6Mkdummy".into(),
        signer: "did:key:z6Mkdummy".into(),
        url: "http://127.0.0.1:9/t/dummy".into(),
        instance: "inst".into(),
        records: vec!["rec".into()],
        service_accounts: vec!["sa".into()],
        token_ids: vec!["tok".into()],
        namespaces: vec!["ns".into()],
        grant: "grant".into(),
        sync_pair: "sp".into(),
        pair: "pair".into(),
        peer_did: "did:key:z6Mkpeer".into(),
        invite: "inv_dummy".into(),
        member: "member".into(),
        agent_grant: "grant".into(),
    }
}

#[test]
fn the_sweep_covers_every_route_of_the_router() {
    let listed = routes(&dummy_aim("x"), &dummy_aim("y"), &mut Rng(SEED));
    let swept: BTreeSet<(String, String)> = listed
        .iter()
        .filter_map(|r| Some((r.method.to_string(), normalize(r.pattern?))))
        .collect();
    for route in &listed {
        assert!(!route.requests.is_empty(), "{route:?}");
        if let Some(pattern) = route.pattern {
            for request in &route.requests {
                let same_shape = normalize(&request.path).split('/').count()
                    == normalize(pattern).split('/').count();
                assert!(
                    same_shape || pattern.contains("{*"),
                    "{} {pattern}: {}",
                    route.method,
                    request.path
                );
            }
        }
    }
    let served = router_routes();
    assert!(
        served.len() > 50,
        "the router's source was not read: {served:?}"
    );
    let missing: Vec<_> = served.difference(&swept).collect();
    assert!(
        missing.is_empty(),
        "routes the sweep does not cover: {missing:?}"
    );
    let extra: Vec<_> = swept.difference(&served).collect();
    assert!(
        extra.is_empty(),
        "routes the router does not serve: {extra:?}"
    );
    // Documented routes (the fallback's did:web documents included) are swept too.
    let documented = documented_routes();
    assert!(documented.len() > 50, "{documented:?}");
    let undocumented: Vec<_> = documented
        .iter()
        .filter(|(method, path)| {
            !swept.contains(&(method.clone(), path.clone())) && !path.ends_with("/did.json")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "documented routes the sweep does not cover: {undocumented:?}"
    );
    assert_eq!(
        listed.iter().filter(|r| r.pattern.is_none()).count(),
        documented
            .iter()
            .filter(|(_, path)| path.ends_with("/did.json"))
            .count(),
        "the fallback's routes"
    );
}

// ---------------------------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------------------------

/// A credential and whose it is.
struct Credential {
    owner: usize,
    what: String,
    token: String,
}

/// An answer as read: status, headers and body (as much as arrived).
struct Answer {
    status: u16,
    headers: String,
    text: String,
    json: Value,
    /// The body was still open when we stopped reading.
    open: bool,
}

async fn exchange(request: reqwest::RequestBuilder, read_for: Duration) -> Result<Answer, String> {
    let mut response = tokio::time::timeout(ANSWER_WITHIN, request.send())
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let headers = format!("{:?}", response.headers());
    let deadline = tokio::time::Instant::now() + read_for;
    let mut bytes = Vec::new();
    let mut open = false;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("{status}: reading the body: {e}")),
            Err(_) => {
                open = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        text,
        json,
        open,
    })
}

/// The markers an answer holds that it may not: any but `allowed`'s, unless the request itself
/// carried it (an echo is not a leak).
fn leaked<'a>(
    answer: &Answer,
    markers: &'a [String],
    allowed: usize,
    request: &str,
) -> Vec<&'a str> {
    markers
        .iter()
        .enumerate()
        .filter(|(k, m)| {
            *k != allowed
                && !request.contains(m.as_str())
                && (answer.text.contains(m.as_str()) || answer.headers.contains(m.as_str()))
        })
        .map(|(_, m)| m.as_str())
        .collect()
}

/// Checks one cross-tenant answer against what the route's door allows.
fn judge(door: Door, answer: &Answer) -> Result<(), String> {
    let refused = |(status, code): (u16, &str)| -> Result<(), String> {
        if answer.status != status || answer.open {
            return Err(format!("expected {status} {code}"));
        }
        let body = &answer.json;
        let envelope = body["object"] == "error"
            && body["type"].is_string()
            && body["message"].is_string()
            && body["code"].is_string();
        if !envelope {
            return Err("not the error envelope".into());
        }
        match error_code(body) {
            got if got == code => Ok(()),
            got => Err(format!("expected {status} {code}, got code {got}")),
        }
    };
    match door {
        Door::Token => refused(AUTH_INVALID),
        Door::NotHere => refused(NOT_FOUND),
        Door::Signed(expected) | Door::Held(expected) => refused(expected),
        Door::Public if answer.status == 200 && !answer.open => Ok(()),
        Door::Public => Err("expected 200".into()),
    }
}

/// Everything of a tenant that a request could change, as stored.
async fn fingerprint(replica: &Replica, tenant: &str) -> Vec<(String, String)> {
    let sql = sql(replica);
    let mut prints = Vec::new();
    // Refusals are recorded on the tenant they reached (protocol.md §13.3): the one trace a
    // foreign credential may leave, so `th_audit_security` is not compared.
    for (table, key) in [
        ("records", "thread <> 'th_audit_security' AND tenant"),
        ("threads", "thread <> 'th_audit_security' AND tenant"),
        ("service_accounts", "tenant"),
        ("tokens", "tenant"),
        ("federation_state", "tenant"),
        ("tenants", "id"),
        ("provisions", "tenant"),
    ] {
        let query = format!(
            "SELECT count(*)::text || ' rows, ' || coalesce(md5(string_agg(t::text, '|' ORDER BY \
             t::text)), '-') FROM {table} t WHERE {key} = '{tenant}'"
        );
        prints.push((table.to_string(), sql.scalar::<String>(&query, &[]).await));
    }
    prints
}

/// What a tenant's own token reads of it: how many records, and its service accounts (read raw,
/// so that a refusal shows as a difference rather than a panic).
async fn own_view(replica: &Replica, aim: &Aim, admin: &str) -> (String, Value) {
    let mut records = 0;
    let mut cursor: Option<String> = None;
    let records = loop {
        let mut path = "/v1/records?limit=1000".to_string();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode_segment(cursor)));
        }
        let (status, page) = replica.tenant_get(&aim.label, admin, &path).await;
        if status != 200 {
            break format!("{status} {page}");
        }
        records += page["data"].as_array().map_or(0, |records| {
            records
                .iter()
                .filter(|r| r["thread"] != "th_audit_security")
                .count()
        });
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break format!("{records} records"),
        }
    };
    let (status, accounts) = replica
        .tenant_get(&aim.label, admin, "/v1/service-accounts")
        .await;
    (records, json!({"status": status, "answer": accounts}))
}

/// `POST` as the tenant's admin; the answer must have `status`.
async fn post(
    replica: &Replica,
    aim: &Aim,
    admin: &str,
    path: &str,
    body: Value,
    status: u16,
) -> Value {
    let (got, answer) = replica.tenant_post(&aim.label, admin, path, &body).await;
    assert_eq!(got, status, "{} POST {path}: {answer}", aim.label);
    answer
}

/// A provisioned tenant, holding secrets that name its marker.
async fn populate(replica: &Replica, label: &str) -> (Aim, String, String) {
    let admin = replica.new_tenant(&format!("acct-{label}"), label).await;
    let tenant = replica.platform().tenant(label).await.unwrap().unwrap();
    let marker = format!("secret-{label}");
    let mut aim = Aim {
        label: label.to_string(),
        marker: marker.clone(),
        did: tenant.identity.did.to_string(),
        signer: tenant.identity.signer.to_string(),
        url: tenant.url.clone().unwrap(),
        instance: sql(replica)
            .scalar::<String>(
                &format!("SELECT instance_id FROM provisions WHERE label = '{label}'"),
                &[],
            )
            .await,
        ..Aim::default()
    };
    for clock in 1..=3 {
        let record = envelope(
            THREAD,
            clock,
            json!({"text": format!("{marker} #{clock}"), "n": clock}),
        );
        let stored = post(replica, &aim, &admin, "/v1/records", record, 201).await;
        aim.records.push(stored["id"].as_str().unwrap().to_string());
    }
    let account = post(
        replica,
        &aim,
        &admin,
        "/v1/service-accounts",
        json!({"name": format!("{marker}-reader"), "scopes": ["records:read"]}),
        201,
    )
    .await;
    let sa = account["id"].as_str().unwrap().to_string();
    let minted = post(
        replica,
        &aim,
        &admin,
        &format!("/v1/service-accounts/{sa}/tokens"),
        json!({}),
        201,
    )
    .await;
    let reader = minted["token"].as_str().unwrap().to_string();
    aim.service_accounts = vec![sa, "sa-bootstrap-env".into()];
    aim.token_ids = vec![
        sha256_hex(admin.as_bytes()),
        minted["token_id"].as_str().unwrap().to_string(),
    ];
    assert_eq!(aim.token_ids[1], sha256_hex(reader.as_bytes()));
    for namespace in [format!("{marker}-ns"), format!("{marker}-ns/inner")] {
        let body = json!({"id": namespace, "description": format!("{marker} namespace")});
        post(replica, &aim, &admin, "/v1/namespaces", body, 201).await;
        aim.namespaces.push(namespace);
    }
    let grant = post(
        replica,
        &aim,
        &admin,
        "/v1/consent/grants",
        json!({
            "source_namespace": format!("{marker}-ns"),
            "target_namespace": "shared",
            "peer_did": format!("did:example:{marker}-peer"),
            "purpose": format!("{marker} grant"),
        }),
        201,
    )
    .await;
    aim.grant = grant["grant_id"].as_str().unwrap().to_string();
    // A sync pair with a peer that never answers, its peer token sealed; paused at once so that
    // no job runs while the sweep counts rows.
    let sync_pair = post(
        replica,
        &aim,
        &admin,
        "/v1/sync/pairs",
        json!({
            "peer_did": format!("did:example:{marker}-peer"),
            "peer_url": format!("http://127.0.0.1:9/{marker}"),
            "thread_id": THREAD,
            "peer_token": format!("spl_prod_sa-peer_{marker}-token"),
        }),
        201,
    )
    .await;
    aim.sync_pair = sync_pair["pair_id"].as_str().unwrap().to_string();
    let path = format!("/v1/sync/pairs/{}/pause", aim.sync_pair);
    post(replica, &aim, &admin, &path, json!({}), 200).await;
    // A record held in quarantine, as a pull through the sync pair would leave it.
    let held = format!("{marker}-held");
    let entry = json!({"source": aim.sync_pair, "id": held, "thread": THREAD,
                       "actor": format!("did:example:{marker}-peer"), "code": "SIGNATURE_INVALID",
                       "at": 1_777_000_000});
    let key = format!("{}\n{held}", aim.sync_pair);
    let change = StateChange::put(fstate::QUARANTINE, &key, entry.to_string());
    replica
        .state
        .store
        .write(&tenant.id, Vec::new(), vec![change])
        .await
        .unwrap();
    // A member with an agent, and an invite still open.
    let membership = json!({"membership": {"preset": "reader"}, "max_uses": 2});
    let invite = post(replica, &aim, &admin, "/v1/invites", membership, 201).await;
    aim.invite = invite["invite_id"].as_str().unwrap().to_string();
    aim.member = format!("{marker}-m");
    let redeem = json!({"holder_type": "guest", "holder_pubkey": "ab".repeat(32), "member_label": aim.member, "custody": "custodial"});
    let path = format!("/v1/invites/{}/redeem", aim.invite);
    post(replica, &aim, &admin, &path, redeem, 201).await;
    let path = format!("/v1/members/{}/grants", aim.member);
    let agent = json!({"aud": format!("did:example:{marker}-agent")});
    let agent = post(replica, &aim, &admin, &path, agent, 201).await;
    aim.agent_grant = agent["grant_id"].as_str().unwrap().to_string();
    (aim, admin, reader)
}

/// The outbound bearer of `pair_id` that `label` holds (issued by its peer).
async fn outbound_token(replica: &Replica, label: &str, pair_id: &str) -> String {
    let tenant = replica.platform().tenant(label).await.unwrap().unwrap();
    fstate::open_secret(
        replica.state.store.as_ref(),
        &tenant.id,
        &tenant.identity.key,
        &outbound_secret_handle(pair_id),
    )
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("{label} holds no outbound token of {pair_id}"))
}

/// The cross-tenant requests and what they found.
struct Sweep<'a> {
    aims: &'a [Aim],
    credentials: &'a [Credential],
    markers: &'a [String],
    rng: Rng,
    failures: Vec<String>,
    /// How many answers of each kind each door gave.
    tally: BTreeMap<String, usize>,
    requests: usize,
}

impl Sweep<'_> {
    /// Every credential at every other tenant, on every route, through `replica`. Each
    /// credential sends from an address of its own, so that the ten-a-minute limit on pair
    /// requests per address is never what refuses them; it presents itself as a bearer or as an
    /// `x-api-key`, at random.
    async fn through(&mut self, replica: &Replica, config: &Config) {
        let way = if config.path_prefix.is_some() {
            "by path"
        } else {
            "by host"
        };
        for (c, credential) in self.credentials.iter().enumerate() {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, c as u8 + 1));
            let http = reqwest::Client::builder()
                .local_address(from)
                .build()
                .unwrap();
            for (j, target) in self.aims.iter().enumerate() {
                if j == credential.owner {
                    continue;
                }
                let requester = &self.aims[credential.owner];
                for route in routes(target, requester, &mut self.rng) {
                    let request = self.rng.pick(&route.requests).clone();
                    let builder = tenant_request(
                        &http,
                        &replica.url,
                        config,
                        &target.label,
                        route.method.clone(),
                        &request.path,
                    );
                    let (mut builder, presented) = if self.rng.below(2) == 0 {
                        (builder.bearer_auth(&credential.token), "bearer")
                    } else {
                        (builder.header("x-api-key", &credential.token), "x-api-key")
                    };
                    if let Some(body) = &request.body {
                        builder = builder.json(body);
                    }
                    self.requests += 1;
                    let what = format!(
                        "{} ({presented}) at {} {way}: {} {} {}",
                        credential.what,
                        target.label,
                        route.method,
                        request.path,
                        request
                            .body
                            .as_ref()
                            .map(Value::to_string)
                            .unwrap_or_default()
                    );
                    let answer = match exchange(builder, ANSWER_WITHIN).await {
                        Ok(answer) => answer,
                        Err(e) => {
                            self.failures.push(format!("{what}\n    -> {e}"));
                            continue;
                        }
                    };
                    let code = answer.json["code"].as_str().unwrap_or_default();
                    *self
                        .tally
                        .entry(format!("{:?}: {} {code}", route.door, answer.status))
                        .or_default() += 1;
                    let leaks = leaked(&answer, self.markers, credential.owner, &what);
                    let verdict = judge(route.door, &answer);
                    if !leaks.is_empty() || verdict.is_err() {
                        self.failures.push(format!(
                            "{what}\n    -> {} {}{}{}",
                            answer.status,
                            answer.text.chars().take(600).collect::<String>(),
                            verdict
                                .err()
                                .map(|e| format!("\n    ({e})"))
                                .unwrap_or_default(),
                            if leaks.is_empty() {
                                String::new()
                            } else {
                                format!("\n    LEAKS {leaks:?}")
                            }
                        ));
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn no_credential_of_one_tenant_reaches_another_on_any_route() {
    let seed = std::env::var("SWEEP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s != 0) // xorshift stays at 0
        .unwrap_or(SEED);
    eprintln!("isolation sweep: seed {seed} (set SWEEP_SEED to replay)");
    with_test_database(move |url| async move {
        let started = std::time::Instant::now();
        let config = Config {
            path_prefix: Some("/t".into()),
            reachable_urls: true,
            federation: syncropel_testkit::quick_federation(),
            tenant_limit: 10,
            ..Config::default()
        };
        let replica = Replica::start(&url, config.clone()).await;
        let mut aims = Vec::new();
        let mut admins = Vec::new();
        let mut credentials = Vec::new();
        for (owner, label) in LABELS.iter().enumerate() {
            let (aim, admin, reader) = populate(&replica, label).await;
            admins.push(admin.clone());
            credentials.push(Credential {
                owner,
                what: format!("{label}'s admin token"),
                token: admin,
            });
            credentials.push(Credential {
                owner,
                what: format!("{label}'s records:read token"),
                token: reader,
            });
            aims.push(aim);
        }
        let admin = |k: usize| admins[k].clone();

        // A asks B to pair and B leaves it pending; C pairs with D for real.
        let start = |from: usize, to: usize| {
            let (aims, replica) = (&aims, &replica);
            let admin = admin(from);
            async move {
                let body = json!({"peer_url": aims[to].url});
                post(
                    replica,
                    &aims[from],
                    &admin,
                    "/v1/federation/pairs",
                    body,
                    202,
                )
                .await["pair_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        let ab = start(0, 1).await;
        let (_, pending) = replica
            .tenant_get("sweep-b", &admin(1), "/v1/federation/pending")
            .await;
        assert_eq!(pending["data"][0]["pair_id"], ab, "{pending}");
        let cd = start(2, 3).await;
        let path = format!("/v1/federation/pending/{cd}/approve");
        post(&replica, &aims[3], &admin(3), &path, json!({}), 200).await;
        let path = format!("/v1/federation/pairs/{cd}/poll");
        let paired = post(&replica, &aims[2], &admin(2), &path, json!({}), 200).await;
        assert_eq!(paired["state"], "active", "{paired}");
        for (k, pair, peer) in [(0, &ab, 1), (1, &ab, 0), (2, &cd, 3), (3, &cd, 2)] {
            aims[k].pair = pair.clone();
            aims[k].peer_did = aims[peer].did.clone();
        }
        // Each side of C-D holds a pair token its peer issued: a credential of the peer.
        for (holder, owner) in [(2, 3), (3, 2)] {
            credentials.push(Credential {
                owner,
                what: format!(
                    "{}'s pair token (held by {})",
                    LABELS[owner], LABELS[holder]
                ),
                token: outbound_token(&replica, LABELS[holder], &cd).await,
            });
        }
        let markers: Vec<String> = aims.iter().map(|a| a.marker.clone()).collect();
        let mut tenant_ids = Vec::new();
        for label in LABELS {
            tenant_ids.push(
                replica
                    .platform()
                    .tenant(label)
                    .await
                    .unwrap()
                    .unwrap()
                    .id
                    .clone(),
            );
        }
        let mut before = Vec::new();
        for (k, aim) in aims.iter().enumerate() {
            let view = own_view(&replica, aim, &admin(k)).await;
            assert!(view.1.to_string().contains(&aim.marker), "{}", view.1);
            before.push((view, fingerprint(&replica, &tenant_ids[k]).await));
        }
        let setup = started.elapsed();

        // The sweep, through the replica that addresses tenants by path and through one that
        // addresses them by host (on the same database).
        let by_host_config = Config {
            federation: syncropel_testkit::quick_federation(),
            tenant_limit: 10,
            ..Config::default()
        };
        let by_host = Replica::start(&url, by_host_config.clone()).await;
        let route_count = routes(&aims[0], &aims[1], &mut Rng(seed)).len();
        let mut sweep = Sweep {
            aims: &aims,
            credentials: &credentials,
            markers: &markers,
            rng: Rng(seed),
            failures: Vec::new(),
            tally: BTreeMap::new(),
            requests: 0,
        };
        sweep.through(&replica, &config).await;
        sweep.through(&by_host, &by_host_config).await;
        let Sweep {
            mut rng,
            mut failures,
            tally,
            requests,
            ..
        } = sweep;
        let swept = started.elapsed() - setup;

        // Nothing changed anywhere: as each tenant's own token reads it, and as stored.
        for (k, aim) in aims.iter().enumerate() {
            let view = own_view(&replica, aim, &admin(k)).await;
            if view != before[k].0 {
                failures.push(format!(
                    "{}: what its token reads changed: {:?} -> {:?}",
                    aim.label, before[k].0, view
                ));
            }
            let after = fingerprint(&replica, &tenant_ids[k]).await;
            for ((table, was), (_, is)) in before[k].1.iter().zip(&after) {
                if was != is {
                    failures.push(format!("{}: {table} changed: {was} -> {is}", aim.label));
                }
            }
        }
        for credential in &credentials[..2 * LABELS.len()] {
            let (status, answer) = replica
                .tenant_get(
                    LABELS[credential.owner],
                    &credential.token,
                    &format!("/v1/threads/{THREAD}/records"),
                )
                .await;
            if status != 200 || !answer.to_string().contains(&markers[credential.owner]) {
                failures.push(format!(
                    "{} stopped working: {status} {answer}",
                    credential.what
                ));
            }
        }

        // The control: each tenant's own admin token on the routes that only read answers, sees
        // its own objects where the sweep aimed, and nothing of any other tenant.
        let mut own = Vec::new();
        for (k, aim) in aims.iter().enumerate() {
            for route in routes(aim, aim, &mut rng)
                .into_iter()
                .filter(|r| r.read_only)
            {
                for request in route.requests.iter().filter(|r| !r.stream) {
                    let mut builder = replica
                        .tenant_request(&aim.label, route.method.clone(), &request.path)
                        .bearer_auth(admin(k));
                    if let Some(body) = &request.body {
                        builder = builder.json(body);
                    }
                    let what = format!(
                        "{}'s own token: {} {}",
                        aim.label, route.method, request.path
                    );
                    match exchange(builder, OWN_READ_FOR).await {
                        Ok(answer) => {
                            let leaks = leaked(&answer, &markers, k, "");
                            if answer.status >= 500 || !leaks.is_empty() {
                                failures.push(format!(
                                    "{what}\n    -> {} {} {leaks:?}",
                                    answer.status, answer.text
                                ));
                            }
                            own.push((k, route.method.clone(), request.path.clone(), answer));
                        }
                        Err(e) => failures.push(format!("{what}\n    -> {e}")),
                    }
                }
            }
        }
        for (k, aim) in aims.iter().enumerate() {
            let reads = |path: &str| {
                own.iter()
                    .filter(|(o, m, p, _)| *o == k && *m == Method::GET && p == path)
                    .map(|(_, _, _, a)| a)
                    .collect::<Vec<_>>()
            };
            // Where the sweep aimed, the owner finds its marker.
            let mut aimed = vec![
                vec![format!("/v1/threads/{THREAD}/records")],
                vec!["/v1/service-accounts".to_string()],
                vec![format!("/v1/sync/pairs/{}", aim.sync_pair)],
                vec!["/v1/consent/grants".to_string()],
                vec!["/v1/sync/quarantine".to_string()],
            ];
            aimed.push(
                aim.records
                    .iter()
                    .map(|id| format!("/v1/records/{id}"))
                    .collect(),
            );
            aimed.push(
                aim.namespaces
                    .iter()
                    .map(|ns| format!("/v1/namespaces/{ns}"))
                    .collect(),
            );
            for paths in aimed {
                let answers: Vec<_> = paths.iter().flat_map(|p| reads(p)).collect();
                if answers.is_empty() {
                    failures.push(format!("{}: no control read of {paths:?}", aim.label));
                }
                for answer in answers {
                    if answer.status != 200 || !answer.text.contains(&aim.marker) {
                        failures.push(format!(
                            "{}: its own token does not find its marker at {paths:?}: {} {}",
                            aim.label, answer.status, answer.text
                        ));
                    }
                }
            }
            // B holds A's request as pending; the others list their pair.
            let listing = if k == 1 {
                "/v1/federation/pending"
            } else {
                "/v1/federation/pairs"
            };
            let listed = reads(listing);
            if listed.len() != 1 || !listed[0].text.contains(&aim.pair) {
                failures.push(format!("{}: {listing} does not list its pair", aim.label));
            }
        }
        let elapsed = started.elapsed();
        eprintln!(
            "isolation sweep: {route_count} routes, {} credentials, {requests} cross-tenant \
             requests and {} own reads; setup {setup:?}, sweep {swept:?}, total {elapsed:?}",
            credentials.len(),
            own.len()
        );
        for (answer, n) in &tally {
            eprintln!("    {n:5} x {answer}");
        }
        assert!(
            failures.is_empty(),
            "{} of {requests} requests or checks failed (seed {seed}):\n{}",
            failures.len(),
            failures.join("\n")
        );
        by_host.stop().await;
        replica.stop().await;
    })
    .await;
}
