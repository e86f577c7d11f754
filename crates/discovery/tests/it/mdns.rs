//! mDNS on the loopback interface: separate daemons, as two stewards on one host would run.
//! Each test uses its own port so tests running side by side never see each other.

use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use syncropel_discovery::{
    discover, Announcement, Announcer, Browser, MdnsConfig, MdnsInterfaces, MdnsPeer, SERVICE_TYPE,
};

fn loopback(port: u16) -> MdnsConfig {
    MdnsConfig {
        interfaces: MdnsInterfaces::Loopback,
        port,
    }
}

fn announcement(did: &str, handle: Option<&str>) -> Announcement {
    Announcement {
        did: did.to_string(),
        endpoint: "http://127.0.0.1:7070".to_string(),
        namespace: None,
        handle: handle.map(str::to_string),
        capabilities: vec!["sync".to_string()],
        manifest_fingerprint: None,
    }
}

/// Polls the roster until `pred` holds; returns how long that took.
fn wait_for(browser: &Browser, within: Duration, pred: impl Fn(&[MdnsPeer]) -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if pred(&browser.peers()) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "roster never matched within {within:?}: {:?}",
        browser.peers()
    );
}

fn has(peers: &[MdnsPeer], did: &str) -> bool {
    peers.iter().any(|p| p.did == did)
}

/// The DIDs on the roster.
fn roster(browser: &Browser) -> Vec<String> {
    browser.peers().into_iter().map(|p| p.did).collect()
}

#[test]
fn two_daemons_on_loopback_find_each_other() {
    let config = loopback(25_361);
    let (a_did, b_did) = ("did:key:z6MkAlphaAlphaAlpha", "did:key:z6MkBravoBravoBravo");
    let a_browser = Browser::start(&config, Some(a_did)).unwrap();
    let b_browser = Browser::start(&config, Some(b_did)).unwrap();

    let announced = Instant::now();
    let _a = Announcer::start(&config, &announcement(a_did, Some("alpha"))).unwrap();
    let _b = Announcer::start(&config, &announcement(b_did, None)).unwrap();

    let b_saw_a = wait_for(&b_browser, Duration::from_secs(10), |p| has(p, a_did));
    wait_for(&a_browser, Duration::from_secs(10), |p| has(p, b_did));
    println!("announce -> roster entry: {} ms", b_saw_a.as_millis());
    println!(
        "announce -> both rosters: {} ms",
        announced.elapsed().as_millis()
    );

    // Each roster holds the other steward once and never itself.
    assert_eq!(roster(&b_browser), [a_did]);
    assert_eq!(roster(&a_browser), [b_did]);
}

#[test]
fn stopped_or_never_started_announcer_is_not_listed() {
    let config = loopback(25_362);
    let (a_did, c_did) = ("did:key:z6MkAnnouncedOne", "did:key:z6MkNeverAnnounced");
    let browser = Browser::start(&config, None).unwrap();
    let a = Announcer::start(&config, &announcement(a_did, None)).unwrap();
    wait_for(&browser, Duration::from_secs(10), |p| has(p, a_did));
    assert!(!has(&browser.peers(), c_did));

    // The goodbye packets sent on drop remove the entry well before the TTL runs out.
    drop(a);
    let gone = wait_for(&browser, Duration::from_secs(10), |p| !has(p, a_did));
    println!("stop -> roster entry removed: {} ms", gone.as_millis());
    assert!(discover(&config, Duration::from_millis(600))
        .unwrap()
        .is_empty());
}

#[test]
fn txt_fields_round_trip() {
    let config = loopback(25_363);
    let sent = Announcement {
        did: "did:key:z6MkRoundTripRoundTrip".to_string(),
        endpoint: "http://127.0.0.1:9431".to_string(),
        namespace: Some("acme/research".to_string()),
        handle: Some("alice".to_string()),
        capabilities: vec!["sync".into(), "handshake".into(), "watch".into()],
        manifest_fingerprint: Some(syncropel_discovery::manifest_fingerprint(b"{\"m\":1}")),
    };
    let _a = Announcer::start(&config, &sent).unwrap();
    // Past probing and the initial announcements, which the responder's once-a-second rate
    // limit would otherwise hold our query's answer behind.
    std::thread::sleep(Duration::from_millis(3000));

    // Long enough for a second query should the responder's rate limit hold back the first
    // answer: this checks the fields, `bench discovery` measures the latency.
    let peers = discover(&config, Duration::from_millis(2500)).unwrap();
    let [got] = peers.as_slice() else {
        panic!("expected one peer, got {peers:?}");
    };
    assert_eq!(got.did, sent.did);
    assert_eq!(got.endpoint, sent.endpoint);
    assert_eq!(got.namespace, sent.namespace);
    assert_eq!(got.handle, sent.handle);
    assert_eq!(got.capabilities, sent.capabilities);
    assert_eq!(got.manifest_fingerprint, sent.manifest_fingerprint);
    assert!(!got.manifest_verified);
    assert!(syncropel_protocol::unix_from_rfc3339(&got.last_seen).is_some());
}

#[test]
fn garbage_txt_is_ignored() {
    let config = loopback(25_365);
    let raw = ServiceDaemon::new_with_port(config.port).unwrap();
    raw.disable_interface(IfKind::All).unwrap();
    raw.enable_interface(IfKind::LoopbackV4).unwrap();
    let garbage: [(&str, &[(&str, &str)]); 3] = [
        ("no-did", &[("v", "1"), ("endpoint", "http://127.0.0.1:1")]),
        (
            "bad-endpoint",
            &[
                ("v", "1"),
                ("did", "did:key:z6MkBadEndpoint"),
                ("endpoint", "not a url"),
            ],
        ),
        (
            "wrong-version",
            &[
                ("v", "9"),
                ("did", "did:key:z6MkWrongVersion"),
                ("endpoint", "http://127.0.0.1:1"),
            ],
        ),
    ];
    for (name, txt) in garbage {
        let info = ServiceInfo::new(SERVICE_TYPE, name, &format!("{name}.local."), (), 1, txt)
            .unwrap()
            .enable_addr_auto();
        raw.register(info).unwrap();
    }
    let good = "did:key:z6MkGoodNeighbour";
    let _a = Announcer::start(&config, &announcement(good, None)).unwrap();

    let browser = Browser::start(&config, None).unwrap();
    wait_for(&browser, Duration::from_secs(10), |p| has(p, good));
    std::thread::sleep(Duration::from_millis(500)); // give the garbage every chance to arrive
    assert_eq!(roster(&browser), [good]);
    let _ = raw.shutdown();
}

#[test]
fn a_bad_announcement_is_an_error_not_a_panic() {
    let config = loopback(25_366);
    let mut bad = announcement("alice", None);
    assert!(Announcer::start(&config, &bad).is_err());
    bad.did = "did:key:z6MkFine".into();
    bad.endpoint = "127.0.0.1:80".into();
    assert!(Announcer::start(&config, &bad).is_err());
}
