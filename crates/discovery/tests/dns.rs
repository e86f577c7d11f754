//! `_syncropel` TXT lookups against a small DNS server on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use syncropel_discovery::{DnsCandidate, TxtResolver};

/// A zone entry under this name makes the server answer SERVFAIL.
const FAIL: &str = "_syncropel.broken.test.";

/// Answers TXT queries from `zone` (name → records, each a list of character-strings);
/// any other name is NXDOMAIN.
async fn dns_server(zone: HashMap<&'static str, Vec<Vec<&'static str>>>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            for q in query.queries() {
                reply.add_query(q.clone());
                let name = q.name().to_ascii().to_ascii_lowercase();
                match zone.get(name.as_str()) {
                    Some(_) if name == FAIL => {
                        reply.set_response_code(ResponseCode::ServFail);
                    }
                    Some(records) if q.query_type() == RecordType::TXT => {
                        for strings in records {
                            let txt = TXT::new(strings.iter().map(|s| s.to_string()).collect());
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                60,
                                RData::TXT(txt),
                            ));
                        }
                    }
                    Some(_) => {}
                    None => {
                        reply.set_response_code(ResponseCode::NXDomain);
                    }
                }
            }
            let _ = socket.send_to(&reply.to_bytes().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn lookup_returns_every_valid_record_and_skips_the_rest() {
    let mut zone = HashMap::new();
    zone.insert(
        "_syncropel.alice.test.",
        vec![
            vec!["v=spl1; did=did:web:alice.test; url=https://spl.alice.test; m=/.well-known/syncropel"],
            // A long record split into two strings is one record once joined.
            vec!["v=spl1; did=did:web:alice.test; url=https://backup", ".alice.test"],
            vec!["v=spf1 include:_spf.alice.test ~all"],
            vec!["v=spl1; url=https://no-did.alice.test"],
        ],
    );
    let resolver = TxtResolver::with_nameserver(dns_server(zone).await);

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
    let resolver = TxtResolver::with_nameserver(dns_server(HashMap::new()).await);
    assert!(resolver.lookup("nobody.test").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_nameserver_is_an_error() {
    let mut zone = HashMap::new();
    zone.insert(FAIL, vec![]);
    let resolver = TxtResolver::with_nameserver(dns_server(zone).await);
    assert!(resolver.lookup("broken.test").await.is_err());
}
