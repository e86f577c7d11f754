//! The statements both backends run the same way: reads of records, threads, state and service
//! accounts, and the state and auth changes of the writer. Their text is the same on both (sqlx
//! binds `$n` placeholders on SQLite too); only a list of strings is stored differently (a
//! `text[]` in Postgres, JSON text in SQLite).
//!
//! They are written once, in a macro that each backend expands for its own `sqlx::Database`
//! with its `encode_list` and `decode_list`: generic functions over
//! `sqlx::Database` would have to repeat the encode, decode and executor bounds of every type
//! they touch on every function.

/// Expands, in the calling module, `pub(super)` functions over the database `db`:
/// `encode_list: fn(&[String]) -> impl Encode` binds a list column and
/// `decode_list: fn(&Row, &str) -> Result<Vec<String>>` decodes one.
macro_rules! statements {
    (
        db: $db:ty,
        encode_list: $encode_list:path,
        decode_list: $decode_list:path,
        by_seq: $by_seq:expr $(,)?
    ) => {
        use sqlx::Row as _;

        /// A records row (`seq, id, thread, record_json`) as handed out.
        pub(super) fn stored_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::StoredRecord {
            let seq: i64 = row.get("seq");
            $crate::StoredRecord {
                seq,
                id: row.get("id"),
                thread: row.get("thread"),
                json: $crate::with_sequence(row.get("record_json"), seq),
            }
        }

        pub(super) fn service_account_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::Result<$crate::ServiceAccount> {
            Ok($crate::ServiceAccount {
                id: row.get("id"),
                name: row.get("name"),
                scopes: $decode_list(row, "scopes")?,
                allowed_actors: $decode_list(row, "allowed_actors")?,
                created_at: row.get("created_at"),
            })
        }

        /// A token joined with its account's `allowed_actors`.
        pub(super) fn token_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::Result<$crate::TokenGrant> {
            Ok($crate::TokenGrant {
                token_id: row.get("token_id"),
                sa_id: row.get("sa_id"),
                scopes: $decode_list(row, "scopes")?,
                allowed_actors: $decode_list(row, "allowed_actors")?,
                created_at: row.get("created_at"),
                expires_at: row.get("expires_at"),
                revoked_at: row.get("revoked_at"),
                grant_id: row.get("grant_id"),
            })
        }

        pub(super) async fn apply_state(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: &str,
            change: &$crate::StateChange,
        ) -> Result<(), sqlx::Error> {
            use $crate::StateChange;
            let now = $crate::unix_now();
            match change {
                StateChange::Put { kind, key, value }
                | StateChange::PutIfAbsent { kind, key, value } => {
                    let sql = if matches!(change, StateChange::PutIfAbsent { .. }) {
                        "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                    } else {
                        "INSERT INTO federation_state (tenant, kind, key, value, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, kind, key) \
                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                    };
                    sqlx::query(sql)
                        .bind(tenant)
                        .bind(kind)
                        .bind(key)
                        .bind(value)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                StateChange::Delete { kind, key } => {
                    sqlx::query(
                        "DELETE FROM federation_state WHERE tenant = $1 AND kind = $2 AND key = $3",
                    )
                    .bind(tenant)
                    .bind(kind)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(())
        }

        pub(super) async fn apply_change(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: &str,
            change: &$crate::AuthChange,
        ) -> $crate::Result<$crate::Result<bool>> {
            use $crate::{AuthChange, StoreError};
            Ok(match change {
                AuthChange::CreateServiceAccount(sa) => {
                    let done = sqlx::query(
                        "INSERT INTO service_accounts \
                         (tenant, id, name, scopes, allowed_actors, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(&sa.id)
                    .bind(&sa.name)
                    .bind($encode_list(&sa.scopes))
                    .bind($encode_list(&sa.allowed_actors))
                    .bind(sa.created_at)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 1 {
                        Ok(true)
                    } else {
                        Err(StoreError::ServiceAccountExists(sa.id.clone()))
                    }
                }
                AuthChange::MintToken {
                    token_id,
                    sa_id,
                    created_at,
                    expires_at,
                    grant_id,
                } => {
                    // The token snapshots the account's scopes at mint time.
                    let done = sqlx::query(
                        "INSERT INTO tokens \
                         (tenant, token_id, sa_id, scopes, created_at, expires_at, grant_id) \
                         SELECT tenant, $1, id, scopes, $2, $3, $4 FROM service_accounts \
                         WHERE tenant = $5 AND id = $6 ON CONFLICT DO NOTHING",
                    )
                    .bind(token_id)
                    .bind(created_at)
                    .bind(expires_at)
                    .bind(grant_id)
                    .bind(tenant)
                    .bind(sa_id)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 1 {
                        Ok(true)
                    } else {
                        // A failed change must not fail the other writes of its batch: it is
                        // refused alone.
                        let exists: Option<i32> = sqlx::query_scalar(
                            "SELECT 1 FROM tokens WHERE tenant = $1 AND token_id = $2",
                        )
                        .bind(tenant)
                        .bind(token_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        Err(match exists {
                            Some(_) => StoreError::TokenExists(token_id.clone()),
                            None => StoreError::UnknownServiceAccount(sa_id.clone()),
                        })
                    }
                }
                AuthChange::RevokeToken {
                    token_id,
                    revoked_at,
                } => {
                    let done = sqlx::query(
                        "UPDATE tokens SET revoked_at = $1 \
                         WHERE tenant = $2 AND token_id = $3 AND revoked_at IS NULL",
                    )
                    .bind(revoked_at)
                    .bind(tenant)
                    .bind(token_id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                AuthChange::ParentTokens { sa_id, grant_id } => {
                    sqlx::query(
                        "UPDATE tokens SET grant_id = $1 WHERE tenant = $2 AND sa_id = $3 \
                         AND revoked_at IS NULL AND grant_id IS NULL",
                    )
                    .bind(grant_id)
                    .bind(tenant)
                    .bind(sa_id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(true)
                }
            })
        }

        /// Removes the stored stubs holding `record`'s id or `(thread, actor, clock)`, with
        /// their share of the thread summary (and, in Postgres, of the tenant's bytes).
        pub(super) async fn remove_stubs_blocking(
            conn: &mut <$db as sqlx::Database>::Connection,
            tenant: &str,
            record: &$crate::NewRecord,
        ) -> $crate::Result<bool> {
            let rows = sqlx::query(
                "SELECT seq, thread, record_json FROM records WHERE tenant = $1 \
                 AND (id = $2 OR (thread = $3 AND actor = $4 AND clock = $5))",
            )
            .bind(tenant)
            .bind(&record.id)
            .bind(&record.thread)
            .bind(&record.actor)
            .bind(record.clock)
            .fetch_all(&mut *conn)
            .await?;
            let mut removed = false;
            for row in rows {
                let json: String = row.get("record_json");
                if !$crate::is_stub(&json) {
                    continue;
                }
                let seq: i64 = row.get("seq");
                let thread: String = row.get("thread");
                sqlx::query("DELETE FROM records WHERE tenant = $1 AND seq = $2")
                    .bind(tenant)
                    .bind(seq)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "UPDATE threads SET record_count = record_count - 1 \
                     WHERE tenant = $1 AND thread = $2",
                )
                .bind(tenant)
                .bind(&thread)
                .execute(&mut *conn)
                .await?;
                if <$db as sqlx::Database>::NAME == "PostgreSQL" {
                    sqlx::query("UPDATE tenant_counters SET bytes = bytes - $2 WHERE tenant = $1")
                        .bind(tenant)
                        .bind(json.len() as i64)
                        .execute(&mut *conn)
                        .await?;
                }
                removed = true;
            }
            Ok(removed)
        }

        pub(super) async fn state_get(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            kind: &str,
            key: &str,
        ) -> $crate::Result<Option<String>> {
            Ok(sqlx::query_scalar(
                "SELECT value FROM federation_state WHERE tenant = $1 AND kind = $2 AND key = $3",
            )
            .bind(tenant)
            .bind(kind)
            .bind(key)
            .fetch_optional(db)
            .await?)
        }

        pub(super) async fn state_list(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            kind: &str,
        ) -> $crate::Result<Vec<(String, String)>> {
            let rows = sqlx::query(
                "SELECT key, value FROM federation_state WHERE tenant = $1 AND kind = $2 ORDER BY key",
            )
            .bind(tenant)
            .bind(kind)
            .fetch_all(db)
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get("key"), r.get("value")))
                .collect())
        }

        pub(super) async fn state_page(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            kind: &str,
            prefix: &str,
            after: &str,
            limit: u32,
        ) -> $crate::Result<Vec<(String, String)>> {
            // A prefix compared with `substr`, not as a key range: under a linguistic collation
            // the keys starting with a prefix need not sort next to it.
            let rows = sqlx::query(
                "SELECT key, value FROM federation_state WHERE tenant = $1 AND kind = $2 \
                 AND substr(key, 1, length($3)) = $3 AND key > $4 ORDER BY key LIMIT $5",
            )
            .bind(tenant)
            .bind(kind)
            .bind(prefix)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(db)
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get("key"), r.get("value")))
                .collect())
        }

        pub(super) async fn state_count(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            kind: &str,
        ) -> $crate::Result<u64> {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM federation_state WHERE tenant = $1 AND kind = $2",
            )
            .bind(tenant)
            .bind(kind)
            .fetch_one(db)
            .await?;
            Ok(u64::try_from(count).unwrap_or(0))
        }

        pub(super) async fn get(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            id: &str,
        ) -> $crate::Result<Option<$crate::StoredRecord>> {
            let row = sqlx::query(
                "SELECT seq, id, thread, record_json FROM records WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_optional(db)
            .await?;
            Ok(row.map(|r| stored_from_row(&r)))
        }

        /// Postgres cuts a page at its byte budget itself, by the running total of the rows'
        /// sizes (OCTET_LENGTH reads a stored value's size without loading it), so no row past
        /// the budget is read or sent; dropping a result early would not stop the server from
        /// sending it. SQLite hands rows over one at a time and [`read_page`] stops at the
        /// budget; a window there would only cost a copy of every row.
        fn cuts_in_sql(max_bytes: Option<usize>) -> Option<i64> {
            let postgres = <$db as sqlx::Database>::NAME == "PostgreSQL";
            max_bytes
                .filter(|_| postgres)
                .map(|max| i64::try_from(max).unwrap_or(i64::MAX))
        }

        /// `SELECT seq, id, thread, record_json FROM records WHERE tenant = $tenant` (the caller
        /// adds conditions, then `ORDER BY seq LIMIT n` and [`close_select`]).
        /// `SELECT … FROM records WHERE tenant = <tenant>`; `by_seq` when no thread narrows the
        /// rows, so that the backend walks them in sequence order from the cursor on (see the
        /// macro's `by_seq`).
        fn open_select<'a>(
            sql: &mut sqlx::QueryBuilder<'a, $db>,
            tenant: &'a str,
            cut: Option<i64>,
            by_seq: bool,
        ) {
            let from = if by_seq { $by_seq } else { "records" };
            if cut.is_some() {
                sql.push(format_args!(
                    "SELECT seq, id, thread, record_json FROM (SELECT seq, id, thread, record_json, \
                     SUM(OCTET_LENGTH(record_json)) OVER (ORDER BY seq) \
                     - OCTET_LENGTH(record_json) AS bytes_before FROM {from} WHERE tenant = "
                ));
            } else {
                sql.push(format_args!(
                    "SELECT seq, id, thread, record_json FROM {from} WHERE tenant = "
                ));
            }
            sql.push_bind(tenant);
        }

        fn close_select(sql: &mut sqlx::QueryBuilder<'_, $db>, cut: Option<i64>) {
            if let Some(max) = cut {
                sql.push(") AS page WHERE bytes_before < ")
                    .push_bind(max)
                    .push(" ORDER BY seq");
            }
        }

        /// The rows of `query`, up to the first that reaches `max_bytes` of record JSON.
        async fn read_page(
            db: impl sqlx::Executor<'_, Database = $db>,
            mut sql: sqlx::QueryBuilder<'_, $db>,
            max_bytes: Option<usize>,
        ) -> $crate::Result<Vec<$crate::StoredRecord>> {
            use futures_util::TryStreamExt as _;
            let mut rows = sql.build().fetch(db);
            let mut page = Vec::new();
            let mut bytes = 0;
            while let Some(row) = rows.try_next().await? {
                let record = stored_from_row(&row);
                bytes += record.json.len();
                page.push(record);
                if max_bytes.is_some_and(|max| bytes >= max) {
                    break;
                }
            }
            Ok(page)
        }

        /// The query of [`crate::RecordStore::list`].
        pub(super) fn push_list_query<'a>(
            sql: &mut sqlx::QueryBuilder<'a, $db>,
            tenant: &'a str,
            filter: &'a $crate::ListFilter,
        ) {
            let cut = cuts_in_sql(filter.max_bytes);
            open_select(sql, tenant, cut, filter.thread.is_none());
            sql.push(" AND seq > ").push_bind(filter.after_seq);
            if let Some(thread) = &filter.thread {
                sql.push(" AND thread = ").push_bind(thread);
            }
            if let Some(actor) = &filter.actor {
                sql.push(" AND actor = ").push_bind(actor);
            }
            if let Some(since) = filter.since_clock {
                sql.push(" AND clock >= ").push_bind(since);
            }
            sql.push(" ORDER BY seq LIMIT ")
                .push_bind(i64::from(filter.limit));
            close_select(sql, cut);
        }

        pub(super) async fn list(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            filter: &$crate::ListFilter,
        ) -> $crate::Result<Vec<$crate::StoredRecord>> {
            let mut sql = sqlx::QueryBuilder::<$db>::new("");
            push_list_query(&mut sql, tenant, filter);
            read_page(db, sql, filter.max_bytes).await
        }

        pub(super) async fn threads(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            before_seq: Option<i64>,
            limit: u32,
        ) -> $crate::Result<Vec<$crate::ThreadSummary>> {
            let rows = sqlx::query(
                "SELECT thread, namespace, record_count, last_clock, last_seq FROM threads \
                 WHERE tenant = $1 AND last_seq < $2 ORDER BY last_seq DESC LIMIT $3",
            )
            .bind(tenant)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(db)
            .await?;
            Ok(rows
                .iter()
                .map(|r| $crate::ThreadSummary {
                    id: r.get("thread"),
                    namespace: r.get("namespace"),
                    record_count: r.get("record_count"),
                    last_clock: r.get("last_clock"),
                    last_seq: r.get("last_seq"),
                })
                .collect())
        }

        pub(super) async fn scan(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            equalities: &[($crate::query::Column, String)],
            after_seq: i64,
            limit: u32,
        ) -> $crate::Result<Vec<$crate::StoredRecord>> {
            let max_bytes = Some($crate::SCAN_PAGE_BYTES);
            let cut = cuts_in_sql(max_bytes);
            let mut sql = sqlx::QueryBuilder::<$db>::new("");
            // A thread or an id is looked up by its index; anything else walks in order.
            let indexed = equalities.iter().any(|(column, _)| {
                matches!(column, $crate::query::Column::Thread | $crate::query::Column::Id)
            });
            open_select(&mut sql, tenant, cut, !indexed);
            sql.push(" AND seq > ").push_bind(after_seq);
            for (column, value) in equalities {
                let Some(name) = $crate::shared::text_column(*column) else {
                    continue;
                };
                sql.push(format_args!(" AND {name} = ")).push_bind(value);
            }
            sql.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
            close_select(&mut sql, cut);
            read_page(db, sql, max_bytes).await
        }

        pub(super) async fn has_service_accounts(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
        ) -> $crate::Result<bool> {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM service_accounts WHERE tenant = $1 LIMIT 1")
                    .bind(tenant)
                    .fetch_optional(db)
                    .await?;
            Ok(found.is_some())
        }

        pub(super) async fn service_accounts(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
        ) -> $crate::Result<Vec<$crate::ServiceAccount>> {
            let rows = sqlx::query(
                "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
                 WHERE tenant = $1 ORDER BY created_at, id",
            )
            .bind(tenant)
            .fetch_all(db)
            .await?;
            rows.iter().map(service_account_from_row).collect()
        }

        pub(super) async fn service_account(
            db: impl sqlx::Executor<'_, Database = $db>,
            tenant: &str,
            id: &str,
        ) -> $crate::Result<Option<$crate::ServiceAccount>> {
            let row = sqlx::query(
                "SELECT id, name, scopes, allowed_actors, created_at FROM service_accounts \
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_optional(db)
            .await?;
            row.as_ref().map(service_account_from_row).transpose()
        }

        /// Readiness: the database answers and holds every migration of `migrator`.
        pub(super) async fn check_ready(
            db: impl sqlx::Executor<'_, Database = $db>,
            migrator: &sqlx::migrate::Migrator,
        ) -> $crate::Result<()> {
            let applied: Option<i64> = sqlx::query_scalar($crate::APPLIED_MIGRATION)
                .fetch_one(db)
                .await?;
            $crate::migrations_ready(migrator, applied)
        }
    };
}

pub(crate) use statements;
