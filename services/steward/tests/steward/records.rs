//! The records API over HTTP against a real steward (SQLite file, port 0).

use serde_json::{json, Value};
use syncropel_client::api::{CreateRecords, HealthReport};
use syncropel_client::ListParams;
use syncropel_steward::state::Limits;
use syncropel_testkit::{envelope, error_code, Node, Options, TestSteward};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crates/protocol/tests/vectors/records.json"
));

/// A steward with the default options and an admin.
async fn node() -> Node {
    Node::start(Options::default()).await
}

#[tokio::test]
async fn every_vector_gets_the_sdk_id_and_a_verifiable_signature() {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    // Some vectors share (thread, actor, clock) on purpose (NFC vs NFD), so each gets its own steward.
    for vector in vectors["records"].as_array().unwrap() {
        let node = node().await;
        let name = vector["name"].as_str().unwrap();
        // arbitrary_precision keeps every number literal as written in the file.
        let emitted = node.client.emit::<Value>(&vector["input"]).await.unwrap();
        let record = emitted.record;
        assert!(emitted.created, "{name}: {record}");
        assert_eq!(record["id"], vector["record_id_7"], "{name}");
        assert_eq!(record["object"], "record");
        assert!(record["sequence"].as_i64().unwrap() >= 1, "{name}");

        // The signature covers the 7-field canonical JSON and verifies against the signer.
        let canonical = vector["canonical_json_7"].as_str().unwrap();
        let signer = record["signer"].as_str().unwrap();
        syncropel_protocol::verify_signature(
            signer,
            canonical.as_bytes(),
            record["sig"].as_str().unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(signer, &*node.steward.tenant.identity.did);

        // The stored record recomputes to its id.
        let id = record["id"].as_str().unwrap();
        let fetched = node.record(id).await.expect("the record is stored (200)");
        let reparsed =
            syncropel_protocol::Envelope::parse(fetched.to_string().as_bytes(), 128).unwrap();
        assert_eq!(
            syncropel_protocol::record_id(&reparsed.canonical_json()),
            id,
            "{name}"
        );

        // An identical re-POST is a no-op answering the stored record.
        let replay = node.client.emit::<Value>(&vector["input"]).await.unwrap();
        assert!(!replay.created, "{name}");
        assert_eq!(replay.record, fetched);
        assert_eq!(node.steward.record_count(&node.token).await, 1, "{name}");
    }
}

#[tokio::test]
async fn duplicate_clock_is_refused_and_writes_nothing() {
    let node = node().await;
    node.write(&envelope("th_dup", 7, json!({"v": 1}))).await;
    let (status, body) = node
        .post("/v1/records", &envelope("th_dup", 7, json!({"v": 2})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INGEST_FAILED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("DuplicateClock: thread=th_dup actor=did:example:test clock=7"),
        "{body}"
    );
    assert_eq!(node.steward.record_count(&node.token).await, 1);
}

#[tokio::test]
async fn missing_data_type_hashes_as_scalar() {
    let node = node().await;
    let mut with = envelope("th_dt", 1, json!({}));
    let a = node.client.emit::<Value>(&with).await.unwrap().record;
    with.as_object_mut().unwrap().remove("data_type");
    let b = node.client.emit::<Value>(&with).await.unwrap();
    assert!(!b.created, "same id, so a replay: {}", b.record);
    assert_eq!(a["id"], b.record["id"]);
    assert_eq!(b.record["data_type"], "SCALAR");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let node = Node::start(Options {
        limits: Limits {
            max_body_bytes: 4096,
            max_json_depth: 16,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "{\"act\":".into(), 400, "INVALID_JSON"),
        ("not an object", "[1,2]".into(), 400, "VALIDATION_ERROR"),
        ("NaN", envelope("th", 1, json!({})).to_string().replace("\"clock\":1", "\"clock\":1,\"x\":NaN"), 400, "INVALID_JSON"),
        ("duplicate keys", r#"{"act":"DO","act":"KNOW","actor":"a","body":{},"clock":1,"parents":[],"thread":"th"}"#.into(), 400, "INVALID_JSON"),
        ("too deep", envelope("th", 1, json!({})).to_string().replace("{}", &format!("{{\"d\":{deep}}}")), 400, "INVALID_JSON"),
        ("unknown act", envelope("th", 1, json!({})).to_string().replace("\"DO\"", "\"JUMP\""), 400, "VALIDATION_ERROR"),
        ("unknown data type", envelope("th", 1, json!({})).to_string().replace("SCALAR", "BLOB"), 400, "VALIDATION_ERROR"),
        ("clock as string", envelope("th", 1, json!({})).to_string().replace("\"clock\":1", "\"clock\":\"1\""), 400, "VALIDATION_ERROR"),
        ("negative clock", envelope("th", 1, json!({})).to_string().replace("\"clock\":1", "\"clock\":-1"), 400, "VALIDATION_ERROR"),
        ("float clock", envelope("th", 1, json!({})).to_string().replace("\"clock\":1", "\"clock\":1.5"), 400, "VALIDATION_ERROR"),
        ("body not object", envelope("th", 1, json!("text")).to_string(), 400, "VALIDATION_ERROR"),
        ("bad thread", envelope("a/b", 1, json!({})).to_string(), 400, "VALIDATION_ERROR"),
        ("bad kind", envelope("th", 1, json!({"kind": "Music.Track"})).to_string(), 400, "INVALID_KIND"),
        ("oversize", envelope("th", 1, json!({"pad": "x".repeat(5000)})).to_string(), 413, "PAYLOAD_TOO_LARGE"),
        ("plaintext secret", envelope("th", 1, json!({"kind": "core.credential.v1", "handle": "h", "value": "sk-123"})).to_string(), 400, "F16_VIOLATION_SENSITIVE_FIELD"),
        ("audit thread", envelope("th_audit_tokens", 1, json!({})).to_string(), 403, "RESERVED_THREAD"),
    ];
    for (name, body, status, code) in cases {
        let (got, answer) = node
            .steward
            .post_raw(&node.token, "/v1/records", body)
            .await;
        assert_eq!(got, status, "{name}: {answer}");
        assert_eq!(error_code(&answer), code, "{name}");
    }
    // Only the audit records of the token's creation exist, and the one record of the 403
    // (refusals are recorded, protocol.md §13.3); no refused record was stored.
    let all = list(&node, ListParams::default()).await;
    assert!(
        all.iter()
            .all(|r| r["thread"] == "th_audit_tokens" || r["thread"] == "th_audit_security"),
        "{all:?}"
    );
    let refusals = all
        .iter()
        .filter(|r| r["thread"] == "th_audit_security")
        .count();
    assert_eq!(refusals, 1, "{all:?}");
}

/// Up to 1000 records of a listing.
async fn list(node: &Node, params: ListParams) -> Vec<Value> {
    let params = ListParams {
        limit: Some(1000),
        ..params
    };
    node.client.list_records(&params).await.unwrap().data
}

#[tokio::test]
async fn auth_is_enforced_with_both_headers_scopes_and_actor_claims() {
    let steward = TestSteward::start().await;
    // No service account yet: everything under /v1 asks for the bootstrap.
    let (status, body) = steward.get("whatever", "/v1/threads").await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body), "BOOTSTRAP_REQUIRED");
    assert!(body["hint"]
        .as_str()
        .unwrap()
        .contains("spl service-account create --bootstrap"));
    // /health stays open and says nothing about authorization.
    let (status, health) = steward
        .send(steward.http.get(format!("{}/health", steward.url)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert!(health.get("authorization").is_none());

    let admin = steward.admin().await;
    let reader = steward.token(&["records:read"], &[]).await;
    let claimed = steward.token(&["records:write"], &["did:example:me"]).await;

    let no_token = steward
        .http
        .get(format!("{}/v1/threads", steward.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    assert_eq!(error_code(&no_token.json().await.unwrap()), "AUTH_REQUIRED");
    let (status, body) = steward.get("spl_test_sa_x_bogus", "/v1/threads").await;
    assert_eq!((status, error_code(&body)), (401, "AUTH_INVALID"));

    let via_api_key = steward
        .http
        .get(format!("{}/v1/threads", steward.url))
        .header("x-api-key", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(via_api_key.status().as_u16(), 200);

    let (status, body) = steward
        .post(&reader, "/v1/records", &envelope("th", 1, json!({})))
        .await;
    assert_eq!((status, error_code(&body)), (403, "SCOPE_FORBIDDEN"));
    assert_eq!(body["required_scope"], "records:write");

    let (status, body) = steward
        .post(&claimed, "/v1/records", &envelope("th", 1, json!({})))
        .await;
    assert_eq!((status, error_code(&body)), (403, "DID_CLAIM_DENIED"));
    let mut mine = envelope("th", 1, json!({}));
    mine["actor"] = json!("did:example:me");
    let emitted = steward.client(&claimed).emit::<Value>(&mine).await.unwrap();
    assert!(emitted.created);

    let mut config = envelope("th_engine_config", 1, json!({"topic": "x"}));
    config["actor"] = json!("did:example:me");
    let (status, body) = steward.post(&claimed, "/v1/records", &config).await;
    assert_eq!((status, error_code(&body)), (403, "SCOPE_FORBIDDEN"));

    // /v1/health needs a credential and reports the deciders.
    let (status, full) = steward.get(&reader, "/v1/health").await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["authorization"]["of"], 6);
    let report: HealthReport = serde_json::from_value(full).unwrap();
    assert_eq!(report.authorization.of, 6);

    // Revocation takes effect at once, and is itself a record.
    let token_id = syncropel_protocol::sha256_hex(reader.as_bytes());
    let admin_client = steward.client(&admin);
    let revoked = admin_client.revoke_token(&token_id).await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.json());
    let (status, body) = steward.get(&reader, "/v1/threads").await;
    assert_eq!((status, error_code(&body)), (401, "AUTH_INVALID"));
    let audit = admin_client
        .thread_records::<Value>("th_audit_tokens", &ListParams::default())
        .await
        .unwrap()
        .data;
    let events: Vec<&str> = audit
        .iter()
        .map(|r| r["body"]["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"token_revoked"), "{events:?}");
    assert!(
        !Value::from(audit.clone()).to_string().contains(&reader),
        "a plaintext token never appears in a record"
    );
}

#[tokio::test]
async fn lists_page_with_opaque_cursors() {
    let node = node().await;
    for clock in 0..25 {
        node.write(&envelope("th_page", clock, json!({"n": clock})))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/threads/th_page/records?limit=10&cursor={c}"),
            None => "/v1/threads/th_page/records?limit=10".to_string(),
        };
        // The page envelope itself is part of the contract: read it as sent.
        let (status, page) = node.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["object"], "list");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["body"]["n"].as_i64().unwrap()),
        );
        if !page["has_more"].as_bool().unwrap() {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());

    let since = node
        .client
        .list_records::<Value>(&ListParams {
            thread: Some("th_page".into()),
            since: Some(20),
            ..ListParams::default()
        })
        .await
        .unwrap();
    assert_eq!(since.data.len(), 5);
    let (status, unknown) = node.get("/v1/threads/th_nothing/records").await;
    assert_eq!((status, unknown["data"].clone()), (200, json!([])));
    let (status, body) = node.get("/v1/records?cursor=%%%").await;
    assert_eq!((status, error_code(&body)), (400, "VALIDATION_ERROR"));
    let (status, body) = node.get("/v1/records/doesnotexist").await;
    assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));

    let threads = node.client.threads(None, None).await.unwrap();
    let first = &threads.data[0];
    assert_eq!(first.id, "th_page");
    assert_eq!(first.record_count, 25);
    assert_eq!(first.last_clock, 24);
    assert_eq!(first.namespace, "default");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_envelope() {
    let node = node().await;
    let (status, body) = node.get("/v1/nope").await;
    assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));
    let resp = node
        .steward
        .http
        .put(format!("{}/v1/records", node.url()))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "METHOD_NOT_ALLOWED"
    );
}

#[tokio::test]
async fn namespaces_narrow_writes_and_are_folds_of_records() {
    let node = node().await;
    let payment = |clock| {
        envelope(
            "th_ns",
            clock,
            json!({"namespace": "acme/payments", "amount": 5}),
        )
    };

    let (status, body) = node.post("/v1/records", &payment(1)).await;
    assert_eq!((status, error_code(&body)), (403, "NAMESPACE_REJECTED"));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ancestor 'acme'"),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spl namespace create acme"),
        "{body}"
    );

    // A child before its parent is refused.
    let (status, body) = node
        .post("/v1/namespaces", &json!({"id": "acme/payments"}))
        .await;
    assert_eq!((status, error_code(&body)), (403, "NAMESPACE_REJECTED"));
    let (status, body) = node
        .post("/v1/namespaces", &json!({"id": "Bad Name"}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "NAMESPACE_ID_INVALID"));

    // Creating answers 201, not the 200 of a re-activation: a raw request tells them apart.
    let (status, acme) = node.post("/v1/namespaces", &json!({"id": "acme"})).await;
    assert_eq!(status, 201, "{acme}");
    let (status, _) = node
        .post("/v1/namespaces", &json!({"id": "acme/payments"}))
        .await;
    assert_eq!(status, 201);
    let record = node.write(&payment(2)).await;
    assert_eq!(record["namespace"], "acme/payments");

    // Archiving an ancestor closes the subtree to new writes; existing records stay readable.
    let archived = node.client.archive_namespace("acme").await.unwrap();
    assert_eq!(archived.status(), 200, "{}", archived.json());
    let (status, body) = node.post("/v1/records", &payment(3)).await;
    assert_eq!((status, error_code(&body)), (403, "NAMESPACE_REJECTED"));
    assert!(node.record(record["id"].as_str().unwrap()).await.is_some());

    let entry = node.client.namespace("acme/payments").await.unwrap();
    assert_eq!(
        (entry.status(), entry.json()["state"].clone()),
        (200, json!("active"))
    );
    let registry = node
        .client
        .thread_records::<Value>("th_namespace_registry", &ListParams::default())
        .await
        .unwrap();
    assert_eq!(registry.data.len(), 3, "create, create, archive");
    assert_eq!(node.steward.record_count(&node.token).await, 4);
}

#[tokio::test]
async fn search_switched_off_answers_503_and_says_so_in_health() {
    let node = Node::start(Options {
        search: false,
        ..Options::default()
    })
    .await;
    let (status, body) = node
        .post("/v1/records/search", &json!({"query": "anything"}))
        .await;
    assert_eq!((status, error_code(&body)), (503, "SEARCH_DISABLED"));
    let health = node.client.health_report().await.unwrap();
    assert_eq!(health.search, "disabled");
    // The capabilities say so too, in the well-known document and at their own route, openly.
    let open = |path: &'static str| {
        let request = node.steward.http.get(format!("{}{path}", node.url()));
        node.steward.send(request)
    };
    let (status, capabilities) = open("/v1/capabilities").await;
    assert_eq!(status, 200, "{capabilities}");
    assert_eq!(capabilities["object"], "capabilities_manifest");
    assert_eq!(
        capabilities["manifest_version"], "2",
        "the SDK's MANIFEST_VERSION"
    );
    assert_eq!(capabilities["tier"], "local");
    assert_eq!(capabilities["capabilities"]["search"], false);
    assert_eq!(capabilities["capabilities"]["membership"], true);
    let (_, well_known) = open("/.well-known/syncropel").await;
    assert_eq!(well_known["capabilities_manifest"], capabilities);
    assert_eq!(
        well_known["federation_manifest"]["object"],
        "federation_manifest"
    );
}

#[tokio::test]
async fn a_batch_answers_each_record_in_order_and_stores_only_the_good_ones() {
    let node = node().await;
    let earlier = node.write(&envelope("th_b", 1, json!({"n": 1}))).await;

    let batch = CreateRecords {
        records: vec![
            envelope("th_b", 2, json!({"n": 2})),
            envelope("th_b", 1, json!({"n": 1})), // replay of the earlier record
            envelope("th_b", 1, json!({"n": "other"})), // clock clash with it
            json!({"act": "SHOUT", "actor": "did:example:test", "clock": 3, "thread": "th_b"}),
            envelope("th_audit_tokens", 4, json!({})), // steward-only thread
            envelope("th_b", 5, json!({"namespace": "nowhere", "n": 5})),
            envelope("th_b", 6, json!({"n": 6})),
            envelope("th_b", 6, json!({"n": 6})), // the same record twice in one batch
            json!("not a record"),
        ],
    };
    // Read as sent: the error bodies of the items are checked as envelopes.
    let (status, answer) = node
        .post("/v1/records/batch", &serde_json::to_value(&batch).unwrap())
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "batch_result");
    let items = answer["data"].as_array().unwrap();
    let statuses: Vec<i64> = items
        .iter()
        .map(|i| i["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [201, 200, 400, 400, 403, 403, 201, 200, 400],
        "{answer}"
    );
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["index"], index);
    }
    assert_eq!(items[1]["record"], earlier);
    assert_eq!(error_code(&items[2]["error"]), "INGEST_FAILED");
    assert_eq!(error_code(&items[4]["error"]), "RESERVED_THREAD");
    assert_eq!(error_code(&items[5]["error"]), "NAMESPACE_REJECTED");
    assert_eq!(items[7]["record"]["id"], items[6]["record"]["id"]);
    assert_eq!(
        (&answer["created"], &answer["existing"], &answer["failed"]),
        (&json!(2), &json!(2), &json!(5))
    );
    let listed = list(
        &node,
        ListParams {
            thread: Some("th_b".into()),
            ..ListParams::default()
        },
    )
    .await;
    let clocks: Vec<i64> = listed
        .iter()
        .map(|r| r["clock"].as_i64().unwrap())
        .collect();
    assert_eq!(clocks, [1, 2, 6], "only the accepted records are stored");

    // The batch itself: not an object with a records array, too many records, no write scope.
    for bad in [json!({"records": "x"}), json!([]), json!({})] {
        let (status, body) = node.post("/v1/records/batch", &bad).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|i| envelope("th_many", i, json!({})))
        .collect();
    let (status, body) = node
        .post("/v1/records/batch", &json!({"records": too_many}))
        .await;
    assert_eq!((status, error_code(&body)), (400, "VALIDATION_ERROR"));
    let reader = node.steward.token(&["records:read"], &[]).await;
    let (status, body) = node
        .steward
        .post(
            &reader,
            "/v1/records/batch",
            &json!({"records": [envelope("th_r", 1, json!({}))]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&body["data"][0]["error"]), "SCOPE_FORBIDDEN");
    assert_eq!(node.steward.record_count(&node.token).await, 3);
}

#[tokio::test]
async fn the_manifest_is_signed_for_the_bound_address_whatever_the_host_header_says() {
    let steward = TestSteward::start().await;
    let (status, body) = steward
        .send(
            steward
                .http
                .get(format!("{}/.well-known/syncropel", steward.url))
                .header("host", "attacker.example"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let manifest = &body["federation_manifest"];
    syncropel_federation::manifest::verify(manifest, &[]).unwrap();
    assert_eq!(manifest["daemon"]["did"], *steward.tenant.identity.did);
    assert_eq!(
        manifest["federation"]["sync_change_endpoint"],
        format!("{}/v1/sync/changes", steward.url)
    );
}

/// Pages are cut by bytes in the store, before records are read: a listing, a thread's page and
/// the changes feed of large records hold a bounded number of them, say `has_more`, and their
/// cursors reach every record once.
#[tokio::test]
async fn pages_of_large_records_stop_at_the_byte_budget() {
    let node = Node::start(Options {
        limits: Limits {
            max_page_bytes: 64 * 1024,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    for clock in 1..=10 {
        node.write(&envelope(
            "th_heavy",
            clock,
            json!({"s": "x".repeat(20_000)}),
        ))
        .await;
    }
    for base in [
        "/v1/records?thread=th_heavy",
        "/v1/threads/th_heavy/records?x=1",
    ] {
        let mut clocks = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = format!("{base}&limit=1000&cursor={cursor}");
            let (status, page) = node.steward.get(&node.token, &path).await;
            assert_eq!(status, 200, "{path}: {page}");
            let data = page["data"].as_array().unwrap();
            // 64 KiB: three records of 20 KB, and the fourth that reaches the budget.
            assert!(data.len() <= 4, "{path}: {} records", data.len());
            clocks.extend(data.iter().map(|r| r["clock"].as_i64().unwrap()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => break,
            }
        }
        assert_eq!(clocks, (1..=10).collect::<Vec<i64>>(), "{base}");
    }

    // The changes feed, at its own 6 MiB budget: 900 KB records, seven to a page at most.
    for clock in 1..=9 {
        node.write(&envelope(
            "th_huge",
            clock,
            json!({"s": "y".repeat(900_000)}),
        ))
        .await;
    }
    let mut clocks = Vec::new();
    let mut since = String::new();
    loop {
        let path = format!("/v1/sync/changes?thread=th_huge&limit=1000&since={since}");
        let (status, page) = node.steward.get(&node.token, &path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["records"].as_array().unwrap();
        assert!(items.len() <= 7, "{} records in one page", items.len());
        clocks.extend(items.iter().map(|i| i["record"]["clock"].as_i64().unwrap()));
        since = page["next_cursor"].as_str().unwrap().to_string();
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(clocks, (1..=9).collect::<Vec<i64>>());
}
