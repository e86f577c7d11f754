//! Typed actors (section 1.4): a record by `did:sync:user:…` or any DID without keys of its own
//! is admitted only when its serving peer's signed actor-keys answer lists its signer; answers
//! are cached per (peer, actor), and a steward vouches in turn for what its peers vouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use syncropel_federation::state::QUARANTINE;
use syncropel_protocol::signed::{sign_object, verify_object};
use syncropel_protocol::Keypair;
use syncropel_testkit::{error_code, eventually, Node, Options, TENANT};

use super::{config, legacy_pair, paired, serve_fake, signed_item, DEADLINE};

const THREAD: &str = "th_typed_actors";
/// Vouched for by the fake peer with its own key.
const VOUCHED: &str = "did:sync:user:vouched";
/// The fake peer answers for it with an empty list.
const DISOWNED: &str = "did:sync:user:disowned";
/// The answer about it is signed by a key that is not the peer's.
const MISSIGNED: &str = "did:example:missigned";

/// A peer serving records of typed actors, and counting the actor-keys questions it gets.
struct Fake {
    key: Keypair,
    /// Signs the answers about [`MISSIGNED`].
    stranger: Keypair,
    asked: Mutex<HashMap<String, usize>>,
}

impl Fake {
    fn page(&self, since: &str) -> Vec<Value> {
        let item = |actor: &str, clock: i64, key: &Keypair| {
            signed_item(key, THREAD, actor, clock, json!({"c": clock}))
        };
        match since {
            "" => vec![
                item(VOUCHED, 1, &self.key),
                item(DISOWNED, 1, &self.key),
                item(MISSIGNED, 1, &self.key),
                // Signed, but by a key the peer does not vouch for.
                item(VOUCHED, 2, &self.stranger),
            ],
            _ => vec![item(VOUCHED, 3, &self.key)],
        }
    }

    fn asked(&self, actor: &str) -> usize {
        self.asked.lock().unwrap().get(actor).copied().unwrap_or(0)
    }
}

async fn changes(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let since = query.get("since").cloned().unwrap_or_default();
    let (records, next) = match since.as_str() {
        "" => (fake.page(""), super::cursor_at(4)),
        s if *s == super::cursor_at(4) => (fake.page(s), super::cursor_at(5)),
        s => (Vec::new(), s.to_string()),
    };
    let page = json!({"object": "sync_changes", "thread": THREAD, "records": records,
                      "next_cursor": next, "has_more": false});
    axum::Json(page).into_response()
}

async fn actor_keys(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let did = query.get("did").cloned().unwrap_or_default();
    *fake.asked.lock().unwrap().entry(did.clone()).or_default() += 1;
    let (keys, signer) = match did.as_str() {
        VOUCHED => (vec![fake.key.did_key()], &fake.key),
        DISOWNED => (Vec::new(), &fake.key),
        _ => (vec![fake.key.did_key()], &fake.stranger),
    };
    let mut answer = Map::new();
    answer.insert("object".into(), json!("actor_keys"));
    answer.insert("did".into(), json!(did));
    answer.insert("steward".into(), json!(fake.key.did_key()));
    answer.insert("keys".into(), json!(keys));
    answer.insert("expires_at".into(), json!("2999-01-01T00:00:00Z"));
    sign_object(&mut answer, signer);
    axum::Json(Value::Object(answer)).into_response()
}

/// The quarantine codes of `node`'s held records, by actor.
async fn quarantined(node: &Node) -> HashMap<String, Vec<String>> {
    let mut held: HashMap<String, Vec<String>> = HashMap::new();
    let entries = node
        .steward
        .state
        .store
        .state_list(TENANT, QUARANTINE)
        .await
        .unwrap();
    for (_, entry) in entries {
        let entry: Value = serde_json::from_str(&entry).unwrap();
        held.entry(entry["actor"].as_str().unwrap().to_string())
            .or_default()
            .push(entry["code"].as_str().unwrap().to_string());
    }
    held
}

#[tokio::test]
async fn a_typed_actor_is_admitted_only_with_a_signer_its_serving_peer_vouches_for() {
    let fake = Arc::new(Fake {
        key: Keypair::generate(),
        stranger: Keypair::generate(),
        asked: Mutex::default(),
    });
    let url = serve_fake(
        axum::Router::new()
            .route("/v1/sync/changes", axum::routing::get(changes))
            .route("/v1/federation/actor-keys", axum::routing::get(actor_keys))
            .with_state(fake.clone()),
    )
    .await;
    let a = Node::start(Options {
        federation: config(),
        ..Options::default()
    })
    .await;
    legacy_pair(&a, &fake.key.did_key(), &url, THREAD, "x").await;

    // Both pages in: the vouched records stored, the others held as SIGNER_UNRESOLVED.
    let stored = eventually("both vouched records stored", DEADLINE, || async {
        let records = a.records(THREAD).await;
        (records.len() == 2).then_some(records)
    })
    .await;
    let clocks: Vec<(&str, i64)> = stored
        .iter()
        .map(|r| (r["actor"].as_str().unwrap(), r["clock"].as_i64().unwrap()))
        .collect();
    assert!(
        clocks.contains(&(VOUCHED, 1)) && clocks.contains(&(VOUCHED, 3)),
        "{clocks:?}"
    );
    for record in &stored {
        assert_eq!(record["signer"], fake.key.did_key());
    }
    let held = quarantined(&a).await;
    let unresolved = || vec!["SIGNER_UNRESOLVED".to_string()];
    assert_eq!(held.get(DISOWNED), Some(&unresolved()), "{held:?}");
    assert_eq!(held.get(MISSIGNED), Some(&unresolved()), "{held:?}");
    assert_eq!(
        held.get(VOUCHED),
        Some(&unresolved()),
        "the stranger's: {held:?}"
    );

    // The second page's record of the same actor was admitted from the cache.
    assert_eq!(fake.asked(VOUCHED), 1);
}

#[tokio::test]
async fn a_steward_answers_for_its_typed_actors_and_vouches_for_its_peers() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_typed_vouch";
    a.pull(thread, &b.did()).await;
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;

    // A's answer, asked with B's pair bearer: A's own key, then B's, vouched for by B.
    let bearer = b.outbound_token(&pair_id).await.unwrap();
    let path = "/v1/federation/actor-keys?did=did:sync:user:bob";
    let (status, answer) = a.get_as(&bearer, &b.did(), path).await;
    assert_eq!(status, 200, "{answer}");
    let signer = verify_object(answer.as_object().unwrap()).unwrap();
    assert_eq!(signer, a.steward.tenant.identity.signer.to_string());
    assert_eq!(answer["did"], "did:sync:user:bob");
    assert_eq!(answer["steward"], a.did());
    let b_key = b.steward.tenant.identity.signer.to_string();
    let keys: Vec<&str> = answer["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, [signer.as_str(), b_key.as_str()]);
    assert_eq!(answer["vouched"], json!([{"key": b_key, "by": b.did()}]));

    // Not a typed actor, no DID, no bearer.
    for (path, code) in [
        (
            format!("/v1/federation/actor-keys?did={}", b.did()),
            "VALIDATION_ERROR",
        ),
        ("/v1/federation/actor-keys".to_string(), "VALIDATION_ERROR"),
    ] {
        let (status, answer) = a.get_as(&bearer, &b.did(), &path).await;
        assert_eq!((status, error_code(&answer)), (400, code), "{answer}");
    }
    let (status, answer) = a.get_as("no-such-token", &b.did(), path).await;
    assert_eq!(status, 401, "{answer}");
}
