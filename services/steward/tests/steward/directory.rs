//! A local steward serving the did:sync directory (`spl serve --directory-enabled`): the
//! directory's limit on geneses per client address holds behind the steward's listener, which
//! hands each request its peer address as the directory's own server does.

use std::collections::BTreeMap;

use syncropel_directory::Rules;
use syncropel_protocol::did_sync::{sign_operation, OpType, Operation};
use syncropel_protocol::Keypair;
use syncropel_testkit::{error_code, send, Options, TestSteward};

/// A genesis of a DID of its own for each `n`.
fn genesis(n: u32) -> serde_json::Value {
    let key = |role: u8| {
        let mut seed = [role; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        Keypair::from_seed(&seed)
    };
    // Rotation keys never sign records, so the DID has one of each.
    let (rotation, record) = (key(1), key(2));
    let op = Operation {
        kind: OpType::Genesis,
        prev: None,
        signing_keys: BTreeMap::from([(
            "key-1".to_owned(),
            record.did_key().trim_start_matches("did:key:").to_owned(),
        )]),
        rotation_keys: vec![rotation.did_key()],
        handles: Vec::new(),
        namespaces: Vec::new(),
        services: BTreeMap::new(),
        compromised: Vec::new(),
        created_at: "2026-05-01T12:00:00Z".to_owned(),
        sig: None,
    };
    sign_operation(&op, &rotation)
}

#[tokio::test]
async fn the_mounted_directory_limits_geneses_per_address() {
    let steward = TestSteward::start_with(Options {
        directory: true,
        ..Options::default()
    })
    .await;
    let url = format!("{}/directory/genesis", steward.url);
    let limit = Rules::default().geneses_per_address_per_hour;
    for n in 0..limit {
        let (status, body) = send(steward.http.post(&url).json(&genesis(n))).await;
        assert_eq!(status, 201, "genesis {n}: {body}");
    }
    let refused = steward
        .http
        .post(&url)
        .json(&genesis(limit))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    let export = steward
        .http
        .get(format!("{}/directory/export", steward.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        export.lines().count(),
        limit as usize,
        "the refused DID is not stored"
    );
}
