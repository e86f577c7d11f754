//! Readiness of both backends: the database answers and holds every migration of this build.

use syncropel_store::{PgStore, RecordStore, SqliteStore, StoreError};

const FORGET_NEWEST: &str = "DELETE FROM _sqlx_migrations \
                             WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";

fn behind(result: Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::MigrationsBehind { applied, needed }) if applied < needed)
}

#[tokio::test]
async fn sqlite_is_ready_only_with_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.check_ready().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(FORGET_NEWEST).execute(&pool).await.unwrap();
    assert!(behind(store.check_ready().await));
    store.close().await;
}

#[tokio::test]
async fn postgres_is_ready_only_with_every_migration() {
    syncropel_store::testing::with_test_database(|url| async move {
        let store = PgStore::open(&url).await.unwrap();
        store.check_ready().await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(FORGET_NEWEST).execute(&pool).await.unwrap();
        pool.close().await;
        assert!(behind(store.check_ready().await));
        store.close().await;
    })
    .await;
}
