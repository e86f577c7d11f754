//! Two-sided L0 consent (federation-protocol.md §6.4): a source with `l0_requires_acceptance`
//! serves a grant with L0 as digests until the puller shows its signed acceptance in
//! `x-syncropel-consent-accept`; forged, foreign and withdrawn acceptances get digests, malformed
//! headers a `400`.

use base64::Engine as _;
use serde_json::{json, Value};
use syncropel_federation::FederationConfig;
use syncropel_protocol::Keypair;
use syncropel_testkit::{error_code, Node, Options};

use super::{config, signed_item, start};

const ACCEPT: &str = "x-syncropel-consent-accept";

fn b64(item: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(item.to_string())
}

/// A stored record as the sync item a puller shows.
fn item_of(stored: &Value) -> Value {
    syncropel_protocol::sync::sync_item(stored).unwrap()
}

/// The changes page `a` gets from `b` on `thread` with its pair token, showing `shown`.
async fn changes_showing(
    a: &Node,
    b: &Node,
    pair_id: &str,
    thread: &str,
    shown: &[&str],
) -> (u16, Value) {
    let token = a.outbound_token(pair_id).await.unwrap();
    let mut request = reqwest::Client::new()
        .get(format!("{}/v1/sync/changes?thread={thread}", b.url()))
        .bearer_auth(token)
        .header("x-syncropel-actor", a.did());
    for value in shown {
        request = request.header(ACCEPT, *value);
    }
    syncropel_testkit::send(request).await
}

/// Ends the longpoll A's pull job holds open (it was asked before the last change of consent):
/// a record of the default namespace, waited for.
async fn settle(a: &Node, b: &Node, thread: &str, clock: i64) {
    let marker = b
        .emit(thread, "did:sync:user:bob", clock, json!({"marker": clock}))
        .await;
    a.arrived(marker["id"].as_str().unwrap()).await;
}

fn is_stub(item: &Value) -> bool {
    item["redacted"] == true && item["record"].get("sig").is_none()
}

/// The configuration of a source that requires acceptance, approving `puller` at once.
fn requiring_acceptance(puller: &Node) -> FederationConfig {
    FederationConfig {
        auto_approve: vec![puller.did()],
        l0_requires_acceptance: true,
        ..config()
    }
}

/// A puller A paired with a source B that requires acceptance; answers the pair id.
async fn paired_with_a_requiring_source() -> (Node, Node, String) {
    let a = start().await;
    let b = Node::start(Options {
        federation: requiring_acceptance(&a),
        ..Options::default()
    })
    .await;
    let pair_id = a.pair_with(b.url()).await["pair_id"]
        .as_str()
        .unwrap()
        .to_string();
    (a, b, pair_id)
}

/// `research` registered on both sides, and B's grant of it to A's `default` with L0.
async fn grant_l0(a: &Node, b: &Node) {
    for node in [a, b] {
        node.register_namespace("research").await;
    }
    let grant = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "peer_did": a.did()}),
        )
        .await;
    assert_eq!(grant.0, 201, "{}", grant.1);
}

/// A records its acceptance of B's L0 records of `research` into `default`.
async fn accept(a: &Node, b: &Node) -> Value {
    let (status, accepted) = a
        .post(
            "/v1/consent/grants",
            &json!({"op": "accept", "peer_did": b.did(), "source_namespace": "research",
                    "target_namespace": "default"}),
        )
        .await;
    assert_eq!(status, 201, "{accepted}");
    accepted
}

#[tokio::test]
async fn an_l0_grant_serves_digests_until_the_puller_shows_its_acceptance() {
    let (a, b, pair_id) = paired_with_a_requiring_source().await;
    grant_l0(&a, &b).await;
    let thread = "th_fed_l0";
    let actor = "did:sync:user:bob";

    // No acceptance yet: the L0 grant serves every digest level, unsigned.
    let first = b
        .emit(thread, actor, 1, json!({"namespace": "research", "n": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    let stub = a.arrived(first["id"].as_str().unwrap()).await;
    assert_eq!(stub["redacted"], true, "{stub}");
    let levels = stub["hash_levels"].as_object().unwrap();
    assert_eq!(
        levels.keys().collect::<Vec<_>>(),
        ["l1", "l2", "l3"],
        "{stub}"
    );

    // Malformed acceptances are refused; too many as well.
    for shown in [vec!["not base64 at all!"], vec![&"A".repeat(9000)[..]]] {
        let (status, refused) = changes_showing(&a, &b, &pair_id, thread, &shown).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(error_code(&refused), "VALIDATION_ERROR", "{refused}");
    }
    let junk = b64(&json!({"id": "x"}));
    let (status, refused) = changes_showing(&a, &b, &pair_id, thread, &[&junk]).await;
    assert_eq!(status, 400, "{refused}");
    let many: Vec<&str> = std::iter::repeat_n("e30", 9).collect();
    let (status, refused) = changes_showing(&a, &b, &pair_id, thread, &many).await;
    assert_eq!(status, 400, "{refused}");

    // A forged acceptance (signed by another key) and a genuine one for another namespace pair
    // are well-formed but open nothing: stubs.
    let stranger = Keypair::generate();
    let body = json!({"kind": "core.consent.v1", "op": "accept", "grant_id": "ca_forged",
        "source_namespace": "research", "target_namespace": "default", "hash_levels": ["L0"],
        "peer_did": b.did(), "expires_at": null, "accepted_by": null});
    let forged = signed_item(
        &stranger,
        "th_consent",
        &stranger.did_key(),
        1,
        body.clone(),
    );
    let mut claimed = forged.clone();
    claimed["record"]["actor"] = json!(a.did());
    let (status, other) = a
        .post(
            "/v1/consent/grants",
            &json!({"op": "accept", "peer_did": b.did(), "source_namespace": "lab",
                    "target_namespace": "default"}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let foreign = a
        .records("th_consent")
        .await
        .into_iter()
        .find(|r| r["body"]["grant_id"] == other["grant_id"])
        .unwrap();
    for shown in [b64(&forged), b64(&claimed), b64(&item_of(&foreign))] {
        let (status, page) = changes_showing(&a, &b, &pair_id, thread, &[&shown]).await;
        assert_eq!(status, 200, "{page}");
        let records = page["records"].as_array().unwrap();
        assert!(records.iter().all(is_stub), "{page}");
    }

    // The puller accepts: new records arrive whole and signed.
    let accepted = a
        .client
        .accept_l0(&syncropel_client::api::AcceptL0 {
            op: "accept".into(),
            peer_did: b.did(),
            source_namespace: "research".into(),
            target_namespace: "default".into(),
            expires_at: None,
        })
        .await
        .unwrap();
    assert_eq!(accepted.status(), 201, "{}", accepted.json());
    assert_eq!(
        accepted.hash_levels,
        [syncropel_protocol::consent::HashLevel::L0]
    );
    settle(&a, &b, thread, 100).await;
    let second = b
        .emit(thread, actor, 2, json!({"namespace": "research", "n": 2}))
        .await;
    let got = a.arrived(second["id"].as_str().unwrap()).await;
    assert_eq!(got["body"], second["body"], "{got}");
    assert_eq!(got["sig"], second["sig"]);
    assert_eq!(got.get("redacted"), None, "{got}");
    // Shown by hand, the same acceptance opens the page too.
    let mine = a
        .records("th_consent")
        .await
        .into_iter()
        .find(|r| r["body"]["grant_id"] == accepted.grant_id.as_str())
        .unwrap();
    let (status, page) = changes_showing(&a, &b, &pair_id, thread, &[&b64(&item_of(&mine))]).await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    assert!(records.iter().all(|r| !is_stub(r)), "{page}");
    assert!(records.iter().any(|r| r["id"] == first["id"]), "{page}");

    // Withdrawn: the puller stops showing it, and gets digests again.
    let revoked = a
        .client
        .revoke_grant(&accepted.grant_id, None)
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    settle(&a, &b, thread, 101).await;
    let third = b
        .emit(thread, actor, 3, json!({"namespace": "research", "n": 3}))
        .await;
    let stub = a.arrived(third["id"].as_str().unwrap()).await;
    assert_eq!(stub["redacted"], true, "{stub}");
}

#[tokio::test]
async fn without_the_requirement_acceptance_headers_change_nothing() {
    let (a, b, pair_id) = super::paired().await;
    for node in [&a, &b] {
        node.register_namespace("research").await;
    }
    let grant = b
        .post(
            "/v1/consent/grants",
            &json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"]}),
        )
        .await;
    assert_eq!(grant.0, 201, "{}", grant.1);
    let written = b
        .emit(
            "th_fed_l0_off",
            "did:sync:user:bob",
            1,
            json!({"namespace": "research"}),
        )
        .await;
    // Not even looked at: garbage is no error, and the record comes whole.
    let (status, page) =
        changes_showing(&a, &b, &pair_id, "th_fed_l0_off", &["not base64 at all!"]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["records"][0]["record"]["sig"], written["sig"],
        "{page}"
    );
    assert_eq!(page["records"][0].get("redacted"), None, "{page}");
}

/// A continuous pair: the feed was opened with the acceptance; once the puller revokes it, new
/// records come as stubs (its pull jobs drop the feed and open another without it).
#[tokio::test]
async fn revoking_an_acceptance_turns_a_continuous_feed_to_stubs() {
    let (a, b, pair_id) = paired_with_a_requiring_source().await;
    grant_l0(&a, &b).await;
    let accepted = accept(&a, &b).await;
    let (status, view) = a
        .post(
            &format!("/v1/federation/pairs/{pair_id}/config"),
            &json!({"mode": "continuous"}),
        )
        .await;
    assert_eq!(status, 200, "{view}");

    let thread = "th_fed_l0_live";
    let actor = "did:sync:user:bob";
    let first = b
        .emit(thread, actor, 1, json!({"namespace": "research", "n": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    let got = a.arrived(first["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], first["sig"], "{got}");
    syncropel_testkit::eventually("a continuous feed", super::DEADLINE * 2, || async {
        let pair = a.pair(&pair_id).await;
        (pair["sync_health"]["jobs"][0]["feed"] == "continuous").then_some(())
    })
    .await;
    let second = b
        .emit(thread, actor, 2, json!({"namespace": "research", "n": 2}))
        .await;
    let got = a.arrived(second["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], second["sig"], "{got}");
    assert_eq!(got.get("redacted"), None, "{got}");

    let revoked = a
        .client
        .revoke_grant(accepted["grant_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let third = b
        .emit(thread, actor, 3, json!({"namespace": "research", "n": 3}))
        .await;
    let stub = a.arrived(third["id"].as_str().unwrap()).await;
    assert_eq!(stub["redacted"], true, "{stub}");
    assert_eq!(stub.get("sig").cloned().unwrap_or(Value::Null), Value::Null);
}

/// A continuous feed opened with an acceptance ends, with no error, once the acceptance expires:
/// its L0 decision is not held past it, and the puller's reconnect shows what is in force then.
#[tokio::test]
async fn a_continuous_feed_ends_when_the_acceptance_it_was_opened_with_expires() {
    let (a, b, pair_id) = paired_with_a_requiring_source().await;
    let soon = syncropel_protocol::unix_now() + 3;
    let (status, accepted) = a
        .post(
            "/v1/consent/grants",
            &json!({"op": "accept", "peer_did": b.did(), "source_namespace": "research",
                    "target_namespace": "default",
                    "expires_at": syncropel_protocol::rfc3339_from_unix(soon)}),
        )
        .await;
    assert_eq!(status, 201, "{accepted}");
    let mine = a
        .records("th_consent")
        .await
        .into_iter()
        .find(|r| r["body"]["grant_id"] == accepted["grant_id"])
        .unwrap();
    let token = a.outbound_token(&pair_id).await.unwrap();
    let mut response = reqwest::Client::new()
        .get(format!(
            "{}/v1/sync/changes?thread=th_fed_l0_ends&feed=continuous",
            b.url()
        ))
        .bearer_auth(token)
        .header("x-syncropel-actor", a.did())
        .header(ACCEPT, b64(&item_of(&mine)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("the feed outlived its acceptance");
    assert!(
        syncropel_protocol::unix_now() >= soon,
        "ended early: {ended}"
    );
    assert!(!ended.contains("event: error"), "{ended}");
}

/// A push (federation-protocol.md §5.3) serves the acceptances the puller showed on its last
/// pull, as stored for the tenant: after the source restarts (nothing in memory) the push still
/// delivers whole records, and once the puller's next pull no longer shows the acceptance,
/// stubs.
#[tokio::test]
async fn a_push_after_a_restart_uses_the_stored_acceptance_until_the_puller_drops_it() {
    let (a, b, pair_id) = paired_with_a_requiring_source().await;
    grant_l0(&a, &b).await;
    let accepted = accept(&a, &b).await;
    let thread = "th_fed_l0_push";
    let actor = "did:sync:user:bob";
    let first = b
        .emit(thread, actor, 1, json!({"namespace": "research", "n": 1}))
        .await;
    a.pull(thread, &b.did()).await;
    let got = a.arrived(first["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], first["sig"], "{got}");
    // A pulls only when told from now on: what arrives next comes by push.
    let config_path = format!("/v1/federation/pairs/{pair_id}/config");
    let (status, view) = a.post(&config_path, &json!({"mode": "on-demand"})).await;
    assert_eq!(status, 200, "{view}");

    let stopped = b.stop().await;
    let b = Node::start(Options {
        federation: requiring_acceptance(&a),
        ..Options::restart(stopped)
    })
    .await;
    let push = format!("/v1/federation/pairs/{pair_id}/push");
    let second = b
        .emit(thread, actor, 2, json!({"namespace": "research", "n": 2}))
        .await;
    let (status, sent) = b.post(&push, &json!({"thread": thread})).await;
    assert_eq!(status, 200, "{sent}");
    let got = a.arrived(second["id"].as_str().unwrap()).await;
    assert_eq!(got["sig"], second["sig"], "{got}");
    assert_eq!(got.get("redacted"), None, "{got}");

    // Withdrawn: A's next pull shows it no more, and B forgets it.
    let revoked = a
        .client
        .revoke_grant(accepted["grant_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    a.pull(thread, &b.did()).await;
    let third = b
        .emit(thread, actor, 3, json!({"namespace": "research", "n": 3}))
        .await;
    let (status, sent) = b.post(&push, &json!({"thread": thread})).await;
    assert_eq!(status, 200, "{sent}");
    let stub = a.arrived(third["id"].as_str().unwrap()).await;
    assert_eq!(stub["redacted"], true, "{stub}");
}
