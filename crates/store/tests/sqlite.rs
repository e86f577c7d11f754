//! The SQLite backend against a real database file.

use std::sync::Arc;

use syncropel_store::{Appended, ListFilter, NewRecord, RecordStore, SqliteStore, StoreError};

fn record(thread: &str, actor: &str, clock: i64, text: &str) -> NewRecord {
    let id = format!("{thread}-{actor}-{clock}-{text}");
    NewRecord {
        id: id.clone(),
        thread: thread.into(),
        actor: actor.into(),
        clock,
        act: "DO".into(),
        data_type: "SCALAR".into(),
        namespace: "default".into(),
        created_at: 1,
        hash_levels: ["a".into(), "b".into(), "c".into(), "d".into()],
        json: format!(
            "{{\"id\":\"{id}\",\"thread\":\"{thread}\",\"clock\":{clock},\"body\":{{\"text\":\"{text}\"}}}}"
        ),
    }
}

async fn open() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_file(&dir.path().join("hub.db"))
        .await
        .unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn append_is_idempotent_and_refuses_duplicate_clocks() {
    let (_dir, store) = open().await;
    let first = store.append("t", record("th", "a", 1, "x")).await.unwrap();
    let Appended::Inserted(stored) = &first else {
        panic!("expected insert: {first:?}")
    };
    assert_eq!(stored.seq, 1);
    assert!(stored.json.ends_with(",\"sequence\":1}"));
    serde_json::from_str::<serde_json::Value>(&stored.json).unwrap();

    let again = store.append("t", record("th", "a", 1, "x")).await.unwrap();
    assert_eq!(again, Appended::Existing(stored.clone()));

    let clash = store.append("t", record("th", "a", 1, "other")).await;
    assert!(
        matches!(clash, Err(StoreError::DuplicateClock { clock: 1, .. })),
        "{clash:?}"
    );

    // Another tenant has its own ids and clocks.
    let other = store.append("u", record("th", "a", 1, "x")).await.unwrap();
    assert!(matches!(other, Appended::Inserted(_)));
    let listed = store
        .list(
            "t",
            &ListFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![stored.clone()]);
    assert_eq!(
        store.get("u", &stored.id).await.unwrap().map(|r| r.seq),
        Some(2)
    );
    assert_eq!(store.get("v", &stored.id).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn lists_filter_and_threads_summarise() {
    let (_dir, store) = open().await;
    for clock in 0..5 {
        store
            .append("t", record("th_a", "alice", clock, "apple pie"))
            .await
            .unwrap();
        store
            .append("t", record("th_b", "bob", clock, "banana split"))
            .await
            .unwrap();
    }
    let page = |filter: ListFilter| {
        let store = store.clone();
        async move { store.list("t", &filter).await.unwrap() }
    };
    let a = page(ListFilter {
        thread: Some("th_a".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(a.len(), 5);
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq));
    let since = page(ListFilter {
        actor: Some("bob".into()),
        since_clock: Some(3),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(since.len(), 2);
    let after = page(ListFilter {
        after_seq: a[2].seq,
        thread: Some("th_a".into()),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(after, vec![a[3].clone()]);

    let threads = store.threads("t", None, 10).await.unwrap();
    assert_eq!(
        threads.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["th_b", "th_a"]
    );
    assert_eq!(threads[0].record_count, 5);
    assert_eq!(threads[0].last_clock, 4);
    let older = store
        .threads("t", Some(threads[0].last_seq), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);

    let hits = store.search("t", &["banana".into()], 10).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|(score, r)| *score >= 0.0 && r.thread == "th_b"));
    let hostile = store
        .search(
            "t",
            &["\"".into(), "NEAR(".into(), "*".into(), "AND".into()],
            10,
        )
        .await;
    assert!(hostile.is_ok(), "{hostile:?}");
    store.close().await;
}

/// Concurrent writers and a concurrent reader: a reader that pages by cursor never sees a record
/// with a smaller sequence appear after it moved past it, and ends with every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursors_never_skip_a_committed_record() {
    let (_dir, store) = open().await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for clock in 0..250 {
                    let r = store
                        .append("t", record("th", &format!("w{w}"), clock, "x"))
                        .await
                        .unwrap();
                    acked.push(r.record().seq);
                }
                acked
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            for _ in 0..100_000 {
                let page = store
                    .list(
                        "t",
                        &ListFilter {
                            after_seq: cursor,
                            limit: 37,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                for r in &page {
                    assert!(r.seq > cursor);
                    seen.push(r.seq);
                    cursor = r.seq;
                }
                if seen.len() == 2000 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut acked: Vec<i64> = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let seen = reader.await.unwrap();
    acked.sort();
    assert_eq!(
        seen, acked,
        "the paging reader saw every record exactly once, in order"
    );
    store.close().await;
}

#[tokio::test]
async fn committed_records_are_announced_in_sequence_order() {
    let (_dir, store) = open().await;
    let mut events = store.subscribe();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append("t", record("th", "a", i, "x")).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = 0;
    for _ in 0..50 {
        let c = events.recv().await.unwrap();
        assert!(c.record.seq > last);
        last = c.record.seq;
    }
    store.close().await;
}

/// The full-text index is brought up to date before every search, incrementally.
#[tokio::test]
async fn search_sees_every_record_committed_before_it() {
    let (_dir, store) = open().await;
    store
        .append("t", record("th", "a", 1, "walrus"))
        .await
        .unwrap();
    assert_eq!(
        store
            .search("t", &["walrus".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .append("t", record("th", "a", 2, "walrus"))
        .await
        .unwrap();
    store
        .append("t", record("th", "a", 3, "narwhal"))
        .await
        .unwrap();
    let hits = store.search("t", &["walrus".into()], 10).await.unwrap();
    assert_eq!(
        hits.len(),
        2,
        "the second record is found and the first is not indexed twice"
    );
    assert_eq!(
        store
            .search("t", &["narwhal".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}
