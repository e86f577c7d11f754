//! Replicas over one database: shared writes, watches and revocations, a replica killed
//! mid-burst, and a rotation of the key-encryption key.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use syncropel_client::api::MintToken;
use syncropel_testkit::hosted::{
    client_with_host, new_tenant_at, tenant_request, Config, Process, Replica, BASE_DOMAIN, KEK_HEX,
};
use syncropel_testkit::{all_records, envelope, error_code, with_test_database};

use crate::STEWARD_BIN;

#[tokio::test]
async fn replicas_share_writes_watches_and_revocations() {
    with_test_database(|url| async move {
        let a = Replica::start(&url, Config::default()).await;
        let b = Replica::start(&url, Config::default()).await;
        let admin = a.new_tenant("acct", "shared").await;

        // A token minted through A is revoked through B: A refuses it on the very next request.
        let minted = a
            .tenant_client("shared", &admin)
            .mint_token("sa-bootstrap-env", &MintToken::default())
            .await
            .unwrap();
        assert_eq!(minted.status(), 201, "{}", minted.json());
        let extra = minted.token.as_str();
        let (status, _) = a.tenant_get("shared", extra, "/v1/records").await;
        assert_eq!(status, 200);
        let revoked = b
            .tenant_client("shared", &admin)
            .revoke_token(&minted.token_id)
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200, "{}", revoked.json());
        let (status, refused) = a.tenant_get("shared", extra, "/v1/records").await;
        assert_eq!((status, error_code(&refused)), (401, "AUTH_INVALID"));

        // A watch through B sees writes made through A, in order, with no gaps.
        let response = b
            .tenant_request("shared", Method::GET, "/v1/threads/th_live/watch")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let mut written = Vec::new();
        let writer = a.tenant_client("shared", &admin);
        for clock in 1..=20 {
            let emitted = writer
                .emit::<Value>(&envelope("th_live", clock, json!({})))
                .await
                .unwrap();
            assert!(emitted.created);
            written.push(emitted.record["id"].as_str().unwrap().to_string());
        }
        let mut seen = String::new();
        while !seen.contains(written.last().unwrap().as_str()) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("writes through A reach B's watcher")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        let positions: Vec<usize> = written
            .iter()
            .map(|id| seen.find(id.as_str()).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "announced in order"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn killing_a_replica_mid_burst_loses_no_acknowledged_record() {
    with_test_database(|url| async move {
        let mut writer = Process::start(STEWARD_BIN, &url).await;
        let reader = Process::start(STEWARD_BIN, &url).await;
        let http = reqwest::Client::new();
        let config = Config::default();
        let request = |base: &str, method: Method, path: &str| {
            tenant_request(&http, base, &config, "burst", method, path)
        };
        let token = new_tenant_at(&writer.url, "acct", "burst").await;

        // A watch through the other process sees the burst as it happens.
        let watch = request(&reader.url, Method::GET, "/v1/threads/th_burst_0/watch")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(watch.status(), 200);
        let mut watch = watch.bytes_stream();

        // Eight writers post through one replica until it dies, keeping every acknowledged id.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut writers = Vec::new();
        for w in 0..8 {
            let post = request(&writer.url, Method::POST, "/v1/records");
            let token = token.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for clock in 1.. {
                    let post = post.try_clone().unwrap();
                    let body = envelope(&format!("th_burst_{w}"), clock, json!({"w": w}));
                    match post.bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            let record: Value = r.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(record["id"].as_str().unwrap().into());
                        }
                        Ok(r) => {
                            return format!(
                                "{}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            )
                        }
                        Err(e) => return e.to_string(),
                    }
                }
                unreachable!()
            }));
        }
        while acked.lock().unwrap().len() < 300 && !writers.iter().all(|w| w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            acked.lock().unwrap().len() >= 300,
            "the writers stopped early: {:?}",
            futures_util::future::join_all(writers).await
        );
        writer.kill();
        for w in writers {
            let stopped = w.await.unwrap();
            assert!(!stopped.is_empty());
        }
        let acked = acked.lock().unwrap().clone();

        // Every acknowledged record is readable through the surviving replica, exactly once.
        let survivor = client_with_host(&reader.url, &format!("burst.{BASE_DOMAIN}"), &token);
        let mut stored = Vec::new();
        let mut stored_threads = std::collections::HashMap::new();
        let listing = || request(&reader.url, Method::GET, "/v1/records").bearer_auth(&token);
        for r in all_records(listing, None).await {
            stored.push(r["id"].as_str().unwrap().to_string());
            stored_threads.insert(
                r["id"].as_str().unwrap().to_string(),
                r["thread"].as_str().unwrap().to_string(),
            );
        }
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "no record is stored twice");
        for id in &acked {
            assert!(unique.contains(id), "acknowledged record {id} is missing");
        }
        // Every acknowledged record of thread 0 reached the watcher on the other process.
        let thread_0: Vec<&String> = acked
            .iter()
            .filter(|id| stored_threads.get(*id).map(String::as_str) == Some("th_burst_0"))
            .collect();
        assert!(!thread_0.is_empty());
        let mut seen = String::new();
        while !thread_0.iter().all(|id| seen.contains(id.as_str())) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("the burst reaches the other process's watcher")
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }

        // The survivor still takes writes.
        let after = survivor
            .emit::<Value>(&envelope("th_after", 1, json!({})))
            .await
            .unwrap();
        assert!(after.created);
        drop(reader);
    })
    .await;
}

#[tokio::test]
async fn the_key_encryption_key_rotates_without_losing_a_tenant() {
    with_test_database(|url| async move {
        let old = Replica::start(&url, Config::default()).await;
        let token = old.new_tenant("acct", "rotating").await;
        let before = old.emit("rotating", &token, "th_k", 1).await;

        // Replicas move to the new key with the old one as previous; then every key is re-sealed.
        let new_kek = "7a".repeat(32);
        let rotating = Replica::start(
            &url,
            Config {
                kek: new_kek.clone(),
                previous_kek: Some(KEK_HEX.into()),
                ..Config::default()
            },
        )
        .await;
        // The previous key still opens the tenant's key.
        rotating.emit("rotating", &token, "th_k", 2).await;
        let kek = syncropel_steward::hosted::kek::Kek::parse(&new_kek)
            .unwrap()
            .with_previous(syncropel_steward::hosted::kek::Kek::parse(KEK_HEX).unwrap());
        let platform = rotating.platform().store();
        assert_eq!(
            syncropel_steward::hosted::rotate_kek(platform, &kek)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            syncropel_steward::hosted::rotate_kek(platform, &kek)
                .await
                .unwrap(),
            0
        );

        // A replica with only the new key serves the tenant, signing with the same identity.
        let new_only = Replica::start(
            &url,
            Config {
                kek: new_kek,
                ..Config::default()
            },
        )
        .await;
        let after = new_only.emit("rotating", &token, "th_k", 3).await;
        assert_eq!(after["signer"], before["signer"]);
        // One with only the old key no longer opens it (and answers in the error envelope).
        old.platform().forget("rotating");
        let (status, refused) = old.write("rotating", &token, "th_k", 4).await;
        assert_eq!((status, error_code(&refused)), (500, "INTERNAL_ERROR"));
        for replica in [old, rotating, new_only] {
            replica.stop().await;
        }
    })
    .await;
}
