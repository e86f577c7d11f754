//! Rate limits, and input the directory refuses without changing anything.

use reqwest::StatusCode;
use serde_json::json;
use syncropel_protocol::did_sync::{self, sign_operation, OpType};
use syncropel_protocol::ErrorCode;

use syncropel_directory::{Rules, Store};

use crate::ident::{with_endpoint, Ident};
use crate::server::{assert_error, Server};
use crate::{HOUR, T0};

pub async fn rate_limit(db: String) {
    let s = Server::start(&db).await;
    let (alice, mut head, hash) = s.create_alice().await;
    let path = format!("/directory/update/{hash}");
    let mut n = 0;
    let mut next = |head: &str| {
        n += 1;
        let op = with_endpoint(alice.update(head), &format!("https://n{n}.example"));
        sign_operation(&op, &alice.host)
    };
    // Genesis plus nine updates fill the hour.
    for _ in 0..9 {
        head = s.update(&hash, &next(&head)).await;
    }
    s.clock.advance(600);
    let response = s
        .http
        .post(format!("{}{path}", s.base))
        .body(next(&head).to_string())
        .send()
        .await
        .unwrap();
    let retry: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, HOUR - 600);
    assert_error(&Server::answer(response).await, ErrorCode::RateLimited);
    assert_eq!(s.operations(&hash).await.len(), 10);

    // 30 a day: two more hours of ten each, then the day is full.
    for _ in 0..2 {
        s.clock.advance(HOUR);
        for _ in 0..10 {
            head = s.update(&hash, &next(&head)).await;
        }
    }
    s.clock.advance(HOUR);
    assert_error(&s.post(&path, &next(&head)).await, ErrorCode::RateLimited);
    s.clock.set(T0 + 24 * HOUR);
    s.update(&hash, &next(&head)).await;
}

/// A lower-priority key filling the quota cannot hold off the owner's recovery fork.
pub async fn rate_limit_spares_recovery(db: String) {
    let s = Server::start(&db).await;
    let (alice, g, hash) = s.create_alice().await;
    let path = format!("/directory/update/{hash}");
    let mut head = g.clone();
    let mut hijacks = Vec::new();
    for n in 0..9 {
        let op = with_endpoint(alice.update(&head), &format!("https://m{n}.example"));
        head = s.update(&hash, &sign_operation(&op, &alice.host)).await;
        hijacks.push(head.clone());
    }
    let op = with_endpoint(alice.update(&head), "https://m9.example");
    let answer = s.post(&path, &sign_operation(&op, &alice.host)).await;
    assert_error(&answer, ErrorCode::RateLimited);

    s.clock.advance(600);
    let (status, body) = s.post(&path, &alice.recovery_fork(&g)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nullified"], json!(hijacks));
    let recovered = body["cid"].as_str().unwrap().to_owned();
    let doc = s.document(&hash).await;
    assert_eq!(
        doc["service"][0]["serviceEndpoint"],
        "https://recovered.example"
    );

    // A plain update by the same key is still held to the quota.
    let next = with_endpoint(alice.update(&recovered), "https://next.example");
    let answer = s.post(&path, &sign_operation(&next, &alice.user)).await;
    assert_error(&answer, ErrorCode::RateLimited);
    assert_eq!(s.operations(&hash).await.len(), 11);
    s.assert_replays(&hash).await;
}

pub async fn bad_input_changes_nothing(db: String) {
    let s = Server::start(&db).await;
    let genesis = Ident::new(1, "alice").genesis();
    let text = genesis.to_string();

    let malformed = s.post_bytes("/directory/genesis", "{\"type\":").await;
    assert_error(&malformed, ErrorCode::InvalidJson);
    let duplicate = text.replacen('{', "{\"type\":\"genesis\",", 1);
    assert_error(
        &s.post_bytes("/directory/genesis", duplicate).await,
        ErrorCode::InvalidJson,
    );
    let oversize = format!("{text:<20000}");
    assert_error(
        &s.post_bytes("/directory/genesis", oversize).await,
        ErrorCode::PayloadTooLarge,
    );
    let mut big = Ident::new(1, "alice").op(OpType::Genesis, None);
    big.services.get_mut("syncropel").unwrap().endpoint =
        format!("https://{}.example", "a".repeat(8000));
    let big = sign_operation(&big, &Ident::new(1, "alice").host);
    assert_error(
        &s.post("/directory/genesis", &big).await,
        ErrorCode::OpTooLarge,
    );
    let mut wrong = genesis.clone();
    wrong["handles"] = json!(5);
    assert_error(
        &s.post("/directory/genesis", &wrong).await,
        ErrorCode::ValidationError,
    );
    assert_error(
        &s.post("/directory/genesis", &json!([genesis])).await,
        ErrorCode::ValidationError,
    );
    let mut unknown_member = genesis.clone();
    unknown_member["extra"] = json!("x");
    assert_error(
        &s.post("/directory/genesis", &unknown_member).await,
        ErrorCode::ValidationError,
    );

    let unknown = "a".repeat(24);
    for path in [
        format!("/directory/{unknown}/did.json"),
        format!("/directory/{unknown}/operations"),
        format!("/directory/resolve?did=did:sync:{unknown}"),
        "/directory/not-a-hash/did.json".to_owned(),
        "/nowhere".to_owned(),
    ] {
        assert_error(&s.get(&path).await, ErrorCode::NotFound);
    }
    let update = sign_operation(
        &Ident::new(1, "alice").update(&did_sync::cid(&genesis)),
        &Ident::new(1, "alice").host,
    );
    assert_error(
        &s.post(&format!("/directory/update/{unknown}"), &update)
            .await,
        ErrorCode::NotFound,
    );
    assert!(s.export_all().await.is_empty());
    assert_error(&s.get("/directory/handle/alice").await, ErrorCode::NotFound);
}

/// Requests axum's extractors cannot parse are answered in the error envelope too.
pub async fn malformed_requests(db: String) {
    let s = Server::start(&db).await;
    for path in [
        "/directory/export?after=abc",
        "/directory/export?count=",
        "/directory/resolve",
        "/directory/resolve?did=%ZZ",
        "/directory/resolve?did=%FF",
        "/directory/resolve?did",
        "/directory/%FF/did.json",
        "/directory/%FF/operations",
        "/directory/handle/%C3%28",
        "/directory/namespace/%FF/peers",
    ] {
        let answer = s.get(path).await;
        assert_error(&answer, ErrorCode::ValidationError);
    }
    let update = sign_operation(
        &Ident::new(1, "alice").update(&"0".repeat(64)),
        &Ident::new(1, "alice").host,
    );
    for path in ["/directory/update/%FF", "/directory/revoke/%FF"] {
        assert_error(&s.post(path, &update).await, ErrorCode::ValidationError);
    }
}

/// Geneses need no prior identity, so each client address creates a bounded number an hour:
/// one machine cannot mint DIDs and take handles in bulk.
pub async fn geneses_per_address(db: String) {
    let rules = Rules {
        geneses_per_address_per_hour: 3,
        ..Rules::default()
    };
    let s = Server::with_rules(Store::open(&db).await.unwrap(), rules).await;
    for seed in 1..=3 {
        s.create(&Ident::new(seed, &format!("squatter{seed}")).genesis())
            .await;
    }
    let response = s
        .http
        .post(format!("{}/directory/genesis", s.base))
        .body(Ident::new(4, "squatter4").genesis().to_string())
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    assert_error(&Server::answer(response).await, ErrorCode::RateLimited);
    assert_error(
        &s.get("/directory/handle/squatter4").await,
        ErrorCode::NotFound,
    );
}
