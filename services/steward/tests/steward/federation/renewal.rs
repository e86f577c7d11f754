//! Pair token renewal (section 8): on demand, retried after a lost answer, and by each side on
//! its own from day 83 (initiator) or 85 (responder). Every steward's startup runs the renewal
//! loop; the tests here run it every 100 ms on a clock they move.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use syncropel_federation::{config, FederationConfig};
use syncropel_protocol::signed::sign_object;
use syncropel_protocol::{sha256_hex, Keypair};
use syncropel_testkit::{eventually, Node, Options};

use super::{assert_reciprocal, changes_as, config as quick, ms, now_ms, paired, DEADLINE};

#[tokio::test]
async fn renewing_pair_tokens_swaps_both_bearers_and_sync_goes_on() {
    let (a, b, pair_id) = paired().await;
    let thread = "th_fed_renew";
    a.pull(thread, &b.did()).await;
    let old_a = a.outbound_token(&pair_id).await.unwrap();
    let old_b = b.outbound_token(&pair_id).await.unwrap();

    let renewed = a.client.refresh_pair(&pair_id).await.unwrap();
    assert_eq!(renewed.status(), 200, "{}", renewed.json());
    let new_a = a.outbound_token(&pair_id).await.unwrap();
    let new_b = b.outbound_token(&pair_id).await.unwrap();
    assert_ne!(new_a, old_a);
    assert_ne!(new_b, old_b);
    assert_only_new_bearers(&a, &b, thread, [&old_a, &new_a], [&old_b, &new_b]).await;
    let ours = a.pair(&pair_id).await;
    let theirs = b.pair(&pair_id).await;
    assert_reciprocal(&ours, &theirs);
    assert_eq!(
        ours["tokens"]["outbound"]["token_id"],
        sha256_hex(new_a.as_bytes())
    );
    // Pending requests still list (the renewal's bookkeeping is no handshake).
    for node in [&a, &b] {
        let pending = node.client.pending_pairs().await.unwrap();
        assert_eq!(pending.status(), 200, "{}", pending.json());
    }
    let record = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let pair = eventually("active again", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "active").then_some(pair)
    })
    .await;
    assert_eq!(pair["state"], "active");
}

/// After a renewal, at each peer: the bearer held before (`[old, new]` of A's, then of B's) is
/// refused, and the new one reads the feed.
async fn assert_only_new_bearers(
    a: &Node,
    b: &Node,
    thread: &str,
    of_a: [&str; 2],
    of_b: [&str; 2],
) {
    let query = format!("thread={thread}&feed=normal");
    for (node, token, actor, expected) in [
        (b, of_a[0], a.did(), 401),
        (b, of_a[1], a.did(), 200),
        (a, of_b[0], b.did(), 401),
        (a, of_b[1], b.did(), 200),
    ] {
        let (status, body) = changes_as(node, token, &actor, &query).await;
        assert_eq!(status, expected, "{body}");
    }
}

/// A refresh whose answer was lost is retried with the same nonce: the bearer it presented is
/// already revoked, yet the peer answers again with the same new token (authenticated by the
/// signature over that nonce); another nonce gets another token; a stranger's signature nothing.
#[tokio::test]
async fn a_refresh_retried_after_a_lost_answer_gets_the_same_token() {
    let (a, b, pair_id) = paired().await;
    let bearer = a.outbound_token(&pair_id).await.unwrap();
    let refresh = |nonce: &str| {
        let mut object = json!({
            "pair_id": pair_id, "generation": 1, "nonce": nonce, "issued_at_ms": now_ms(),
            "issued_token": "spl_test_sa_x_0123456789abcdef0123456789abcdef",
        })
        .as_object()
        .cloned()
        .unwrap();
        sign_object(&mut object, &a.steward.tenant.identity.key);
        Value::Object(object)
    };
    // Raw: the signed bodies are built here, and one retry carries no bearer at all.
    let send = |body: Value, token: Option<String>| {
        let mut request = b
            .steward
            .http
            .post(format!("{}/v1/federation/pair/refresh", b.url()))
            .header("x-syncropel-actor", a.did())
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        b.steward.send(request)
    };
    let nonce = "ab".repeat(32);
    let (status, first) = send(refresh(&nonce), Some(bearer.clone())).await;
    assert_eq!(status, 200, "{first}");
    // The answer "was lost": the same nonce again, with the now revoked bearer, or none at all.
    for token in [Some(bearer.clone()), None] {
        let (status, again) = send(refresh(&nonce), token).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["issued_token"], first["issued_token"]);
    }
    // A new nonce without a live bearer (a peer that restored its pairs without their secrets,
    // federation-protocol.md §3.6) renews by the signature alone: yet another token.
    let (status, renewed) = send(refresh(&"cd".repeat(32)), Some(bearer)).await;
    assert_eq!(status, 200, "{renewed}");
    assert_ne!(renewed["issued_token"], first["issued_token"]);
    // Signed by someone else: refused whatever the nonce.
    let stranger = Keypair::generate();
    let mut forged = refresh(&nonce).as_object().cloned().unwrap();
    forged.remove("sig");
    sign_object(&mut forged, &stranger);
    let (status, refused) = send(Value::Object(forged), None).await;
    assert_eq!(status, 403, "{refused}");
}

const DAY: i64 = 24 * 3600;

/// The clock a steward's renewal decisions read: `steady` seconds ahead of the real one, plus
/// `once` seconds for its next reading only. It counts its readings (one per renewal check).
#[derive(Clone, Default)]
struct TestClock {
    steady: Arc<AtomicI64>,
    once: Arc<AtomicI64>,
    reads: Arc<AtomicU64>,
}

impl TestClock {
    fn clock(&self) -> config::Clock {
        let clock = self.clone();
        Arc::new(move || {
            clock.reads.fetch_add(1, Ordering::SeqCst);
            syncropel_protocol::unix_now()
                + clock.steady.load(Ordering::SeqCst)
                + clock.once.swap(0, Ordering::SeqCst)
        })
    }

    fn stand_at(&self, days: i64) {
        self.steady.store(days * DAY, Ordering::SeqCst);
    }

    /// The next renewal check (only) reads day `days`.
    fn once_at(&self, days: i64) {
        self.once.store(days * DAY, Ordering::SeqCst);
    }

    /// Waits until `n` more renewal checks have begun (so `n - 1` have run whole).
    async fn ticks(&self, n: u64) {
        let start = self.reads.load(Ordering::SeqCst);
        eventually("renewal checks", DEADLINE, || async {
            (self.reads.load(Ordering::SeqCst) >= start + n).then_some(())
        })
        .await;
    }
}

/// A steward running its renewal loop every 100 ms on `clock`.
async fn renewing(clock: &TestClock, dids: &[String]) -> Node {
    Node::start(Options {
        federation: FederationConfig {
            auto_approve: dids.to_vec(),
            clock: clock.clock(),
            renewal_interval: ms(100),
            ..quick()
        },
        ..Options::default()
    })
    .await
}

/// The directions of the `token_renewed` records on `th_federation_pairs`, sorted.
async fn renewals(node: &Node) -> Vec<String> {
    let mut directions: Vec<String> = node
        .records(syncropel_protocol::PAIRS_THREAD)
        .await
        .iter()
        .filter(|r| r["body"]["op"] == "token_renewed")
        .map(|r| {
            r["body"]["fields"]["direction"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    directions.sort();
    directions
}

/// The (inbound, outbound) token ids of a pair view.
fn token_ids(view: &Value) -> (Value, Value) {
    let tokens = &view["tokens"];
    (
        tokens["inbound"]["token_id"].clone(),
        tokens["outbound"]["token_id"].clone(),
    )
}

/// A (the initiator, pulling a thread from B) and B, paired and each renewing on its own clock.
struct Renewing {
    a_clock: TestClock,
    b_clock: TestClock,
    a: Node,
    b: Node,
    pair_id: String,
    thread: String,
    /// Both sides as they stood once paired.
    before: [(Value, String); 2],
}

async fn renewing_pair(thread: &str) -> Renewing {
    let (a_clock, b_clock) = (TestClock::default(), TestClock::default());
    let a = renewing(&a_clock, &[]).await;
    let b = renewing(&b_clock, &[a.did()]).await;
    let view = a.pair_with(b.url()).await;
    let pair_id = view["pair_id"].as_str().unwrap().to_string();
    let first = b.emit(thread, "did:sync:user:bob", 1, json!({})).await;
    a.pull(thread, &b.did()).await;
    a.arrived(first["id"].as_str().unwrap()).await;
    let before = pair_sides(&a, &b, &pair_id).await;
    Renewing {
        a_clock,
        b_clock,
        a,
        b,
        pair_id,
        thread: thread.into(),
        before,
    }
}

/// Both sides as they stand: their views and the bearers each holds for the other.
async fn pair_sides(a: &Node, b: &Node, pair_id: &str) -> [(Value, String); 2] {
    [
        (
            a.pair(pair_id).await,
            a.outbound_token(pair_id).await.unwrap(),
        ),
        (
            b.pair(pair_id).await,
            b.outbound_token(pair_id).await.unwrap(),
        ),
    ]
}

impl Renewing {
    /// Both clocks have run `n` more renewal checks.
    async fn ticks(&self, n: u64) {
        self.a_clock.ticks(n).await;
        self.b_clock.ticks(n).await;
    }
}

/// Nothing was renewed since `before`, and the bearers of then still work.
async fn assert_not_renewed(r: &Renewing) {
    let Renewing {
        a,
        b,
        pair_id,
        thread,
        before,
        ..
    } = r;
    let now = pair_sides(a, b, pair_id).await;
    for ((then, old), (view, held)) in before.iter().zip(&now) {
        assert_eq!(token_ids(view), token_ids(then), "{view}");
        assert_eq!(held, old);
    }
    for node in [a, b] {
        assert_eq!(renewals(node).await, Vec::<String>::new());
    }
    let query = format!("thread={thread}&feed=normal");
    for (node, token, actor) in [(b, &before[0].1, a.did()), (a, &before[1].1, b.did())] {
        let (status, body) = changes_as(node, token, &actor, &query).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// One renewal happened since `before`: both sides show new token ids, each the other's; each
/// side wrote one `token_renewed` record per direction; the old bearers are refused and the new
/// ones work; records still flow both ways.
async fn assert_renewed_once(r: &Renewing) {
    let Renewing {
        a,
        b,
        pair_id,
        thread,
        before,
        ..
    } = r;
    let now = eventually("both sides renewed", DEADLINE, || async {
        let now = pair_sides(a, b, pair_id).await;
        let all_new = before.iter().zip(&now).all(|((then, _), (view, _))| {
            let (old_in, old_out) = token_ids(then);
            let (new_in, new_out) = token_ids(view);
            new_in != old_in && new_out != old_out
        });
        all_new.then_some(now)
    })
    .await;
    let [(ours, new_a), (theirs, new_b)] = &now;
    assert_reciprocal(ours, theirs);
    assert_eq!(
        ours["tokens"]["outbound"]["token_id"],
        sha256_hex(new_a.as_bytes())
    );
    assert_eq!(
        theirs["tokens"]["outbound"]["token_id"],
        sha256_hex(new_b.as_bytes())
    );
    for node in [a, b] {
        assert_eq!(renewals(node).await, ["inbound", "outbound"]);
    }
    let (old_a, old_b) = (&before[0].1, &before[1].1);
    assert_only_new_bearers(a, b, thread, [old_a, new_a], [old_b, new_b]).await;
    // A's running job goes on with the new bearer; B pulls from A with its new one.
    let record = b.emit(thread, "did:sync:user:bob", 2, json!({})).await;
    a.arrived(record["id"].as_str().unwrap()).await;
    let mine = a
        .emit("th_fed_renewed_back", "did:sync:user:alice", 1, json!({}))
        .await;
    let pulled = b.pull("th_fed_renewed_back", &a.did()).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    b.arrived(mine["id"].as_str().unwrap()).await;
    for node in [a, b] {
        eventually("the pair active", DEADLINE, || async {
            (node.pair(pair_id).await["state"] == "active").then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_initiator_renews_pair_tokens_by_itself_from_day_83() {
    let r = renewing_pair("th_fed_auto_renew").await;

    // Day 82 on both sides: the tokens have eight days left; nobody renews.
    r.a_clock.stand_at(82);
    r.b_clock.stand_at(82);
    r.ticks(3).await;
    assert_not_renewed(&r).await;

    // Day 84 on A: the initiator renews both tokens, on its own.
    r.a_clock.stand_at(0);
    r.a_clock.once_at(84);
    assert_renewed_once(&r).await;
    // The new tokens are not due: nothing more is renewed.
    r.ticks(3).await;
    for node in [&r.a, &r.b] {
        assert_eq!(renewals(node).await, ["inbound", "outbound"]);
    }
}

#[tokio::test]
async fn the_responder_renews_from_day_85_when_the_initiator_has_not() {
    let r = renewing_pair("th_fed_responder_renew").await;

    // Day 84 on B (A on real time): the responder leaves days 83-85 to the initiator.
    r.b_clock.stand_at(84);
    r.ticks(3).await;
    assert_not_renewed(&r).await;

    // Day 86 on B: it renews itself.
    r.b_clock.stand_at(0);
    r.b_clock.once_at(86);
    assert_renewed_once(&r).await;
}

/// A renewal that fails is recorded (`renewal_failed`, its attempts counted), and once the
/// outbound token has expired the pair degrades with `token_expired` (federation-protocol.md
/// §3.4); it keeps trying.
#[tokio::test]
async fn a_failed_renewal_is_recorded_and_an_expired_token_degrades_the_pair() {
    let Renewing {
        a_clock,
        b_clock,
        a,
        b,
        pair_id,
        ..
    } = renewing_pair("th_fed_renew_fails").await;
    b_clock.stand_at(0);
    let _down = b.stop().await;
    a_clock.stand_at(84);
    let failures = eventually("two failed renewals", DEADLINE, || async {
        let failed: Vec<Value> = a
            .records(syncropel_protocol::PAIRS_THREAD)
            .await
            .into_iter()
            .filter(|r| r["body"]["op"] == "renewal_failed")
            .collect();
        (failed.len() >= 2).then_some(failed)
    })
    .await;
    assert_eq!(failures[0]["body"]["fields"]["attempts"], 1, "{failures:?}");
    assert_eq!(failures[1]["body"]["fields"]["attempts"], 2, "{failures:?}");
    assert_eq!(a.pair(&pair_id).await["state"], "active", "not expired yet");

    a_clock.stand_at(91);
    let pair = eventually("degraded", DEADLINE, || async {
        let pair = a.pair(&pair_id).await;
        (pair["state"] == "degraded").then_some(pair)
    })
    .await;
    assert_eq!(pair["degraded_cause"], "token_expired", "{pair}");
}
