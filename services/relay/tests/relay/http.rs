//! The relay over HTTP on 127.0.0.1, on a Postgres database of its own: a source deposits, its
//! destination pulls by relay cursor and acks; every other party is refused, and nothing changes.

use std::sync::Arc;

use serde_json::{json, Value};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_protocol::didsig::{self, Signed};
use syncropel_protocol::relay::{self as envelope, Queue};
use syncropel_protocol::Keypair;
use syncropel_relay::auth::Authenticator;
use syncropel_relay::limits::{CallLimits, Limiters};
use syncropel_relay::routes::{app, AppState};
use syncropel_relay::store::{Limits, RelayStore};
use syncropel_store::testing::with_test_database;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Relay {
    origin: String,
    http: reqwest::Client,
    stopping: tokio_util::sync::CancellationToken,
}

/// A steward identity calling the relay.
struct Party {
    key: Keypair,
}

impl Party {
    fn new() -> Party {
        Party {
            key: Keypair::generate(),
        }
    }

    fn did(&self) -> String {
        self.key.did_key()
    }

    /// Sends a signed call; its status and JSON answer.
    async fn call(
        &self,
        relay: &Relay,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let host = relay.origin.trim_start_matches("http://");
        let signed = Signed {
            method,
            target: &format!("{host}{path}"),
            body: &bytes,
        };
        let did = self.did();
        let header = didsig::sign(
            &self.key,
            &did,
            &format!("{did}#key-1"),
            signed,
            now_ms(),
            &didsig::nonce(),
        );
        let request = relay
            .http
            .request(method.parse().unwrap(), format!("{}{path}", relay.origin))
            .header("authorization", header)
            .body(bytes);
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn start(url: &str) -> Relay {
    start_with(url, CallLimits::default()).await
}

async fn start_with(url: &str, limits: CallLimits) -> Relay {
    let store = RelayStore::open(url, Limits::default()).await.unwrap();
    let resolver = DidResolver::new(PeerClient::new(PeerClientOptions::default()), Vec::new());
    let stopping = tokio_util::sync::CancellationToken::new();
    let state = AppState {
        store: Arc::new(store),
        auth: Arc::new(Authenticator::new(resolver, Default::default())),
        cursor_key: "a relay-wide secret".into(),
        clock: now_ms,
        limits: Arc::new(Limiters::new(limits)),
        stopping: stopping.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    Relay {
        origin,
        http: reqwest::Client::new(),
        stopping,
    }
}

fn queue_of(source: &Party, dest: &Party) -> Queue {
    Queue {
        source_did: source.did(),
        dest_did: dest.did(),
        pair_id: "fed_1".into(),
        generation: 1,
        thread: "th_inbox".into(),
        target_namespace: "default".into(),
    }
}

fn envelope_of(source: &Party, queue: &Queue, first: i64, n: i64) -> Value {
    let items = (first..first + n)
        .map(|s| json!({"id": format!("r{s}"), "record": {"n": s}}))
        .collect();
    let key_id = format!("{}#key-1", source.did());
    envelope::sign(
        &source.key,
        &key_id,
        queue,
        "ep1",
        (first, first + n - 1),
        items,
        &Default::default(),
    )
}

fn code(answer: &Value) -> &str {
    answer["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_source_deposits_and_its_destination_pulls_and_acks() {
    with_test_database(|url| async move {
        let relay = start(&url).await;
        let (source, dest) = (Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let id = queue.id();
        let base = format!("/v1/relay/queues/{id}");

        let first = envelope_of(&source, &queue, 1, 2);
        let (status, deposited) = source
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&first))
            .await;
        assert_eq!(status, 201, "{deposited}");
        let (status, again) = source
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&first))
            .await;
        assert_eq!(
            (status, &again["duplicate"]),
            (200, &json!(true)),
            "{again}"
        );
        let second = envelope_of(&source, &queue, 3, 1);
        let (status, _) = source
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&second))
            .await;
        assert_eq!(status, 201);

        let (status, page) = dest
            .call(&relay, "GET", &format!("{base}/changes?limit=2"), None)
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["envelopes"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(
            page["envelopes"][0]["envelope"], first,
            "the envelope as deposited"
        );
        assert_eq!(page["has_more"], true);
        let cursor = page["next_cursor"].as_str().unwrap().to_string();
        let (status, rest) = dest
            .call(
                &relay,
                "GET",
                &format!("{base}/changes?since={cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{rest}");
        assert_eq!(rest["envelopes"][0]["envelope"], second);
        assert_eq!(rest["has_more"], false);

        let through = json!({"through": rest["next_cursor"]});
        let (status, acked) = dest
            .call(&relay, "POST", &format!("{base}/ack"), Some(&through))
            .await;
        assert_eq!(status, 200, "{acked}");
        assert_eq!(
            (&acked["deleted_envelopes"], &acked["deleted_items"]),
            (&json!(2), &json!(3))
        );
        let (status, standing) = source.call(&relay, "GET", &base, None).await;
        assert_eq!(status, 200, "{standing}");
        assert_eq!(
            (&standing["envelopes"], &standing["items"]),
            (&json!(0), &json!(0))
        );

        // What happened is counted, by outcome.
        let metrics = syncropel_telemetry::metrics::render();
        for series in [
            r#"relay_deposits_total{result="created"}"#,
            r#"relay_deposits_total{result="duplicate"}"#,
            "relay_pulls_total",
            r#"relay_acks_total{by="destination"}"#,
        ] {
            assert!(metrics.contains(series), "{series} in\n{metrics}");
        }
    })
    .await;
}

#[tokio::test]
async fn only_each_party_does_its_part_and_strangers_nothing() {
    with_test_database(|url| async move {
        let relay = start(&url).await;
        let (source, dest, stranger) = (Party::new(), Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let id = queue.id();
        let base = format!("/v1/relay/queues/{id}");
        let envelope = envelope_of(&source, &queue, 1, 1);
        let (status, _) = source
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&envelope))
            .await;
        assert_eq!(status, 201);

        // The destination's own envelope naming the queue: not the source.
        let forged = envelope_of(&dest, &queue, 2, 1);
        let (status, refused) = dest
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&forged))
            .await;
        assert_eq!(
            (status, code(&refused)),
            (403, "RELAY_FORBIDDEN"),
            "{refused}"
        );
        // The source's envelope, sent by someone else: its signature is not the caller's.
        let (status, refused) = stranger
            .call(&relay, "POST", &format!("{base}/deposit"), Some(&envelope))
            .await;
        assert_eq!(
            (status, code(&refused)),
            (422, "SIGNATURE_INVALID"),
            "{refused}"
        );
        for party in [&source, &stranger] {
            let (status, refused) = party
                .call(&relay, "GET", &format!("{base}/changes"), None)
                .await;
            assert_eq!(
                (status, code(&refused)),
                (403, "RELAY_FORBIDDEN"),
                "{refused}"
            );
        }
        let (status, refused) = stranger.call(&relay, "GET", &base, None).await;
        assert_eq!((status, code(&refused)), (403, "RELAY_FORBIDDEN"));
        let (status, refused) = stranger.call(&relay, "DELETE", &base, None).await;
        assert_eq!((status, code(&refused)), (403, "RELAY_FORBIDDEN"));
        let bad = json!({"through": "not-a-cursor"});
        let (status, refused) = dest
            .call(&relay, "POST", &format!("{base}/ack"), Some(&bad))
            .await;
        assert_eq!(
            (status, code(&refused)),
            (400, "INVALID_CURSOR"),
            "{refused}"
        );
        // No signature at all.
        let unsigned = relay
            .http
            .get(format!("{}{base}", relay.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 401);

        let (status, standing) = dest.call(&relay, "GET", &base, None).await;
        assert_eq!(status, 200);
        assert_eq!(
            (&standing["envelopes"], &standing["items"]),
            (&json!(1), &json!(1)),
            "nothing changed"
        );
    })
    .await;
}

/// A pull that finds nothing waits for a deposit, made through another replica of the relay.
#[tokio::test]
async fn a_waiting_pull_is_woken_by_a_deposit_through_another_replica() {
    with_test_database(|url| async move {
        let (a, b) = (start(&url).await, start(&url).await);
        let (source, dest) = (Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let base = format!("/v1/relay/queues/{}", queue.id());
        let (status, _) = dest
            .call(&b, "PUT", &base, Some(&json!({"queue": queue})))
            .await;
        assert_eq!(status, 200);
        let envelope = envelope_of(&source, &queue, 1, 1);
        let waiting = async {
            dest.call(&b, "GET", &format!("{base}/changes?wait=20"), None)
                .await
        };
        let depositing = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            source
                .call(&a, "POST", &format!("{base}/deposit"), Some(&envelope))
                .await
        };
        let ((status, page), (deposited, _)) = tokio::join!(waiting, depositing);
        assert_eq!((status, deposited), (200, 201), "{page}");
        // Woken, not timed out: the page holds the deposit.
        assert_eq!(page["envelopes"][0]["envelope"], envelope, "{page}");
    })
    .await;
}

/// A party lists its queues by role, and no one else's.
#[tokio::test]
async fn a_party_lists_its_own_queues_by_role() {
    with_test_database(|url| async move {
        let relay = start(&url).await;
        let (source, dest, other) = (Party::new(), Party::new(), Party::new());
        for party in [&dest, &other] {
            let queue = queue_of(&source, party);
            let path = format!("/v1/relay/queues/{}", queue.id());
            let (status, _) = party
                .call(&relay, "PUT", &path, Some(&json!({"queue": queue})))
                .await;
            assert_eq!(status, 200);
        }
        let (status, mine) = source
            .call(&relay, "GET", "/v1/relay/queues?role=source", None)
            .await;
        assert_eq!(status, 200, "{mine}");
        assert_eq!(mine["object"], "list");
        assert_eq!(mine["data"].as_array().unwrap().len(), 2);
        let (_, theirs) = dest
            .call(&relay, "GET", "/v1/relay/queues?role=destination", None)
            .await;
        assert_eq!(theirs["data"].as_array().unwrap().len(), 1, "{theirs}");
        assert_eq!(theirs["data"][0]["queue"]["dest_did"], dest.did());
        let (_, none) = dest
            .call(&relay, "GET", "/v1/relay/queues?role=source", None)
            .await;
        assert_eq!(none["data"], json!([]));
        let (status, refused) = dest
            .call(&relay, "GET", "/v1/relay/queues?role=owner", None)
            .await;
        assert_eq!(
            (status, code(&refused)),
            (400, "VALIDATION_ERROR"),
            "{refused}"
        );
    })
    .await;
}

/// One DID's calls count against its own share, and it holds a bounded number of pulls open.
#[tokio::test]
async fn a_did_is_held_to_its_rate_and_its_open_pulls() {
    with_test_database(|url| async move {
        let limits = CallLimits {
            per_did: 5,
            waits_per_did: 1,
            ..CallLimits::default()
        };
        let relay = start_with(&url, limits).await;
        let (source, dest) = (Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let base = format!("/v1/relay/queues/{}", queue.id());
        let (status, _) = dest
            .call(&relay, "PUT", &base, Some(&json!({"queue": queue})))
            .await;
        assert_eq!(status, 200);

        // One pull waits; a second one of the same DID is refused meanwhile.
        let pull = format!("{base}/changes?wait=2");
        let waiting = dest.call(&relay, "GET", &pull, None);
        let second = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            dest.call(&relay, "GET", &pull, None).await
        };
        let ((first, _), (refused, answer)) = tokio::join!(waiting, second);
        assert_eq!((first, refused), (200, 429), "{answer}");
        assert_eq!(code(&answer), "RATE_LIMITED");

        // Past its burst the DID is refused; another DID is not.
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(source.call(&relay, "GET", &base, None).await.0);
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        let (status, _) = Party::new().call(&relay, "GET", &base, None).await;
        assert_eq!(
            status, 403,
            "a stranger has its own share (and no part in the queue)"
        );
    })
    .await;
}

/// The source trims what its destination confirmed by pulling it directly: by its own sequence,
/// within one epoch of its store.
#[tokio::test]
async fn the_source_trims_by_its_own_sequence_and_epoch() {
    with_test_database(|url| async move {
        let relay = start(&url).await;
        let (source, dest) = (Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let base = format!("/v1/relay/queues/{}", queue.id());
        for (first, n) in [(1, 2), (3, 1)] {
            let envelope = envelope_of(&source, &queue, first, n);
            let (status, _) = source
                .call(&relay, "POST", &format!("{base}/deposit"), Some(&envelope))
                .await;
            assert_eq!(status, 201);
        }
        let trim = |epoch: &str, sseq: i64| json!({"source_epoch": epoch, "through_sseq": sseq});
        let (status, refused) = dest
            .call(
                &relay,
                "POST",
                &format!("{base}/ack"),
                Some(&trim("ep1", 9)),
            )
            .await;
        assert_eq!(
            (status, code(&refused)),
            (403, "RELAY_FORBIDDEN"),
            "{refused}"
        );
        let (_, other) = source
            .call(
                &relay,
                "POST",
                &format!("{base}/ack"),
                Some(&trim("ep0", 9)),
            )
            .await;
        assert_eq!(
            other["deleted_envelopes"], 0,
            "another life of the store: {other}"
        );
        let (status, trimmed) = source
            .call(
                &relay,
                "POST",
                &format!("{base}/ack"),
                Some(&trim("ep1", 2)),
            )
            .await;
        assert_eq!(status, 200, "{trimmed}");
        assert_eq!(
            (&trimmed["deleted_envelopes"], &trimmed["deleted_items"]),
            (&json!(1), &json!(2))
        );
        let (_, standing) = dest.call(&relay, "GET", &base, None).await;
        assert_eq!(standing["items"], 1);
    })
    .await;
}

#[tokio::test]
async fn a_stopping_relay_is_not_ready_and_answers_held_pulls_at_once() {
    with_test_database(|url| async move {
        let relay = start(&url).await;
        let (source, dest) = (Party::new(), Party::new());
        let queue = queue_of(&source, &dest);
        let id = queue.id();
        let ready = reqwest::get(format!("{}/ready", relay.origin))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let (status, _) = dest
            .call(
                &relay,
                "PUT",
                &format!("/v1/relay/queues/{id}"),
                Some(&json!({"queue": queue})),
            )
            .await;
        assert_eq!(status, 200);
        let started = std::time::Instant::now();
        let held = {
            let path = format!("/v1/relay/queues/{id}/changes?wait=25");
            let (dest, relay) = (&dest, &relay);
            async move { dest.call(relay, "GET", &path, None).await }
        };
        let stop = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            relay.stopping.cancel();
        };
        let ((status, page), ()) = tokio::join!(held, stop);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["envelopes"], json!([]));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the pull was held on"
        );
        let ready = reqwest::get(format!("{}/ready", relay.origin))
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
    })
    .await;
}
