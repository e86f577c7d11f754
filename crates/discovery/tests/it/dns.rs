//! `_syncropel` TXT lookups against a small DNS server on 127.0.0.1.

use syncropel_discovery::testing::{DnsServer, Zone};
use syncropel_discovery::{DnsCandidate, TxtResolver};

#[tokio::test]
async fn lookup_returns_every_valid_record_and_skips_the_rest() {
    let server = DnsServer::start(Zone::default().txt(
        "alice.test",
        [
            vec!["v=spl1; did=did:web:alice.test; url=https://spl.alice.test; m=/.well-known/syncropel"],
            // A long record split into two strings is one record once joined.
            vec!["v=spl1; did=did:web:alice.test; url=https://backup", ".alice.test"],
            vec!["v=spf1 include:_spf.alice.test ~all"],
            vec!["v=spl1; url=https://no-did.alice.test"],
        ],
    ));
    let resolver = TxtResolver::with_nameserver(server.addr());

    let mut found = resolver.lookup("Alice.test.").await.unwrap();
    found.sort_by(|a, b| a.url.cmp(&b.url));
    assert_eq!(
        found,
        vec![
            DnsCandidate {
                did: "did:web:alice.test".into(),
                url: "https://backup.alice.test".into(),
                manifest_url: "https://backup.alice.test/.well-known/syncropel".into(),
            },
            DnsCandidate {
                did: "did:web:alice.test".into(),
                url: "https://spl.alice.test".into(),
                manifest_url: "https://spl.alice.test/.well-known/syncropel".into(),
            },
        ]
    );
}

#[tokio::test]
async fn a_missing_record_is_an_empty_list() {
    let server = DnsServer::start(Zone::default());
    let resolver = TxtResolver::with_nameserver(server.addr());
    assert!(resolver.lookup("nobody.test").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_nameserver_is_an_error() {
    let server = DnsServer::start(Zone::default().servfail("broken.test"));
    let resolver = TxtResolver::with_nameserver(server.addr());
    assert!(resolver.lookup("broken.test").await.is_err());
}
