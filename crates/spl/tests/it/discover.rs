//! `spl fleet sync peers discover`: the CLI browses the LAN itself (loopback here, see
//! `common::spl`), with no steward of its own running, and pairs with nothing.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use syncropel_discovery::testing::{DnsServer, Zone};

use crate::common::{
    bootstrap_admin, json, ok, refusing_address, run, spl, upgrade_to_sync, Directory,
    ReservedPort, Steward,
};

/// A DNS server answering `alice.test`'s `_syncropel` TXT query with `records`.
fn dns_server(records: Vec<String>) -> DnsServer {
    DnsServer::start(Zone::default().txt("alice.test", records.into_iter().map(|r| vec![r])))
}

/// Asserts that `spl fleet sync peers discover --method <method>` without `flag` fails, naming
/// it.
fn assert_needs_flag(method: &str, flag: &str) {
    let home = tempfile::tempdir().unwrap();
    let output = run(
        home.path(),
        &["fleet", "sync", "peers", "discover", "--method", method],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(flag));
}

#[test]
fn mdns_discovery_finds_a_broadcasting_steward_without_a_local_daemon() {
    let announcing = tempfile::tempdir().unwrap();
    let silent = tempfile::tempdir().unwrap();
    let looking = tempfile::tempdir().unwrap();
    let did = ok(run(announcing.path(), &["init"]));
    let silent_did = ok(run(silent.path(), &["init"]));
    let a = Steward::start(
        announcing.path(),
        &["--mdns-broadcast", "--mdns-handle", "alice", "--no-mdns"],
    );
    let _c = Steward::start(silent.path(), &["--no-mdns"]);

    // Right after start the announcer is still probing and announcing, so allow a few rounds.
    let started = Instant::now();
    let found = loop {
        let answer = json(run(
            looking.path(),
            &[
                "fleet", "sync", "peers", "discover", "--method", "mdns", "--json",
            ],
        ));
        let peers = answer["candidates"]["mdns"].as_array().unwrap().clone();
        if let Some(peer) = peers.iter().find(|p| p["did"] == did.as_str()) {
            assert!(!peers.iter().any(|p| p["did"] == silent_did.as_str()));
            break peer.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{answer}");
    };
    assert_eq!(found["endpoint"], a.url.as_str());
    assert_eq!(found["handle"], "alice");
    assert_eq!(found["manifest_verified"], false);
    // Discovery wrote nothing: the looking side has no steward, not even a store.
    assert!(!looking.path().join("hub.db").exists());
}

#[test]
fn dns_and_transitive_need_their_flags() {
    assert_needs_flag("dns", "--domain");
    assert_needs_flag("transitive", "--via");
}

#[test]
fn dns_discovery_keeps_only_records_the_signed_manifest_backs() {
    let alice = tempfile::tempdir().unwrap();
    let mallory = tempfile::tempdir().unwrap();
    let looking = tempfile::tempdir().unwrap();
    let alice_did = ok(run(alice.path(), &["init"]));
    let mallory_did = ok(run(mallory.path(), &["init"]));
    let a = Steward::start(alice.path(), &["--no-mdns"]);
    let m = Steward::start(mallory.path(), &["--no-mdns"]);
    let server = dns_server(vec![
        format!("v=spl1; did={alice_did}; url={}", a.url),
        // Claims alice's DID, but the manifest at this URL is signed for mallory.
        format!("v=spl1; did={alice_did}; url={}", m.url),
        format!("v=spl1; did={mallory_did}; url={}; m=/nowhere", m.url),
        "v=spf1 -all".to_string(),
    ]);

    let answer = json(run(
        looking.path(),
        &[
            "fleet",
            "sync",
            "peers",
            "discover",
            "--method",
            "dns",
            "--domain",
            "alice.test",
            "--dns-server",
            &server.addr().to_string(),
            "--json",
        ],
    ));
    let found = answer["candidates"]["dns"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{answer}");
    assert_eq!(found[0]["did"], alice_did.as_str());
    assert_eq!(found[0]["url"], a.url.as_str());
    assert_eq!(found[0]["manifest_verified"], true);
    // A manifest that cannot be fetched leaves the candidate listed, unverified.
    assert_eq!(found[1]["did"], mallory_did.as_str());
    assert_eq!(found[1]["manifest_verified"], false);
    assert!(found[1]["error"].is_string());
}

/// An HTTP server on 127.0.0.1 whose `/.well-known/syncropel` serves `manifest(its own URL)`,
/// on its own runtime for as long as the test holds it.
struct ManifestServer {
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl ManifestServer {
    fn start(manifest: impl FnOnce(&str) -> serde_json::Value) -> ManifestServer {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = serde_json::json!({ "federation_manifest": manifest(&url) });
        let app = axum::Router::new().route(
            "/.well-known/syncropel",
            axum::routing::get(move || async move { axum::Json(body) }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        ManifestServer {
            url,
            _runtime: runtime,
        }
    }
}

/// `spl fleet sync peers discover --method dns` on `home` against a DNS server answering
/// `records`.
fn discover_dns(home: &Path, records: Vec<String>) -> Vec<serde_json::Value> {
    let server = dns_server(records);
    discover(
        home,
        "dns",
        &[
            "--domain",
            "alice.test",
            "--dns-server",
            &server.addr().to_string(),
        ],
    )
}

#[test]
fn dns_discovery_does_not_verify_a_manifest_copied_to_another_host() {
    let alice = tempfile::tempdir().unwrap();
    let looking = tempfile::tempdir().unwrap();
    let alice_did = ok(run(alice.path(), &["init"]));
    let a = Steward::start(alice.path(), &["--no-mdns"]);
    let copy = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            reqwest::get(format!("{}/.well-known/syncropel", a.url))
                .await?
                .json::<serde_json::Value>()
                .await
        })
        .unwrap()["federation_manifest"]
        .clone();
    // Alice's manifest, validly signed and fresh, served by a host that is not Alice's.
    let evil = ManifestServer::start(|_| copy);

    let found = discover_dns(
        looking.path(),
        vec![format!("v=spl1; did={alice_did}; url={}", evil.url)],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["did"], alice_did.as_str());
    assert_eq!(found[0]["url"], evil.url.as_str());
    assert_eq!(found[0]["manifest_verified"], false, "{found:?}");
    assert!(
        found[0]["error"].as_str().unwrap().contains(&a.url),
        "{found:?}"
    );
}

#[test]
fn dns_discovery_does_not_verify_an_expired_manifest() {
    let looking = tempfile::tempdir().unwrap();
    let key = syncropel_protocol::Keypair::generate();
    let did = key.did_key();
    let eight_days_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    // Signed for the very origin serving it: only its age is wrong.
    let server = ManifestServer::start(|origin| {
        syncropel_federation::manifest::sign(&key, &did, origin, eight_days_ago)
    });

    let found = discover_dns(
        looking.path(),
        vec![format!("v=spl1; did={did}; url={}", server.url)],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["did"], did.as_str());
    assert_eq!(found[0]["manifest_verified"], false, "{found:?}");
    assert!(
        found[0]["error"].as_str().unwrap().contains("expired"),
        "{found:?}"
    );
}

/// `spl discover --peer-url` refuses an expired manifest unless `--no-strict`, which waives its
/// age and nothing else: a manifest altered after signing is refused all the same.
#[test]
fn discover_takes_an_expired_manifest_only_with_no_strict() {
    let caller = tempfile::tempdir().unwrap();
    let key = syncropel_protocol::Keypair::generate();
    let did = key.did_key();
    let eight_days_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    let expired = ManifestServer::start(|origin| {
        syncropel_federation::manifest::sign(&key, &did, origin, eight_days_ago)
    });
    let refused = run(caller.path(), &["discover", "--peer-url", &expired.url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expired"));
    let found = json(run(
        caller.path(),
        &[
            "--json",
            "discover",
            "--peer-url",
            &expired.url,
            "--no-strict",
        ],
    ));
    assert_eq!(found["did"], did.as_str(), "{found}");
    assert_eq!(found["manifest_verified"], true, "{found}");

    let forged = ManifestServer::start(|origin| {
        let mut manifest = syncropel_federation::manifest::sign(&key, &did, origin, eight_days_ago);
        manifest["advertises"]["kinds"] = serde_json::json!(["music.catalog.track"]);
        manifest
    });
    let refused = run(
        caller.path(),
        &["discover", "--peer-url", &forged.url, "--no-strict"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
}

/// `spl --endpoint <url> --token <token> --json <args>` on `home`, which must succeed.
fn as_operator(home: &Path, url: &str, token: &str, args: &[&str]) -> serde_json::Value {
    json(
        spl(home)
            .args(["--endpoint", url, "--token", token, "--json"])
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn transitive_discovery_lists_what_the_paired_peer_introduces() {
    let (hub, x, y) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let dids: Vec<String> = [&hub, &x, &y]
        .iter()
        .map(|h| ok(run(h.path(), &["init"])))
        .collect();
    let tokens: Vec<String> = [&hub, &x, &y]
        .iter()
        .map(|h| bootstrap_admin(h.path()))
        .collect();
    let members = format!("{},{}", dids[1], dids[2]);
    let hub_steward = Steward::start(
        hub.path(),
        &["--introduce", "--auto-approve-did", &members, "--no-mdns"],
    );
    let x_steward = Steward::start(x.path(), &["--no-mdns"]);
    let y_steward = Steward::start(y.path(), &["--no-mdns"]);
    for (home, steward, token) in [(&x, &x_steward, &tokens[1]), (&y, &y_steward, &tokens[2])] {
        let pair = as_operator(
            home.path(),
            &steward.url,
            token,
            &["federation", "pair", &hub_steward.url],
        );
        assert_eq!(pair["state"], "active", "{pair}");
    }
    for did in [&dids[1], &dids[2]] {
        let marked = as_operator(
            hub.path(),
            &hub_steward.url,
            &tokens[0],
            &["federation", "introducible", did, "on"],
        );
        assert_eq!(marked["introducible"], true, "{marked}");
    }
    let pairs_before = as_operator(
        x.path(),
        &x_steward.url,
        &tokens[1],
        &["federation", "list"],
    );

    let answer = as_operator(
        x.path(),
        &x_steward.url,
        &tokens[1],
        &[
            "fleet",
            "sync",
            "peers",
            "discover",
            "--method",
            "transitive",
            "--via",
            &dids[0],
        ],
    );
    let found = answer["candidates"]["transitive"].as_array().unwrap();
    // Y only: the hub never introduces X to itself.
    assert_eq!(found.len(), 1, "{answer}");
    assert_eq!(found[0]["did"], dids[2].as_str());
    assert_eq!(found[0]["url"], y_steward.url.as_str());

    let pairs_after = as_operator(
        x.path(),
        &x_steward.url,
        &tokens[1],
        &["federation", "list"],
    );
    assert_eq!(pairs_before, pairs_after, "discovery changed the pairs");
}

/// `spl fleet sync peers discover --json <args>` on `home`, answering the `method` group.
fn discover(home: &Path, method: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let answer = json(run(
        home,
        &[
            &[
                "fleet", "sync", "peers", "discover", "--json", "--method", method,
            ][..],
            args,
        ]
        .concat(),
    ));
    answer["candidates"][method]
        .as_array()
        .unwrap_or_else(|| panic!("no {method} group: {answer}"))
        .clone()
}

/// The federation pairs of the steward of `home` at `url`, pending ones included.
fn pairs(home: &Path, url: &str, token: &str) -> serde_json::Value {
    as_operator(home, url, token, &["federation", "list"])["data"].clone()
}

#[test]
fn did_web_discovery_finds_the_steward_serving_the_domains_document() {
    let home = tempfile::tempdir().unwrap();
    let looking = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let token = bootstrap_admin(home.path());
    let reserved = ReservedPort::bind();
    let host = reserved.host();
    let upgraded = json(run(
        home.path(),
        &[
            "--json", "identity", "upgrade", "--method", "web", "--domain", &host,
        ],
    ));
    let did = upgraded["did"].as_str().unwrap();
    let steward = reserved.serve(home.path(), &[]);

    let found = discover(looking.path(), "did-web", &["--domain", &host]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["did"], did);
    assert_eq!(found[0]["url"], steward.url.as_str());
    assert_eq!(found[0]["manifest_verified"], true, "{found:?}");
    // `--did` names the same document.
    assert_eq!(discover(looking.path(), "did-web", &["--did", did]), found);

    assert_eq!(
        pairs(home.path(), &steward.url, &token),
        serde_json::json!([])
    );
    assert!(!looking.path().join("hub.db").exists());
}

#[test]
fn did_sync_discovery_lists_the_namespaces_peers_as_their_own_logs_say() {
    let directory = Directory::start();
    let home = tempfile::tempdir().unwrap();
    let looking = tempfile::tempdir().unwrap();
    ok(run(home.path(), &["init"]));
    let token = bootstrap_admin(home.path());
    let reserved = ReservedPort::bind();
    let url = format!("http://{}", reserved.host());
    let upgraded = upgrade_to_sync(
        home.path(),
        &directory.url,
        &["--namespace", "team-x", "--service-endpoint", &url],
    );
    let did = upgraded["did"].as_str().unwrap();
    let steward = reserved.serve(home.path(), &[&directory.url]);
    // Listed under the namespace too, but never served: it stays a candidate, unverified.
    let offline = tempfile::tempdir().unwrap();
    ok(run(offline.path(), &["init"]));
    let (_refusing, offline_addr) = refusing_address();
    let offline_url = format!("http://{offline_addr}");
    let offline_did = upgrade_to_sync(
        offline.path(),
        &directory.url,
        &["--namespace", "team-x", "--service-endpoint", &offline_url],
    )["did"]
        .clone();

    let found = discover(
        looking.path(),
        "did-sync",
        &["--namespace", "team-x", "--directory", &directory.url],
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0]["did"], did);
    assert_eq!(found[0]["url"], url.as_str());
    assert_eq!(found[0]["manifest_verified"], true, "{found:?}");
    assert_eq!(found[0]["directory"], directory.url.as_str());
    assert_eq!(found[1]["did"], offline_did);
    assert_eq!(found[1]["url"], offline_url.as_str());
    assert_eq!(found[1]["manifest_verified"], false);
    assert!(found[1]["error"].is_string(), "{found:?}");

    let nobody = discover(
        looking.path(),
        "did-sync",
        &["--namespace", "team-y", "--directory", &directory.url],
    );
    assert!(nobody.is_empty(), "{nobody:?}");

    assert_eq!(
        pairs(home.path(), &steward.url, &token),
        serde_json::json!([])
    );
    assert!(!looking.path().join("hub.db").exists());
}

#[test]
fn did_web_and_did_sync_need_their_flags() {
    assert_needs_flag("did-web", "--domain");
    assert_needs_flag("did-sync", "--namespace");
}

/// `spl discover --peer-url URL` verifies one steward's signed manifest (exit 0, its DID), and
/// fails for a kind it does not advertise or a URL where no steward answers.
#[test]
fn discover_verifies_one_steward_by_url() {
    let home = tempfile::tempdir().unwrap();
    let did = ok(run(home.path(), &["init"]));
    let mut steward = Steward::start(home.path(), &[]);
    let caller = tempfile::tempdir().unwrap();
    let found = json(run(
        caller.path(),
        &["--json", "discover", "--peer-url", &steward.url],
    ));
    assert_eq!(found["did"], did.as_str(), "{found}");
    assert_eq!(found["manifest_verified"], true);
    let text = ok(run(
        caller.path(),
        &["discover", "--peer-url", &steward.url],
    ));
    assert!(text.contains("manifest verified"), "{text}");

    let unadvertised = run(
        caller.path(),
        &[
            "discover",
            "--peer-url",
            &steward.url,
            "--kind",
            "music.catalog.track",
        ],
    );
    assert!(!unadvertised.status.success());
    assert!(String::from_utf8_lossy(&unadvertised.stderr).contains("does not advertise"));
    let (_held, refusing) = refusing_address();
    let nobody = run(
        caller.path(),
        &["discover", "--peer-url", &format!("http://{refusing}")],
    );
    assert!(!nobody.status.success());
    ok(run(home.path(), &["stop"]));
    steward.wait_for_exit();
}

#[test]
fn static_discovery_checks_each_peer_the_operator_listed() {
    let home = tempfile::tempdir().unwrap();
    let did = ok(run(home.path(), &["init"]));
    let steward = Steward::start(home.path(), &[]);
    let looking = tempfile::tempdir().unwrap();
    let (_held, refusing) = refusing_address();
    let stranger = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let peers = format!(
        "[[peer]]\nurl = \"{url}/\"\n\n[[peer]]\nurl = \"{url}\"\ndid = \"{stranger}\"\n\n\
         [[peer]]\nurl = \"http://{refusing}\"\n",
        url = steward.url
    );
    std::fs::write(looking.path().join("peers.toml"), peers).unwrap();

    let found = discover(looking.path(), "static", &[]);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0]["did"], did.as_str());
    assert_eq!(found[0]["url"], steward.url.as_str());
    assert_eq!(found[0]["manifest_verified"], true, "{found:?}");
    // Listed for another DID: the manifest there does not make it so.
    assert_eq!(found[1]["did"], stranger);
    assert_eq!(found[1]["manifest_verified"], false);
    assert!(found[1]["error"].as_str().unwrap().contains(did.as_str()));
    assert_eq!(found[2]["manifest_verified"], false, "{found:?}");

    // Without --method, the peers file in the home is read along with the LAN.
    let all = json(run(
        looking.path(),
        &[
            "fleet",
            "sync",
            "peers",
            "discover",
            "--json",
            "--timeout-ms",
            "100",
        ],
    ));
    assert!(all["candidates"]["static"].is_array(), "{all}");

    // Another file by flag; a malformed one is an error naming it.
    let other = looking.path().join("other.toml");
    std::fs::write(&other, "[[peer]]\nadress = \"typo\"\n").unwrap();
    let refused = run(
        looking.path(),
        &[
            "fleet",
            "sync",
            "peers",
            "discover",
            "--method",
            "static",
            "--peers-file",
            other.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("other.toml"));
}
