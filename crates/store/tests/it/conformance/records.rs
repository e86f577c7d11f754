//! Appends, replays, tenant isolation, listing and thread summaries.

use std::sync::Arc;

use syncropel_store::query::Column;
use syncropel_store::{Appended, ListFilter, RecordStore, StoreError};

use super::auth::{audit, create_sa};
use super::{all, two_threads};
use crate::common::record;

pub async fn append_is_idempotent_and_refuses_duplicate_clocks(store: Arc<dyn RecordStore>) {
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
    let listed = store.list("t", &all(100)).await.unwrap();
    assert_eq!(listed, vec![stored.clone()]);
    assert_eq!(
        store.get("t", &stored.id).await.unwrap(),
        Some(stored.clone())
    );
    let in_u = store.get("u", &stored.id).await.unwrap().expect("u's copy");
    assert_eq!(in_u, other.record().clone());
    assert_eq!(store.get("v", &stored.id).await.unwrap(), None);

    // The next record after a replay and a clash takes the next number.
    let next = store.append("t", record("th", "a", 2, "y")).await.unwrap();
    assert!(matches!(next, Appended::Inserted(_)));
    assert!(next.record().seq > stored.seq);
}

/// The same record sent many times at once (retries): one row, every caller gets it.
pub async fn concurrent_replays_store_one_record(store: Arc<dyn RecordStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append("t", record("th", "a", 7, "same")).await })
        })
        .collect();
    let mut inserted = 0;
    let mut records = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        if matches!(outcome, Appended::Inserted(_)) {
            inserted += 1;
        }
        records.push(outcome.record().clone());
    }
    assert_eq!(inserted, 1);
    assert!(records.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        store.list("t", &all(100)).await.unwrap(),
        vec![records[0].clone()]
    );
    let threads = store.threads("t", None, 10).await.unwrap();
    assert_eq!(threads[0].record_count, 1);
}

pub async fn tenants_are_isolated(store: Arc<dyn RecordStore>) {
    for clock in 0..3 {
        store
            .append("t", record("th", "alice", clock, "secret walrus"))
            .await
            .unwrap();
    }
    let t_first = store.list("t", &all(1)).await.unwrap().remove(0);
    store
        .apply_auth_change("t", create_sa("sa1", &["records:read"]), audit(1))
        .await
        .unwrap();

    let u: &str = "u";
    assert!(store.list(u, &all(100)).await.unwrap().is_empty());
    assert_eq!(store.get(u, &t_first.id).await.unwrap(), None);
    assert!(store.threads(u, None, 10).await.unwrap().is_empty());
    assert!(store
        .scan(u, &[(Column::Thread, "th".into())], 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search(u, &["walrus".into()], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!store.has_service_accounts(u).await.unwrap());
    assert!(store.service_accounts(u).await.unwrap().is_empty());
    assert_eq!(store.service_account(u, "sa1").await.unwrap(), None);

    // u's own records are numbered and listed independently of t's.
    let mine = store
        .append(u, record("th", "alice", 0, "mine"))
        .await
        .unwrap();
    assert_eq!(
        store.list(u, &all(100)).await.unwrap(),
        vec![mine.record().clone()]
    );
    assert_eq!(store.list("t", &all(100)).await.unwrap().len(), 4);
}

pub async fn lists_filter_and_threads_summarise(store: Arc<dyn RecordStore>) {
    two_threads(&*store, 5, "apple pie", "banana split").await;
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
    // Every page, cursor by cursor, is the whole log once.
    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let p = page(ListFilter {
            after_seq: cursor,
            limit: 3,
            ..Default::default()
        })
        .await;
        let Some(last) = p.last() else { break };
        cursor = last.seq;
        paged.extend(p);
    }
    assert_eq!(paged, page(all(100)).await);
    assert_eq!(paged.len(), 10);

    let threads = store.threads("t", None, 10).await.unwrap();
    assert_eq!(
        threads.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["th_b", "th_a"]
    );
    assert_eq!(threads[0].record_count, 5);
    assert_eq!(threads[0].last_clock, 4);
    assert_eq!(threads[0].namespace, "default");
    assert_eq!(threads[0].last_seq, paged.last().unwrap().seq);
    let older = store
        .threads("t", Some(threads[0].last_seq), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(store.threads("t", None, 1).await.unwrap().len(), 1);

    let hits = store.search("t", &["banana".into()], 10).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|(score, r)| *score >= 0.0 && r.thread == "th_b"));
    // OR semantics: either word matches.
    let either = store
        .search("t", &["banana".into(), "apple".into()], 100)
        .await
        .unwrap();
    assert_eq!(either.len(), 10);
    assert!(either.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
    let hostile = store
        .search(
            "t",
            &[
                "\"".into(),
                "NEAR(".into(),
                "*".into(),
                "AND".into(),
                "'".into(),
                "\\".into(),
                "&|!():*<->".into(),
                "a\0b".into(),
                "banana')|('x".into(),
            ],
            10,
        )
        .await;
    assert!(hostile.is_ok(), "{hostile:?}");
}
