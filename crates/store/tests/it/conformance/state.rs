//! Key-value state written with records, and consent stubs replaced by full records.

use std::sync::Arc;

use syncropel_store::{Appended, RecordStore, StateChange};

use super::all;
use crate::common::{record, record_with_body};

/// `write` stores records and state changes together; a peer's full record replaces the consent
/// stub of the same id (and is found by search), while any other stored record stays as it was,
/// and `append` never replaces a stub.
pub async fn writes_move_state_with_their_records_and_replace_only_stubs(
    store: Arc<dyn RecordStore>,
) {
    let stored_json = |id: &'static str| {
        let store = store.clone();
        async move { store.get("t", id).await.unwrap().unwrap().json }
    };
    let cursor = || {
        let store = store.clone();
        async move { store.state_get("t", "cursor", "k").await.unwrap() }
    };
    let stub_json =
        r#"{"id":"r1","thread":"th","clock":1,"body":{"redacted":true},"redacted":true}"#;
    let mut stub = record_with_body("r1", "th", "a", 1, r#"{"redacted":true}"#);
    stub.json = stub_json.to_string();
    let results = store
        .write(
            "t",
            vec![stub, record("th", "a", 2, "plain")],
            vec![StateChange::put("cursor", "k", "c1")],
        )
        .await
        .unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(Appended::Inserted(_)))));
    assert_eq!(cursor().await.as_deref(), Some("c1"));
    let seq = store.get("t", "r1").await.unwrap().unwrap().seq;

    // A stub is unsigned: one holding a record's id under another envelope, or holding its
    // (thread, actor, clock), goes, and the peer's verified record is stored in its own place.
    let stub_of = |id: &str, clock: i64| {
        let mut stub = record_with_body(id, "th", "a", clock, r#"{"redacted":true}"#);
        stub.json = format!(
            r#"{{"id":"{id}","thread":"th","clock":{clock},"body":{{"redacted":true}},"redacted":true}}"#
        );
        stub
    };
    store
        .write("t", vec![stub_of("r2", 3), stub_of("r3", 4)], Vec::new())
        .await
        .unwrap();
    let elsewhere = record_with_body("r2", "th_other", "a", 3, r#"{"text":"x"}"#);
    let rightful = record_with_body("r4", "th", "a", 4, r#"{"text":"mine"}"#);
    let results = store
        .write("t", vec![elsewhere, rightful], Vec::new())
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Appended::Inserted(_)))),
        "{results:?}"
    );
    assert!(!stored_json("r2").await.contains("redacted"));
    assert!(stored_json("r4").await.contains("mine"));
    assert!(
        store.get("t", "r3").await.unwrap().is_none(),
        "the squatter went"
    );
    let th = store
        .threads("t", None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == "th")
        .unwrap();
    let on_th = store
        .list(
            "t",
            &syncropel_store::ListFilter {
                thread: Some("th".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        th.record_count,
        on_th.len() as i64,
        "the summary counts what is there"
    );

    // Through append (a local client) the stub stays.
    let full = record_with_body("r1", "th", "a", 1, r#"{"text":"glowing marmot"}"#);
    store.append("t", full.clone()).await.unwrap();
    assert!(stored_json("r1").await.contains("redacted"));

    // From a peer the full record takes the stub's place, same sequence.
    let results = store
        .write(
            "t",
            vec![full.clone()],
            vec![
                StateChange::put("cursor", "k", "c2"),
                StateChange::delete("cursor", "gone"),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Ok(Appended::Existing(r)) if r.seq == seq && r.json.contains("marmot"))
    );
    let now = store.get("t", "r1").await.unwrap().unwrap();
    assert_eq!(now.seq, seq);
    assert!(now.json.contains("marmot") && !now.json.contains("redacted"));
    assert_eq!(cursor().await.as_deref(), Some("c2"));
    let found = store
        .search("t", &["marmot".to_string()], 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    // A full record is never replaced, not even by another full record of the same id.
    let other = record_with_body("r1", "th", "a", 1, r#"{"text":"something else"}"#);
    store.write("t", vec![other], Vec::new()).await.unwrap();
    assert!(stored_json("r1").await.contains("marmot"));

    // PutIfAbsent keeps the first value; lists are per tenant and kind, ordered by key.
    store
        .write(
            "t",
            Vec::new(),
            vec![
                StateChange::put_if_absent("cursor", "k", "c3"),
                StateChange::put("cursor", "a", "x"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.state_list("t", "cursor").await.unwrap(),
        vec![
            ("a".to_string(), "x".to_string()),
            ("k".to_string(), "c2".to_string())
        ]
    );
    assert!(store.state_list("u", "cursor").await.unwrap().is_empty());
    assert_eq!(
        store.head_seq("t").await.unwrap(),
        store
            .list("t", &all(100))
            .await
            .unwrap()
            .last()
            .unwrap()
            .seq
    );
    assert_eq!(store.head_seq("u").await.unwrap(), 0);
}

/// `state_page` reads a kind in key order, a page at a time after a key, only the keys with a
/// prefix when given one, and only the tenant's own.
pub async fn state_pages_follow_key_order_prefix_and_tenant(store: Arc<dyn RecordStore>) {
    let keys = ["p1\na", "p1\nb", "p1\nc", "p2\na", "p2\nb"];
    let changes = keys
        .iter()
        .map(|k| StateChange::put("quarantine", k, format!("v {k}")))
        .collect();
    store.write("t", Vec::new(), changes).await.unwrap();
    let elsewhere = vec![StateChange::put("quarantine", "p1\nz", "theirs")];
    store.write("u", Vec::new(), elsewhere).await.unwrap();
    let page = |prefix: &'static str, after: &'static str, limit: u32| {
        let store = store.clone();
        async move {
            store
                .state_page("t", "quarantine", prefix, after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|(key, _)| key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("", "", 2).await, ["p1\na", "p1\nb"]);
    assert_eq!(page("", "p1\nb", 2).await, ["p1\nc", "p2\na"]);
    assert_eq!(page("", "p2\na", 10).await, ["p2\nb"]);
    assert!(page("", "p2\nb", 10).await.is_empty());
    assert_eq!(page("p2\n", "", 10).await, ["p2\na", "p2\nb"]);
    assert_eq!(page("p1\n", "p1\na", 1).await, ["p1\nb"]);
    assert!(page("p3\n", "", 10).await.is_empty());
    let value = store
        .state_page("t", "quarantine", "p2\n", "", 1)
        .await
        .unwrap();
    assert_eq!(value, [("p2\na".to_string(), "v p2\na".to_string())]);
}
