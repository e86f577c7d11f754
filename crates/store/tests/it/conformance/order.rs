//! Reads in sequence order: column scans, cursors under concurrent writers, announcements.

use std::sync::Arc;
use std::time::Duration;

use syncropel_store::query::Column;
use syncropel_store::{Committed, ListFilter, RecordStore};

use super::{all, two_threads};
use crate::common::record;

pub async fn scan_pushes_column_equalities_down(store: Arc<dyn RecordStore>) {
    two_threads(&*store, 4, "a", "b").await;
    let scan = |columns: Vec<(Column, String)>, after_seq: i64, limit: u32| {
        let store = store.clone();
        async move { store.scan("t", &columns, after_seq, limit).await.unwrap() }
    };
    let bobs = scan(vec![(Column::Actor, "bob".into())], 0, 100).await;
    assert_eq!(bobs.len(), 4);
    assert!(bobs.iter().all(|r| r.thread == "th_b"));
    assert!(bobs.windows(2).all(|w| w[0].seq < w[1].seq));
    let after = scan(vec![(Column::Actor, "bob".into())], bobs[1].seq, 1).await;
    assert_eq!(after, vec![bobs[2].clone()]);
    let none = scan(
        vec![
            (Column::Actor, "bob".into()),
            (Column::Thread, "th_a".into()),
        ],
        0,
        100,
    )
    .await;
    assert!(none.is_empty());
    // Non-text columns are left to the caller: they do not narrow.
    let clocks = scan(
        vec![
            (Column::Clock, "1".into()),
            (Column::Namespace, "default".into()),
        ],
        0,
        100,
    )
    .await;
    assert_eq!(clocks.len(), 8);
    let by_id = scan(vec![(Column::Id, bobs[0].id.clone())], 0, 100).await;
    assert_eq!(by_id, vec![bobs[0].clone()]);
}

/// Concurrent writers and a concurrent reader: a reader that pages by cursor never sees a record
/// with a smaller sequence appear after it moved past it, and ends with every acknowledged record.
pub async fn cursors_never_skip_a_committed_record(store: Arc<dyn RecordStore>) {
    let writer = |tenant: &'static str, w: usize| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for clock in 0..250 {
                let r = store
                    .append(tenant, record("th", &format!("w{w}"), clock, "x"))
                    .await
                    .unwrap();
                acked.push(r.record().seq);
            }
            acked
        })
    };
    let writers: Vec<_> = (0..8).map(|w| writer("t", w)).collect();
    // Another tenant writing at the same time shares the batches but not the numbering.
    let others: Vec<_> = (0..2).map(|w| writer("u", w)).collect();
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
    for w in others {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    acked.sort();
    assert_eq!(
        seen, acked,
        "the paging reader saw every record exactly once, in order"
    );
    assert_eq!(store.list("u", &all(1000)).await.unwrap().len(), 500);
}

pub async fn committed_records_are_announced_in_sequence_order(store: Arc<dyn RecordStore>) {
    let mut events = store.subscribe();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append("t", record("th", "a", i, "x")).await.unwrap() })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap().record().clone());
    }
    // A replay is not announced again; the next record is.
    store.append("t", record("th", "a", 0, "x")).await.unwrap();
    let last_one = store.append("t", record("th", "a", 50, "x")).await.unwrap();
    acked.push(last_one.record().clone());
    acked.sort_by_key(|r| r.seq);

    let mut announced: Vec<Committed> = Vec::new();
    for _ in 0..acked.len() {
        let c = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("announcement within 10 s")
            .unwrap();
        if let Some(prev) = announced.last() {
            assert!(c.seq > prev.seq, "announced in sequence order");
        }
        announced.push(c);
    }
    let expected: Vec<Committed> = acked
        .iter()
        .map(|r| Committed {
            tenant: "t".into(),
            thread: r.thread.clone(),
            seq: r.seq,
        })
        .collect();
    assert_eq!(
        announced, expected,
        "every committed record announced once, by tenant, thread and sequence"
    );
}
