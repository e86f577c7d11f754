//! What a pair leaves on the log (federation-protocol.md §3.5, §4.5): each state change of a
//! pair writes exactly one `pair_state_change.v1` on `th_audit_federation_pairs`, and the
//! genesis both sides store is one record, byte for byte.

use serde_json::Value;
use syncropel_client::api::{PairReason, StartPair};
use syncropel_protocol::sync::PeerItem;
use syncropel_testkit::{eventually, Node, Options};

use super::{config, start, DEADLINE};

/// The pair's audit records on `node`, oldest first: their transitions (`from->to`).
async fn transitions(node: &Node, pair_id: &str) -> Vec<String> {
    node.records("th_audit_federation_pairs")
        .await
        .iter()
        .map(|r| &r["body"])
        .filter(|b| b["pair_id"] == pair_id)
        .inspect(|b| {
            assert_eq!(
                b["kind"], "syncropel.federation.pair_state_change.v1",
                "{b}"
            )
        })
        .filter_map(|b| b["transition"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn each_pair_state_change_writes_exactly_one_audit_record() {
    let a = start().await;
    let b = start().await;
    let request = StartPair {
        peer_url: b.url().into(),
        ..StartPair::default()
    };
    let started = a.client.start_pairing(&request).await.unwrap();
    assert_eq!(started.status(), 202, "{}", started.json());
    let pair_id = started.json()["pair_id"].as_str().unwrap().to_string();
    let approved = b
        .client
        .approve_pair(&pair_id, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.json());
    let polled = a.client.continue_pairing(&pair_id).await.unwrap();
    assert_eq!(polled.status(), 200, "{}", polled.json());
    assert_eq!(
        transitions(&a, &pair_id).await,
        ["none->establishing", "establishing->active"]
    );
    assert_eq!(
        transitions(&b, &pair_id).await,
        ["none->establishing", "establishing->active"]
    );

    // Pause and resume: one record each.
    let reason = PairReason::default();
    assert_eq!(
        a.client
            .pause_pair(&pair_id, &reason)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        a.client
            .resume_pair(&pair_id, &reason)
            .await
            .unwrap()
            .status(),
        200
    );

    // Degraded: B revokes while A is away; A finds out on its first pull after it is back.
    a.pull("th_fed_audit_pairs", &b.did()).await;
    let away = a.stop().await;
    let revoked = b.client.revoke_pair(&pair_id, &reason).await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    let a = Node::start(Options {
        federation: config(),
        ..Options::restart(away)
    })
    .await;
    eventually("degraded", DEADLINE, || async {
        (a.pair(&pair_id).await["state"] == "degraded").then_some(())
    })
    .await;
    let revoked = a.client.revoke_pair(&pair_id, &reason).await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());

    let ours = transitions(&a, &pair_id).await;
    assert_eq!(
        ours,
        [
            "none->establishing",
            "establishing->active",
            "active->paused",
            "paused->active",
            "active->degraded",
            "degraded->revoked",
        ],
        "{ours:?}"
    );
    // B hears of neither the pause nor A's side of the revoke: its own three changes only.
    let theirs = transitions(&b, &pair_id).await;
    assert_eq!(
        theirs,
        [
            "none->establishing",
            "establishing->active",
            "active->revoked"
        ],
        "{theirs:?}"
    );
}

/// The pair's genesis record as `node` stores it.
async fn genesis(node: &Node) -> Value {
    let found: Vec<Value> = node
        .records("th_federation_pairs")
        .await
        .into_iter()
        .filter(|r| r["body"]["kind"] == "syncropel.federation.pair_genesis.v1")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn both_sides_store_the_same_pair_genesis_byte_for_byte() {
    let (a, b, pair_id) = super::paired().await;
    let (mut ours, mut theirs) = (genesis(&a).await, genesis(&b).await);
    assert_eq!(ours["body"]["pair_id"], pair_id.as_str(), "{ours}");
    assert!(
        ours["sig"].is_string() && ours["signer"].is_string(),
        "{ours}"
    );
    // Each steward numbers its own log and stamps when it stored the record: the rest of the
    // stored record (envelope, body, id, signature, signer) is the one record both hold.
    for stored in [&mut ours, &mut theirs] {
        let stored = stored.as_object_mut().unwrap();
        assert!(stored.remove("sequence").is_some(), "{stored:?}");
        assert!(stored.remove("created_at").is_some(), "{stored:?}");
    }
    assert_eq!(ours.to_string(), theirs.to_string());
    let item = PeerItem::from_value(syncropel_protocol::sync::sync_item(&ours).unwrap()).unwrap();
    assert_eq!(syncropel_protocol::record_id(&item.canonical), item.id);
}
