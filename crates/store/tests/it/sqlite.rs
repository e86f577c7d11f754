//! The SQLite file store's disk use: its WAL stays bounded under sustained writes while readers
//! keep reading, and a clean stop leaves none behind.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use syncropel_store::{ListFilter, RecordStore, SqliteStore};

use crate::common::record_with_body;

fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_wal_stays_bounded_under_sustained_writes_and_is_gone_after_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let store: Arc<dyn RecordStore> = Arc::new(SqliteStore::open_file(&db).await.unwrap());
    let body = serde_json::json!({ "s": "w".repeat(500_000) }).to_string();

    // Readers that never pause: without a RESTART checkpoint the WAL could never start over.
    let writing = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, writing) = (store.clone(), writing.clone());
            tokio::spawn(async move {
                let filter = ListFilter {
                    thread: Some("th_wal".into()),
                    limit: 2,
                    ..ListFilter::default()
                };
                while writing.load(Ordering::Relaxed) {
                    store.list("t", &filter).await.unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    // 400 records of 500 KB: 200 MB through a WAL that starts over past 16 MiB.
    for chunk in 0..40 {
        let writes = (0..10).map(|i| {
            let clock = chunk * 10 + i;
            let record = record_with_body(&format!("r{clock}"), "th_wal", "a", clock, &body);
            store.append("t", record)
        });
        for written in futures_util::future::join_all(writes).await {
            written.unwrap();
        }
        largest = largest.max(wal_bytes(&db));
    }
    writing.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    // The writer starts the WAL over past 16 MiB, checked every 250 ms.
    assert!(
        largest < 64 * 1024 * 1024,
        "the WAL reached {largest} bytes while 200 MB were written"
    );

    store.close().await;
    assert_eq!(wal_bytes(&db), 0, "a clean stop leaves no WAL");
    let reopened = SqliteStore::open_file(&db).await.unwrap();
    assert_eq!(reopened.head_seq("t").await.unwrap(), 400);
    reopened.close().await;
}

/// Two stores opening one new file at the same moment (a `spl` command while `spl serve` makes
/// its store) both migrate it: the second goes on where the first left off instead of failing on
/// a table the first made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_opening_a_new_file_at_once_both_open_it() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let (first, second) =
            tokio::join!(SqliteStore::open_file(&path), SqliteStore::open_file(&path));
        let (first, second) = (first.unwrap(), second.unwrap());
        first.check_ready().await.unwrap();
        second.check_ready().await.unwrap();
        first.close().await;
        second.close().await;
    }
}
