//! One conformance suite, two backends: every scenario runs against SQLite (a real database
//! file) and against Postgres (a database of its own, created and dropped per test).

mod auth;
mod order;
mod records;
mod search;
mod state;

use syncropel_store::{ListFilter, RecordStore};

use crate::common::record;

/// Generates `sqlite::<scenario>` and `postgres::<scenario>` tests for each `area::scenario`.
macro_rules! conformance {
    ($($area:ident :: $scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    crate::common::on_sqlite(super::$area::$scenario).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    crate::common::on_postgres(super::$area::$scenario).await
                }
            )*
        }
    };
}

conformance!(
    records::append_is_idempotent_and_refuses_duplicate_clocks,
    records::concurrent_replays_store_one_record,
    records::tenants_are_isolated,
    records::lists_filter_and_threads_summarise,
    order::scan_pushes_column_equalities_down,
    order::cursors_never_skip_a_committed_record,
    order::committed_records_are_announced_in_sequence_order,
    search::search_sees_every_record_committed_before_it,
    search::search_refuses_no_words_and_reads_awkward_bodies,
    auth::auth_changes_apply_with_their_audit_record,
    auth::concurrent_token_lookups_each_get_their_own_answer,
    state::writes_move_state_with_their_records_and_replace_only_stubs,
    state::state_pages_follow_key_order_prefix_and_tenant,
);

fn all(limit: u32) -> ListFilter {
    ListFilter {
        limit,
        ..Default::default()
    }
}

/// Appends `n` records by alice saying `a` on `th_a` and by bob saying `b` on `th_b`, in turns.
async fn two_threads(store: &dyn RecordStore, n: i64, a: &str, b: &str) {
    for clock in 0..n {
        store
            .append("t", record("th_a", "alice", clock, a))
            .await
            .unwrap();
        store
            .append("t", record("th_b", "bob", clock, b))
            .await
            .unwrap();
    }
}
