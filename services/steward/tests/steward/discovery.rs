//! Discovery between real stewards on 127.0.0.1: the mDNS roster over loopback, transitive
//! introductions through a paired peer, and no discovery call ever touching pair records.

use std::time::{Duration, Instant};

use serde_json::json;
use syncropel_client::api::{PairReason, SetIntroducible};
use syncropel_client::ClientError;
use syncropel_discovery::{MdnsConfig, MdnsInterfaces};
use syncropel_federation::discovery::DiscoveryConfig;
use syncropel_federation::{pairs, FederationConfig};
use syncropel_testkit::{error_code, Node, Options};

/// Loopback on a port of its own, so no LAN and no other test's stewards are involved.
fn mdns(listen: bool, broadcast: bool) -> DiscoveryConfig {
    DiscoveryConfig {
        mdns_listen: listen,
        mdns_broadcast: broadcast,
        mdns: MdnsConfig {
            interfaces: MdnsInterfaces::Loopback,
            port: 25_391,
        },
        ..DiscoveryConfig::default()
    }
}

/// A steward taking part in discovery as `discovery` says (its startup starts the mDNS
/// daemons), approving pair requests from `auto_approve`.
async fn start(discovery: DiscoveryConfig, auto_approve: Vec<String>) -> Node {
    Node::start(Options {
        federation: FederationConfig {
            discovery,
            auto_approve,
            ..FederationConfig::default()
        },
        ..Options::default()
    })
    .await
}

/// Pairs `node` with `peer` (which auto-approves it); answers the pair id.
async fn pair(node: &Node, peer: &Node) -> String {
    let view = node.pair_with(peer.url()).await;
    view["pair_id"].as_str().unwrap().to_string()
}

/// The bearer `node`'s peer issued it for the pair.
async fn bearer(node: &Node, pair_id: &str) -> String {
    let steward = &node.steward;
    pairs::outbound_token(&steward.state.federation, &steward.tenant, pair_id)
        .await
        .unwrap()
        .unwrap()
}

async fn set_introducible(node: &Node, peer_did: &str, on: bool) {
    let request = SetIntroducible { introducible: on };
    let answer = node
        .client
        .set_introducible(peer_did, &request)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.json());
    assert_eq!(answer.introducible, on);
}

/// `GET /v1/federation/peers` on `node` as the peer holding `bearer`.
async fn peers_as(node: &Node, bearer: &str, actor: &str) -> (u16, serde_json::Value) {
    node.get_as(bearer, actor, "/v1/federation/peers").await
}

/// Pair records and pairs, to show discovery wrote none.
async fn pair_state(node: &Node) -> (usize, usize) {
    let records = node.records("th_federation_pairs").await;
    let list = node.client.federation_pairs().await.unwrap();
    assert_eq!(list.status(), 200, "{}", list.json());
    (records.len(), list.data.len())
}

#[tokio::test]
async fn mdns_roster_lists_the_broadcasting_steward_and_not_the_silent_one() {
    let b = start(mdns(true, false), vec![]).await;
    let before = pair_state(&b).await;
    let c = start(mdns(true, false), vec![]).await;
    let announced = Instant::now();
    let a = start(mdns(false, true), vec![]).await;

    let (status, _) = b
        .steward
        .send(b.steward.http.get(format!("{}/v1/discovery/mdns", b.url())))
        .await;
    assert_eq!(status, 401);

    let roster = loop {
        let roster = b.client.mdns_roster().await.unwrap();
        assert_eq!(roster.status(), 200, "{}", roster.json());
        assert_eq!(roster.json()["object"], "mdns_roster");
        if roster.peers.iter().any(|p| p.did == a.did()) {
            break roster;
        }
        assert!(
            announced.elapsed() < Duration::from_secs(10),
            "A never showed up: {roster:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "steward announce -> roster entry: {} ms",
        announced.elapsed().as_millis()
    );
    let dids = |roster: &syncropel_client::api::MdnsRoster| -> Vec<String> {
        roster.peers.iter().map(|p| p.did.clone()).collect()
    };
    let entry = &roster.peers[0];
    assert_eq!(dids(&roster), [a.did()], "{roster:?}");
    assert_eq!(entry.endpoint, a.url());
    // As sent: the members are there, not defaulted.
    let sent = &roster.json()["peers"][0];
    assert_eq!(sent["manifest_verified"], false, "{sent}");
    assert!(sent["last_seen"].is_string(), "{sent}");
    assert!(!entry.last_seen.is_empty());

    // C listens but never announces; B never lists itself either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let roster = b.client.mdns_roster().await.unwrap();
    assert!(!dids(&roster).contains(&c.did()));
    assert!(!dids(&roster).contains(&b.did()));
    // A steward that does not listen answers an empty roster.
    let empty = a.client.mdns_roster().await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.json()["peers"], json!([]));
    assert!(empty.peers.is_empty());

    assert_eq!(pair_state(&b).await, before, "discovery wrote pair records");
}

#[tokio::test]
async fn introductions_are_404_unless_enabled_and_list_only_introducible_pairs() {
    let x = start(DiscoveryConfig::default(), vec![]).await;
    let y = start(DiscoveryConfig::default(), vec![]).await;
    let z = start(DiscoveryConfig::default(), vec![]).await;
    let members = vec![x.did(), y.did(), z.did()];
    let hub = start(
        DiscoveryConfig {
            introduce: true,
            ..DiscoveryConfig::default()
        },
        members.clone(),
    )
    .await;
    let closed = start(DiscoveryConfig::default(), members).await;

    let x_hub = pair(&x, &hub).await;
    pair(&y, &hub).await;
    pair(&z, &hub).await;
    let x_closed = pair(&x, &closed).await;
    set_introducible(&hub, &x.did(), true).await;
    set_introducible(&hub, &y.did(), true).await;
    set_introducible(&hub, &z.did(), true).await;
    set_introducible(&hub, &z.did(), false).await;
    let x_pairs = pair_state(&x).await;
    let hub_pairs = pair_state(&hub).await;

    // Introductions off: the route does not exist for peers.
    let (status, body) = peers_as(&closed, &bearer(&x, &x_closed).await, &x.did()).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");
    let refused = x.client.introductions(&closed.did()).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Api { status: 404, .. }),
        "{refused}"
    );

    // On: only introducible pairs, never the caller, never a revoked-introducible one.
    let (status, body) = peers_as(&hub, &bearer(&x, &x_hub).await, &x.did()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "introductions");
    assert_eq!(body["introduced_by"], hub.did());
    assert_eq!(body["peers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["peers"][0]["did"], y.did());
    assert_eq!(body["peers"][0]["url"], y.url());
    assert_eq!(body["peers"][0]["handles"], json!([]));

    // An operator token is no pair bearer.
    let (status, _) = peers_as(&hub, &hub.token, &hub.did()).await;
    assert_eq!(status, 403);

    // The same, asked through X's own steward with the bearer it holds.
    let introduced = x.client.introductions(&hub.did()).await.unwrap();
    assert_eq!(introduced.status(), 200, "{}", introduced.json());
    assert_eq!(introduced.introduced_by, hub.did());
    let dids: Vec<&str> = introduced.peers.iter().map(|p| p.did.as_str()).collect();
    assert_eq!(dids, [y.did()]);

    assert_eq!(
        pair_state(&x).await,
        x_pairs,
        "discovery wrote pair records"
    );
    assert_eq!(
        pair_state(&hub).await,
        hub_pairs,
        "discovery wrote pair records"
    );

    // Through a pair no longer active the operator is told so, not that its token is bad.
    let revoked = x
        .client
        .revoke_pair(&x_closed, &PairReason::default())
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    let refused = x.client.introductions(&closed.did()).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Api { status: 404, code, .. } if code == "unpaired_peer"),
        "{refused}"
    );
}
