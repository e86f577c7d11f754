//! Full-text search.

use std::sync::Arc;

use syncropel_store::RecordStore;

use crate::common::{record, record_with_body};

/// The full-text index is up to date for every search, and never holds a record twice.
pub async fn search_sees_every_record_committed_before_it(store: Arc<dyn RecordStore>) {
    let hits = |word: &str| {
        let store = store.clone();
        let words = vec![word.to_string()];
        async move { store.search("t", &words, 10).await.unwrap().len() }
    };
    let append = |clock: i64, text: &'static str| {
        let store = store.clone();
        async move {
            store
                .append("t", record("th", "a", clock, text))
                .await
                .unwrap()
        }
    };
    append(1, "walrus").await;
    assert_eq!(hits("walrus").await, 1);
    append(2, "walrus").await;
    append(3, "narwhal").await;
    assert_eq!(
        hits("walrus").await,
        2,
        "the second record is found and the first is not indexed twice"
    );
    assert_eq!(hits("narwhal").await, 1);
}

pub async fn search_refuses_no_words_and_reads_awkward_bodies(store: Arc<dyn RecordStore>) {
    let bodies = [
        r#"{"note":"o'brien said \"hi\" back\\slash"}"#,
        r#"{"nested":{"list":["zebra",1,true,null,{"deep":"okapi"}]}}"#,
        r#""a plain string body with quagga""#,
        r#"{"nul":"before\u0000after"}"#,
        r#"{"number":12345}"#,
    ];
    for (clock, body) in bodies.iter().enumerate() {
        store
            .append(
                "t",
                record_with_body(&format!("r{clock}"), "th", "a", clock as i64, body),
            )
            .await
            .unwrap();
    }
    let count = |words: &[&str]| {
        let store = store.clone();
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        async move { store.search("t", &words, 100).await.unwrap().len() }
    };
    assert_eq!(count(&["brien"]).await, 1);
    assert_eq!(count(&["slash"]).await, 1);
    assert_eq!(
        count(&["okapi"]).await,
        1,
        "nested string values are indexed"
    );
    assert_eq!(count(&["zebra", "quagga"]).await, 2);
    assert_eq!(count(&["after"]).await, 1);
    assert_eq!(count(&["12345"]).await, 0, "only string values are indexed");
    assert_eq!(count(&[]).await, 0);
    assert_eq!(count(&["", " ", "\0"]).await, 0);
    assert_eq!(count(&["nothing-like-it"]).await, 0);
}
