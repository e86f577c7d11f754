//! Discovery between real stewards on 127.0.0.1: the mDNS roster over loopback, transitive
//! introductions through a paired peer, and no discovery call ever touching pair records.

mod common;

use std::time::{Duration, Instant};

use common::{error_code, Options, TestSteward};
use serde_json::{json, Value};
use syncropel_discovery::{MdnsConfig, MdnsInterfaces};
use syncropel_federation::discovery::DiscoveryConfig;
use syncropel_federation::{pairs, FederationConfig};

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

struct Node {
    s: TestSteward,
    token: String,
}

impl Node {
    async fn start(discovery: DiscoveryConfig, auto_approve: Vec<String>) -> Node {
        let s = TestSteward::start_with(Options {
            federation: FederationConfig {
                discovery,
                auto_approve,
                ..FederationConfig::default()
            },
            ..Options::default()
        })
        .await;
        // What `spl serve` does once the steward is bound.
        syncropel_federation::discovery::start(&s.state.federation, &s.tenant);
        let token = s.admin().await;
        Node { s, token }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.s.get(&self.token, path).await
    }

    /// Pairs with `peer` (which auto-approves us); answers our pair id.
    async fn pair_with(&self, peer: &Node) -> String {
        let (status, view) = self
            .s
            .post(
                &self.token,
                "/v1/federation/pairs",
                &json!({"peer_url": peer.s.url}),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "active", "{view}");
        view["pair_id"].as_str().unwrap().to_string()
    }

    /// The bearer `peer` issued us for the pair.
    async fn bearer(&self, pair_id: &str) -> String {
        pairs::outbound_token(&self.s.state.federation, &self.s.tenant, pair_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn set_introducible(&self, peer_did: &str, on: bool) {
        let (status, body) = self
            .s
            .post(
                &self.token,
                &format!("/v1/federation/pairs/{peer_did}/introducible"),
                &json!({"introducible": on}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["introducible"], on);
    }

    /// `GET /v1/federation/peers` on `self` as the peer holding `bearer`.
    async fn peers_as(&self, bearer: &str, actor: &str) -> (u16, Value) {
        let request = self
            .s
            .http
            .get(format!("{}/v1/federation/peers", self.s.url))
            .bearer_auth(bearer)
            .header("x-syncropel-actor", actor);
        self.s.send(request).await
    }

    /// Pair records and pairs, to show discovery wrote none.
    async fn pair_state(&self) -> (usize, usize) {
        let (status, records) = self
            .get("/v1/records?thread=th_federation_pairs&limit=1000")
            .await;
        assert_eq!(status, 200, "{records}");
        let (status, list) = self.get("/v1/federation/pairs").await;
        assert_eq!(status, 200, "{list}");
        (
            records["data"].as_array().unwrap().len(),
            list["data"].as_array().map_or(0, Vec::len),
        )
    }
}

fn dids(body: &Value) -> Vec<String> {
    body["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["did"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn mdns_roster_lists_the_broadcasting_steward_and_not_the_silent_one() {
    let b = Node::start(mdns(true, false), vec![]).await;
    let before = b.pair_state().await;
    let c = Node::start(mdns(true, false), vec![]).await;
    let announced = Instant::now();
    let a = Node::start(mdns(false, true), vec![]).await;

    let (status, _) =
        b.s.send(b.s.http.get(format!("{}/v1/discovery/mdns", b.s.url)))
            .await;
    assert_eq!(status, 401);

    let roster = loop {
        let (status, body) = b.get("/v1/discovery/mdns").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "mdns_roster");
        if dids(&body).contains(&a.s.did()) {
            break body;
        }
        assert!(
            announced.elapsed() < Duration::from_secs(10),
            "A never showed up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "steward announce -> roster entry: {} ms",
        announced.elapsed().as_millis()
    );
    let entry = &roster["peers"][0];
    assert_eq!(dids(&roster), [a.s.did()], "{roster}");
    assert_eq!(entry["endpoint"], a.s.url);
    assert_eq!(entry["manifest_verified"], false);
    assert!(entry["last_seen"].is_string());

    // C listens but never announces; B never lists itself either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, roster) = b.get("/v1/discovery/mdns").await;
    assert!(!dids(&roster).contains(&c.s.did()));
    assert!(!dids(&roster).contains(&b.s.did()));
    // A steward that does not listen answers an empty roster.
    let (status, empty) = a.get("/v1/discovery/mdns").await;
    assert_eq!(status, 200);
    assert_eq!(empty["peers"], json!([]));

    assert_eq!(b.pair_state().await, before, "discovery wrote pair records");
}

#[tokio::test]
async fn introductions_are_404_unless_enabled_and_list_only_introducible_pairs() {
    let x = Node::start(DiscoveryConfig::default(), vec![]).await;
    let y = Node::start(DiscoveryConfig::default(), vec![]).await;
    let z = Node::start(DiscoveryConfig::default(), vec![]).await;
    let members = vec![x.s.did(), y.s.did(), z.s.did()];
    let hub = Node::start(
        DiscoveryConfig {
            introduce: true,
            ..DiscoveryConfig::default()
        },
        members.clone(),
    )
    .await;
    let closed = Node::start(DiscoveryConfig::default(), members).await;

    let x_hub = x.pair_with(&hub).await;
    y.pair_with(&hub).await;
    z.pair_with(&hub).await;
    let x_closed = x.pair_with(&closed).await;
    hub.set_introducible(&x.s.did(), true).await;
    hub.set_introducible(&y.s.did(), true).await;
    hub.set_introducible(&z.s.did(), true).await;
    hub.set_introducible(&z.s.did(), false).await;
    let x_pairs = x.pair_state().await;
    let hub_pairs = hub.pair_state().await;

    // Introductions off: the route does not exist for peers.
    let (status, body) = closed
        .peers_as(&x.bearer(&x_closed).await, &x.s.did())
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");
    let (status, _) = x
        .get(&format!(
            "/v1/federation/introductions?via={}",
            closed.s.did()
        ))
        .await;
    assert_eq!(status, 404);

    // On: only introducible pairs, never the caller, never a revoked-introducible one.
    let (status, body) = hub.peers_as(&x.bearer(&x_hub).await, &x.s.did()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "introductions");
    assert_eq!(body["introduced_by"], hub.s.did());
    assert_eq!(dids(&body), [y.s.did()]);
    assert_eq!(body["peers"][0]["url"], y.s.url);
    assert_eq!(body["peers"][0]["handles"], json!([]));

    // An operator token is no pair bearer.
    let (status, _) = hub.peers_as(&hub.token, &hub.s.did()).await;
    assert_eq!(status, 403);

    // The same, asked through X's own steward with the bearer it holds.
    let (status, body) = x
        .get(&format!("/v1/federation/introductions?via={}", hub.s.did()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["introduced_by"], hub.s.did());
    assert_eq!(dids(&body), [y.s.did()]);

    assert_eq!(
        x.pair_state().await,
        x_pairs,
        "discovery wrote pair records"
    );
    assert_eq!(
        hub.pair_state().await,
        hub_pairs,
        "discovery wrote pair records"
    );
}
