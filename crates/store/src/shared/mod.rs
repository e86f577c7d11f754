//! What the SQLite and Postgres backends share, written once: the group-commit writer's core
//! ([`writer`]) and the statements whose text and binding are the same on both
//! ([`statements!`]).

mod statements;
pub(crate) mod writer;

pub(crate) use statements::statements;

use crate::query::Column;

/// Most writes one transaction takes. Large enough to amortise an fsync over a burst, small enough
/// that the first waiter of a batch is not held long.
pub(crate) const MAX_BATCH: usize = 1024;
/// Queue depth in front of a writer; callers wait (backpressure) when it is full.
pub(crate) const QUEUE_DEPTH: usize = 8192;
/// Watchers that fall further behind than this are told to reconnect.
pub(crate) const EVENT_CAPACITY: usize = 16384;

/// Only text columns can take a pushed-down string equality.
pub(crate) fn text_column(column: Column) -> Option<&'static str> {
    match column {
        Column::Id => Some("id"),
        Column::Thread => Some("thread"),
        Column::Actor => Some("actor"),
        Column::Act => Some("act"),
        Column::DataType => Some("data_type"),
        Column::Namespace => Some("namespace"),
        Column::Clock | Column::CreatedAt => None,
    }
}
