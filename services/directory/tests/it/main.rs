//! The directory's integration tests, one binary: the directory over real HTTP, every scenario
//! against SQLite (a temporary file) and Postgres (a database of its own on the server of
//! `DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod ident;
mod limits;
mod log;
mod names;
mod server;
mod serving;

/// The manual clock's start, in seconds since the epoch.
const T0: i64 = 1_777_636_800;
const HOUR: i64 = 3600;

/// Each `area::scenario` once per backend, as `sqlite::<scenario>` and `postgres::<scenario>`.
macro_rules! scenarios {
    ($($area:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("directory.db").display());
                    super::$area::$name(url).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    syncropel_store::testing::with_test_database(super::$area::$name).await;
                }
            )*
        }
    };
}

scenarios!(
    log::create_resolve_and_retry,
    log::update_endpoint,
    log::rotate_signing_keys,
    log::recovery_inside_window,
    log::recovery_outside_window,
    log::forged_replayed_and_stale_ops,
    names::handles,
    names::recovered_handles_count_only_live_ops,
    names::tombstone,
    names::namespace_peers,
    serving::export_paging,
    limits::rate_limit,
    limits::geneses_per_address,
    limits::rate_limit_spares_recovery,
    limits::bad_input_changes_nothing,
    limits::malformed_requests,
    serving::concurrent_writes_are_serialized,
    serving::probes_follow_the_database_and_the_drain,
);
