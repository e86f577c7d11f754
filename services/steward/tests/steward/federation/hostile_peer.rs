//! A hostile peer (section 5): every way a changes page can be wrong gets a classified error,
//! and nothing of a bad page is stored.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use syncropel_federation::state::QUARANTINE;
use syncropel_federation::{FederationConfig, PeerTimeouts};
use syncropel_protocol::{Envelope, Keypair};
use syncropel_store::StateChange;
use syncropel_testkit::{eventually, Node, Options, TENANT};

use super::{config, cursor_at, legacy, legacy_pair, ms, serve_fake, signed_item, DEADLINE};

/// A fake peer whose `GET /v1/sync/changes` misbehaves according to the thread asked for.
struct Fake {
    key: Keypair,
    /// The `since` of every request, per thread.
    seen: Mutex<HashMap<String, Vec<String>>>,
}

impl Fake {
    fn item(&self, thread: &str, clock: i64) -> Value {
        signed_item(
            &self.key,
            thread,
            &self.key.did_key(),
            clock,
            json!({"c": clock}),
        )
    }

    /// A record whose signature is by another key.
    fn forged(&self, thread: &str, clock: i64) -> Value {
        let mut item = self.item(thread, clock);
        let other = Keypair::generate();
        let record = item["record"].clone();
        let canonical = Envelope::from_value(record).unwrap().canonical_json();
        item["record"]["sig"] = json!(other.sign_hex(canonical.as_bytes()));
        item
    }

    /// An unsigned consent stub claiming the id `id` on an envelope at `clock`.
    fn stub(&self, thread: &str, clock: i64, id: &str) -> Value {
        let mut item = self.item(thread, clock);
        let record = item["record"].as_object_mut().unwrap();
        record.remove("sig");
        record.insert("body".into(), json!({"redacted": true}));
        item["id"] = json!(id);
        item["redacted"] = json!(true);
        item
    }

    fn id(&self, thread: &str, clock: i64) -> String {
        self.item(thread, clock)["id"].as_str().unwrap().to_string()
    }

    fn seen(&self, thread: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .get(thread)
            .cloned()
            .unwrap_or_default()
    }
}

fn page(thread: &str, records: Vec<Value>, next: &str) -> Response {
    json_response(
        200,
        json!({"object": "sync_changes", "thread": thread, "records": records,
               "next_cursor": next, "has_more": false})
        .to_string(),
    )
}

fn json_response(status: u16, body: impl Into<axum::body::Body>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn fake_changes(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let thread = query.get("thread").cloned().unwrap_or_default();
    let since = query.get("since").cloned().unwrap_or_default();
    fake.seen
        .lock()
        .unwrap()
        .entry(thread.clone())
        .or_default()
        .push(since.clone());
    let t = thread.as_str();
    // The endless threads: page n holds clocks 10n..10n+9, and there is always more.
    let n = fake.seen(t).len() as i64 - 1;
    let endless = |records: Vec<Value>| {
        json_response(
            200,
            json!({"object": "sync_changes", "thread": t, "records": records,
                   "next_cursor": cursor_at(10 * (n + 1)), "has_more": true})
            .to_string(),
        )
    };
    match t {
        "th_flood" => endless(
            (10 * n..10 * n + 10)
                .map(|clock| {
                    let body = json!({"c": clock, "pad": "x".repeat(2048)});
                    signed_item(&fake.key, t, &fake.key.did_key(), clock, body)
                })
                .collect(),
        ),
        // Stubs that claim the id of the record at clock 1 (on another envelope) and the slot of
        // the one at clock 2; the real records follow.
        "th_squat" if since.is_empty() => page(
            t,
            vec![
                fake.stub(t, 9, &fake.id(t, 1)),
                fake.stub(t, 2, &"5".repeat(64)),
            ],
            &cursor_at(2),
        ),
        "th_squat" if since == cursor_at(2) => {
            page(t, vec![fake.item(t, 1), fake.item(t, 2)], &cursor_at(4))
        }
        "th_squat" => page(t, Vec::new(), &since),
        "th_forgeries" => endless((10 * n..10 * n + 10).map(|c| fake.forged(t, c)).collect()),
        "th_bad_sig" if since.is_empty() => {
            let mut tampered = fake.item(t, 3);
            tampered["record"]["body"] = json!({"c": "changed"});
            let mut unsigned = fake.item(t, 4);
            unsigned["record"].as_object_mut().unwrap().remove("sig");
            let mut stranger = signed_item(&Keypair::generate(), t, "did:sync:user:x", 5, json!({}));
            stranger["record"]["signer"] = json!("did:web:example.com");
            page(
                t,
                vec![fake.item(t, 1), fake.forged(t, 2), tampered, unsigned, stranger],
                &cursor_at(2),
            )
        }
        // The second record takes the (thread, actor, clock) of one the puller holds.
        "th_clash" if since.is_empty() => page(
            t,
            vec![fake.item(t, 1), fake.item(t, 2)],
            &cursor_at(2),
        ),
        "th_clash" => page(t, Vec::new(), &since),
        "th_loop" => json_response(
            200,
            json!({"object": "sync_changes", "thread": t, "records": [], "next_cursor": since, "has_more": true})
                .to_string(),
        ),
        "th_bad_sig" => page(t, Vec::new(), &since),
        "th_other_thread" => page(
            t,
            vec![fake.item(t, 1), fake.item("th_elsewhere", 2)],
            &cursor_at(2),
        ),
        "th_malformed" => json_response(
            200,
            format!(r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}"#, fake.item(t, 1)),
        ),
        "th_not_a_page" => json_response(200, r#"{"hello": "world"}"#),
        "th_backwards" if since.is_empty() => page(t, vec![fake.item(t, 1)], &cursor_at(10)),
        "th_backwards" => page(t, vec![fake.item(t, 2)], &cursor_at(5)),
        "th_oversize" => {
            let padding = " ".repeat(9 * 1024 * 1024);
            json_response(
                200,
                format!(
                    r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}], "next_cursor": "{}", "has_more": false}}{padding}"#,
                    fake.item(t, 1),
                    cursor_at(1)
                ),
            )
        }
        "th_endless" => {
            let head = format!(
                r#"{{"object": "sync_changes", "thread": "{t}", "records": [{}], "pad": ""#,
                fake.item(t, 1)
            );
            let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
            let stream = futures_util::stream::once(async move { bytes::Bytes::from(head) })
                .chain(futures_util::stream::repeat(chunk))
                .map(Ok::<_, std::convert::Infallible>);
            json_response(200, axum::body::Body::from_stream(stream))
        }
        "th_slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            page(t, vec![fake.item(t, 1)], &cursor_at(1))
        }
        "th_server_error" => json_response(500, r#"{"object":"error","code":"INTERNAL","message":"boom","type":"api_error"}"#),
        "th_unauthorized" => json_response(401, r#"{"object":"error","code":"AUTH_INVALID","message":"who are you","type":"authentication_error"}"#),
        _ => page(t, Vec::new(), &since),
    }
    .into_response()
}

async fn start_fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        key: Keypair::generate(),
        seen: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/v1/sync/changes", axum::routing::get(fake_changes))
        .with_state(fake.clone());
    (serve_fake(app).await, fake)
}

#[tokio::test]
async fn a_hostile_peer_gets_classified_errors_and_stores_nothing_from_bad_pages() {
    let (url, fake) = start_fake().await;
    let a = Node::start(Options {
        federation: FederationConfig {
            peer_timeouts: PeerTimeouts {
                connect: Duration::from_secs(1),
                request: ms(1500),
                longpoll: ms(1500),
            },
            ..config()
        },
        ..Options::default()
    })
    .await;
    let did = fake.key.did_key();
    let cases = [
        ("th_other_thread", "PARSE_ERROR"),
        ("th_malformed", "PARSE_ERROR"),
        ("th_not_a_page", "PARSE_ERROR"),
        ("th_loop", "PARSE_ERROR"),
        ("th_backwards", "PARSE_ERROR"),
        ("th_oversize", "PARSE_ERROR"),
        ("th_endless", "PARSE_ERROR"),
        ("th_slow", "TIMEOUT"),
        ("th_server_error", "HTTP_5XX"),
        ("th_unauthorized", "HTTP_4XX"),
    ];
    let mut ids = HashMap::new();
    for (thread, _) in cases {
        ids.insert(thread, legacy_pair(&a, &did, &url, thread, "x").await);
    }
    let bad_sig = legacy_pair(&a, &did, &url, "th_bad_sig", "x").await;

    for (thread, code) in cases {
        let pair = eventually(
            &format!("{thread} failing with {code}"),
            DEADLINE,
            || async {
                let pair = legacy(&a, &ids[thread]).await;
                (pair["state"] == "failing" && pair["last_error"]["code"] == code).then_some(pair)
            },
        )
        .await;
        assert!(pair["retries"].as_u64().unwrap() >= 1, "{pair}");
        assert!(pair["last_error"]["message"].is_string(), "{pair}");
    }
    assert_eq!(
        legacy(&a, &ids["th_unauthorized"]).await["last_error"]["http_status"],
        401
    );

    // A bad signature is no protocol violation: the record is quarantined, its neighbour stored,
    // and the cursor moves past both.
    let pair = eventually("th_bad_sig past its page", DEADLINE, || async {
        let pair = legacy(&a, &bad_sig).await;
        (fake.seen("th_bad_sig").iter().any(|s| *s == cursor_at(2))).then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "running", "{pair}");
    assert!(pair["last_error"].is_null(), "{pair}");
    assert_eq!(
        a.ids("th_bad_sig").await,
        BTreeSet::from([fake.id("th_bad_sig", 1)])
    );
    let held = a.quarantine(Some(&bad_sig)).await;
    let stranger_id = held
        .iter()
        .find(|(_, code)| *code == "SIGNER_UNRESOLVED")
        .map(|(id, _)| id.clone());
    let mut expected = HashMap::from([
        (fake.id("th_bad_sig", 2), "SIGNATURE_INVALID".to_string()),
        (fake.id("th_bad_sig", 3), "ID_MISMATCH".to_string()),
        (fake.id("th_bad_sig", 4), "SIGNATURE_REQUIRED".to_string()),
    ]);
    expected.insert(
        stranger_id.expect("the unresolvable signer is held"),
        "SIGNER_UNRESOLVED".into(),
    );
    assert_eq!(held, expected);

    // A record whose (thread, actor, clock) is taken here is held back; the rest goes in.
    let taken = json!({"act": "KNOW", "actor": did, "thread": "th_clash", "clock": 2, "body": {"mine": true}});
    let local = a.write(&taken).await;
    let clash = legacy_pair(&a, &did, &url, "th_clash", "x").await;
    eventually("th_clash past its page", DEADLINE, || async {
        fake.seen("th_clash")
            .iter()
            .any(|s| *s == cursor_at(2))
            .then_some(())
    })
    .await;
    assert_eq!(
        a.ids("th_clash").await,
        BTreeSet::from([
            fake.id("th_clash", 1),
            local["id"].as_str().unwrap().to_string()
        ])
    );
    assert_eq!(
        a.quarantine(Some(&clash)).await,
        HashMap::from([(fake.id("th_clash", 2), "DUPLICATE_CLOCK".to_string())])
    );

    // Nothing from a bad page was stored, and the cursor stayed where it was.
    for (thread, _) in cases {
        let stored = a.ids(thread).await;
        if thread == "th_backwards" {
            // The first page was fine; the one going backwards is not stored.
            assert_eq!(stored, BTreeSet::from([fake.id(thread, 1)]), "{thread}");
            let seen = fake.seen(thread);
            assert!(seen.len() >= 3, "{seen:?}");
            assert!(seen[1..].iter().all(|s| *s == cursor_at(10)), "{seen:?}");
        } else {
            assert!(stored.is_empty(), "{thread}: {stored:?}");
            if thread != "th_slow" {
                let seen = fake.seen(thread);
                assert!(seen.len() >= 2, "{thread}: {seen:?}");
                assert!(seen.iter().all(String::is_empty), "{thread}: {seen:?}");
            }
        }
        assert!(
            a.quarantine(Some(&ids[thread])).await.is_empty(),
            "{thread}"
        );
    }
    assert!(a.ids("th_elsewhere").await.is_empty());
}

/// A peer that always has more cannot fill the store: past the tenant's ceiling its pull job
/// takes nothing more and says why.
#[tokio::test]
async fn a_peer_that_always_has_more_stops_at_the_store_ceiling() {
    const CEILING: u64 = 1 << 20;
    let (url, fake) = start_fake().await;
    let a = Node::start(Options {
        federation: FederationConfig {
            store_ceiling: CEILING,
            ..config()
        },
        ..Options::default()
    })
    .await;
    let store = a.steward.state.store.clone();
    assert!(
        store.stored_bytes(TENANT).await.unwrap() < CEILING / 2,
        "room for a few hundred records of 2 KiB"
    );
    let pair = legacy_pair(&a, &fake.key.did_key(), &url, "th_flood", "x").await;
    let stopped = eventually("the flood stopped at the ceiling", DEADLINE, || async {
        let pair = legacy(&a, &pair).await;
        (pair["last_error"]["code"] == "TENANT_LIMIT_REACHED").then_some(pair)
    })
    .await;
    assert!(
        stopped["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("bytes"),
        "{stopped}"
    );
    let held = a.ids("th_flood").await.len();
    assert!(held > 0, "records came in until the ceiling");
    assert!(store.stored_bytes(TENANT).await.unwrap() <= CEILING + 64 * 1024);
    // The peer keeps offering; nothing more is taken.
    let asked = fake.seen("th_flood").len();
    eventually("the job asks again", DEADLINE, || async {
        (fake.seen("th_flood").len() > asked).then_some(())
    })
    .await;
    assert_eq!(a.ids("th_flood").await.len(), held);
}

/// A peer sending bad records forever keeps at most the tenant's quarantine cap of them; the
/// oldest go.
#[tokio::test]
async fn a_peer_sending_bad_records_forever_fills_at_most_the_quarantine_cap() {
    const CAP: usize = 30;
    let (url, fake) = start_fake().await;
    let a = Node::start(Options {
        federation: FederationConfig {
            quarantine_cap: CAP,
            ..config()
        },
        ..Options::default()
    })
    .await;
    // Another source's record waiting for its signer, older than any forgery: it stays.
    let waiting = json!({"source": "fed_other", "id": "r_waiting", "thread": "th_x",
                         "actor": "did:web:example.com", "code": "SIGNER_UNRESOLVED", "at": 0});
    let put = StateChange::put(QUARANTINE, "fed_other\nr_waiting", waiting.to_string());
    a.steward
        .state
        .store
        .write(TENANT, Vec::new(), vec![put])
        .await
        .unwrap();
    let pair = legacy_pair(&a, &fake.key.did_key(), &url, "th_forgeries", "x").await;
    eventually("ten pages of forgeries", DEADLINE, || async {
        (fake.seen("th_forgeries").len() > 10).then_some(())
    })
    .await;
    let paused = a.client.pause_sync_pair(&pair).await.unwrap();
    assert_eq!(paused.status(), 200, "{}", paused.json());
    // A page's entries are written before the trim that follows them.
    let held = a.quarantine(Some(&pair)).await;
    assert!(!held.is_empty());
    assert!(held.len() <= CAP + 10, "{} held", held.len());
    assert!(
        held.values().all(|code| code == "SIGNATURE_INVALID"),
        "{held:?}"
    );
    let others = a.quarantine(Some("fed_other")).await;
    assert_eq!(
        others.len(),
        1,
        "another source's waiting record stays: {others:?}"
    );
}

/// A peer's unsigned stub never keeps the verified record out: stubs claiming a record's id (on
/// another envelope) or its (thread, actor, clock) go when the record comes, and it is stored.
#[tokio::test]
async fn stubs_that_claim_a_records_id_or_slot_give_way_to_the_record() {
    let (url, fake) = start_fake().await;
    let a = Node::start(Options {
        federation: config(),
        ..Options::default()
    })
    .await;
    let pair = legacy_pair(&a, &fake.key.did_key(), &url, "th_squat", "x").await;
    let real = BTreeSet::from([fake.id("th_squat", 1), fake.id("th_squat", 2)]);
    eventually("the real records stored", DEADLINE, || async {
        (a.ids("th_squat").await == real).then_some(())
    })
    .await;
    let held = a.quarantine(Some(&pair)).await;
    assert!(held.is_empty(), "{held:?}");
}
