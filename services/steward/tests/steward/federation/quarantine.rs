//! `GET /v1/sync/quarantine` (federation-protocol.md §5.9): the records a pull held back, read by
//! the puller's operator a bounded page at a time, and by no one else.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use syncropel_client::encode_segment;
use syncropel_federation::state::QUARANTINE;
use syncropel_protocol::unix_now;
use syncropel_steward::state::Limits;
use syncropel_store::StateChange;
use syncropel_testkit::{error_code, Node, Options, TENANT};

use super::consent::grant_consent;
use super::{config, paired, start};

/// Entries as the puller writes them (`source\nid` → `{source, id, thread, actor, code, at}`),
/// put straight into `node`'s state: `n` of `source`, ids `<source>-0000`, ….
async fn hold(node: &Node, source: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{source}-{i:04}")).collect();
    let changes = ids
        .iter()
        .map(|id| {
            let entry = json!({"source": source, "id": id, "thread": "th_q", "actor": "did:sync:user:q",
                               "code": "SIGNATURE_INVALID", "at": 1_777_000_000});
            StateChange::put(QUARANTINE, &format!("{source}\n{id}"), entry.to_string())
        })
        .collect();
    node.steward
        .state
        .store
        .write(TENANT, Vec::new(), changes)
        .await
        .unwrap();
    ids
}

/// The ids of a page's entries.
fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every entry `query` selects, page after page of `limit`: their ids and how many pages.
async fn walk(node: &Node, query: &str, limit: u32) -> (Vec<String>, usize) {
    let (mut all, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let mut path = format!("/v1/sync/quarantine?limit={limit}{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = node.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        all.extend(ids(&page));
        assert_eq!(page["has_more"], page["next_cursor"].is_string(), "{page}");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (all, pages),
        }
    }
}

#[tokio::test]
async fn a_record_a_pull_held_back_is_listed_with_its_pair_and_code() {
    let (a, b, pair_id) = paired().await;
    b.register_namespace("research").await;
    grant_consent(&b, json!({"source_namespace": "research", "target_namespace": "default", "hash_levels": ["L0"]})).await;
    let record = b
        .emit(
            "th_fed_q",
            "did:sync:user:bob",
            1,
            json!({"namespace": "research"}),
        )
        .await;
    let pulled = a.pull("th_fed_q", &b.did()).await;
    assert_eq!(pulled["quarantined"], 1, "{pulled}");

    let (status, page) = a.get("/v1/sync/quarantine").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list", "{page}");
    assert_eq!(page["has_more"], false, "{page}");
    assert!(page["next_cursor"].is_null(), "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    let entry = &page["data"][0];
    assert_eq!(entry["source"], pair_id.as_str(), "{entry}");
    assert_eq!(entry["id"], record["id"], "{entry}");
    assert_eq!(entry["thread"], "th_fed_q", "{entry}");
    assert_eq!(entry["actor"], "did:sync:user:bob", "{entry}");
    assert_eq!(entry["code"], "NAMESPACE_REJECTED", "{entry}");
    assert!(
        (unix_now() - entry["at"].as_i64().unwrap()).abs() < 300,
        "{entry}"
    );

    // Narrowed to the pair, by its id or its peer's DID alike; another source holds nothing.
    for pair in [pair_id.clone(), b.did()] {
        let (status, narrowed) = a
            .get(&format!(
                "/v1/sync/quarantine?pair={}",
                encode_segment(&pair)
            ))
            .await;
        assert_eq!(status, 200, "{narrowed}");
        assert_eq!(narrowed["data"], page["data"], "{pair}");
    }
    let (_, other) = a.get("/v1/sync/quarantine?pair=fed_other").await;
    assert_eq!(other["data"], json!([]), "{other}");
    let stranger = syncropel_protocol::Keypair::generate().did_key();
    let (status, unpaired) = a.get(&format!("/v1/sync/quarantine?pair={stranger}")).await;
    assert_eq!((status, error_code(&unpaired)), (404, "unpaired_peer"));

    // The typed client reads the same page.
    let typed = a
        .client
        .sync_quarantine(Some(&pair_id), Some(10), None)
        .await
        .unwrap()
        .into_value();
    assert_eq!(typed.data.len(), 1);
    assert_eq!(typed.data[0].code, "NAMESPACE_REJECTED");
    assert_eq!(typed.data[0].source, pair_id);

    // The steward that sent it holds nothing.
    let (_, sent) = b.get("/v1/sync/quarantine").await;
    assert_eq!(sent["data"], json!([]), "{sent}");
}

/// `limit` defaults to 50 and is clamped to 500; the cursor walks every entry once, in key
/// order, also narrowed to one pair; bad parameters are `400 VALIDATION_ERROR`.
#[tokio::test]
async fn pages_are_clamped_and_their_cursors_walk_every_entry_once() {
    let a = start().await;
    let many = hold(&a, "fed_many", 600).await;
    let few = hold(&a, "fed_few", 5).await;

    let (status, page) = a.get("/v1/sync/quarantine").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page).len(), 50);
    assert_eq!(page["has_more"], true);
    let (_, huge) = a.get("/v1/sync/quarantine?limit=100000").await;
    assert_eq!(ids(&huge).len(), 500, "clamped to the maximum");
    assert_eq!(huge["has_more"], true);

    // Key order: `fed_few` sorts before `fed_many`.
    let everything: Vec<String> = few.iter().chain(&many).cloned().collect();
    let (walked, pages) = walk(&a, "", 500).await;
    assert_eq!((walked.clone(), pages), (everything.clone(), 2));
    let (walked, pages) = walk(&a, "", 7).await;
    assert_eq!(walked, everything);
    assert_eq!(pages, 605usize.div_ceil(7));
    let (walked, _) = walk(&a, "&pair=fed_many", 250).await;
    assert_eq!(walked, many);
    let (walked, pages) = walk(&a, "&pair=fed_few", 50).await;
    assert_eq!((walked, pages), (few, 1));

    let long = "x".repeat(513);
    for query in [
        "limit=0".to_string(),
        "limit=-5".into(),
        "limit=ten".into(),
        "limit=99999999999999999999999".into(),
        "cursor=not%20a%20cursor!".into(),
        // Base64 of something that names no entry.
        "cursor=NDI".into(),
        format!("cursor={long}"),
        format!("pair={long}"),
    ] {
        let (status, refused) = a.get(&format!("/v1/sync/quarantine?{query}")).await;
        assert_eq!(
            (status, error_code(&refused)),
            (400, "VALIDATION_ERROR"),
            "{query}: {refused}"
        );
    }
}

/// A page stops before its entries pass the steward's page-byte limit, whatever `limit` says,
/// and the cursor still reaches every entry.
#[tokio::test]
async fn a_page_stops_at_the_page_byte_limit() {
    let a = Node::start(Options {
        federation: config(),
        limits: Limits {
            max_page_bytes: 2048,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let held = hold(&a, "fed_big", 100).await;
    let (status, page) = a.get("/v1/sync/quarantine?limit=500").await;
    assert_eq!(status, 200, "{page}");
    let shown = ids(&page).len();
    assert!((1..100).contains(&shown), "{shown} entries");
    assert!(page["data"].to_string().len() <= 2048 + 2 * shown, "{page}");
    assert_eq!(page["has_more"], true);
    let (walked, pages) = walk(&a, "", 500).await;
    assert_eq!(walked, held);
    assert!(pages > 1);
}

/// Only a token with `federation:manage` reads the quarantine: no token, a reader's, or the
/// pair token the peer holds are refused; hostile parameters find nothing they should not.
#[tokio::test]
async fn only_the_operator_reads_the_quarantine_and_odd_parameters_find_nothing() {
    let (a, b, pair_id) = paired().await;
    let held: BTreeSet<String> = hold(&a, &pair_id, 3).await.into_iter().collect();

    let url = format!("{}/v1/sync/quarantine", a.url());
    let anonymous = a.steward.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let reader = a.steward.token(&["records:read"], &[]).await;
    let (status, refused) = a.steward.get(&reader, "/v1/sync/quarantine").await;
    assert_eq!(
        (status, error_code(&refused)),
        (403, "SCOPE_FORBIDDEN"),
        "{refused}"
    );
    // The bearer A issued B for the pair opens the feed, not the operator's reads.
    let bearer = b.outbound_token(&pair_id).await.unwrap();
    let (status, refused) = a.get_as(&bearer, &b.did(), "/v1/sync/quarantine").await;
    assert_eq!(status, 403, "{refused}");
    error_code(&refused);

    for pair in ["%00", "%25", "fed_%25", "'%20OR%201%3D1%20--", "*", "%0A"] {
        let (status, page) = a.get(&format!("/v1/sync/quarantine?pair={pair}")).await;
        assert_eq!(status, 200, "{pair}: {page}");
        assert_eq!(page["data"], json!([]), "{pair}");
    }
    // A cursor forged to name any key only moves where the listing starts.
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{pair_id}\n"));
    let (status, page) = a.get(&format!("/v1/sync/quarantine?cursor={forged}")).await;
    assert_eq!(status, 200, "{page}");
    let listed: BTreeSet<String> = ids(&page).into_iter().collect();
    assert_eq!(listed, held);
    // Repeating a parameter is no way around its bounds.
    let (status, page) = a.get("/v1/sync/quarantine?limit=1&limit=100000").await;
    assert!(status == 400 || ids(&page).len() <= 500, "{status}: {page}");
}
