//! Who may call the relay: a fresh call signed with a current key of the caller's DID, its nonce
//! new on every replica (kept in Postgres), from a DID the relay serves.

use std::collections::BTreeSet;

use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_protocol::didsig::{self, Signed};
use syncropel_protocol::Keypair;
use syncropel_relay::auth::Authenticator;
use syncropel_relay::store::{Limits, RelayStore};
use syncropel_relay::RelayError;
use syncropel_store::testing::with_test_database;

const NOW_MS: i64 = 1_800_000_000_000;

fn authenticator(allow: &[&str]) -> Authenticator {
    let client = PeerClient::new(PeerClientOptions::default());
    let resolver = DidResolver::new(client, Vec::new());
    Authenticator::new(
        resolver,
        allow.iter().map(|d| d.to_string()).collect::<BTreeSet<_>>(),
    )
}

fn request(body: &[u8]) -> Signed<'_> {
    Signed {
        method: "POST",
        target: "relay.test/v1/relay/queues/rq_1/deposit",
        body,
    }
}

fn signed(key: &Keypair, did: &str, body: &[u8], ts_ms: i64) -> String {
    didsig::sign(
        key,
        did,
        &format!("{did}#key-1"),
        request(body),
        ts_ms,
        &didsig::nonce(),
    )
}

#[tokio::test]
async fn a_fresh_call_signed_by_the_callers_key_passes_once() {
    with_test_database(|url| async move {
        let store = RelayStore::open(&url, Limits::default()).await.unwrap();
        let auth = authenticator(&[]);
        let key = Keypair::generate();
        let did = key.did_key();
        let header = signed(&key, &did, b"{}", NOW_MS);
        let caller = auth
            .caller(&store, Some(&header), request(b"{}"), NOW_MS + 5_000)
            .await
            .unwrap();
        assert_eq!(
            (caller.did.as_str(), caller.key.as_str()),
            (did.as_str(), did.as_str())
        );
        let replayed = auth
            .caller(&store, Some(&header), request(b"{}"), NOW_MS + 6_000)
            .await
            .unwrap_err();
        assert!(matches!(replayed, RelayError::AuthInvalid(_)), "{replayed}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn stale_unsigned_altered_foreign_and_unresolvable_calls_are_refused() {
    with_test_database(|url| async move {
        let store = RelayStore::open(&url, Limits::default()).await.unwrap();
        let key = Keypair::generate();
        let did = key.did_key();
        let auth = authenticator(&[]);
        let refused = |header: Option<String>, body: &'static [u8], now: i64| {
            let (auth, store) = (&auth, &store);
            async move {
                auth.caller(store, header.as_deref(), request(body), now)
                    .await
                    .unwrap_err()
            }
        };
        let e = refused(None, b"{}", NOW_MS).await;
        assert!(matches!(e, RelayError::AuthRequired), "{e}");
        let e = refused(
            Some(signed(&key, &did, b"{}", NOW_MS)),
            b"{}",
            NOW_MS + 61_000,
        )
        .await;
        assert!(matches!(e, RelayError::Freshness), "{e}");
        let e = refused(
            Some(signed(&key, &did, b"{}", NOW_MS)),
            b"{\"x\":1}",
            NOW_MS,
        )
        .await;
        assert!(matches!(e, RelayError::AuthInvalid(_)), "{e}");
        // Signed by another key than the DID's own.
        let other = Keypair::generate();
        let e = refused(Some(signed(&other, &did, b"{}", NOW_MS)), b"{}", NOW_MS).await;
        assert!(matches!(e, RelayError::AuthInvalid(_)), "{e}");
        let e = refused(Some("Bearer x".into()), b"{}", NOW_MS).await;
        assert!(matches!(e, RelayError::AuthInvalid(_)), "{e}");
        // A document DID whose host does not answer: not an authentication failure.
        let web = "did:web:127.0.0.1%3A9";
        let e = refused(Some(signed(&key, web, b"{}", NOW_MS)), b"{}", NOW_MS).await;
        assert!(matches!(e, RelayError::DidUnresolved(_)), "{e}");

        // A private relay serves its DIDs only.
        let private = authenticator(&["did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"]);
        let header = signed(&key, &did, b"{}", NOW_MS);
        let e = private
            .caller(&store, Some(&header), request(b"{}"), NOW_MS)
            .await
            .unwrap_err();
        assert!(matches!(e, RelayError::Forbidden(_)), "{e}");
        store.close().await;
    })
    .await;
}
