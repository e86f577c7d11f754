//! Query plans of the list query, to check that it touches one tenant's partition only.

use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::sql::push_list_query;
use super::PgStore;
use crate::{ListFilter, Result};

impl PgStore {
    /// `EXPLAIN (FORMAT JSON)` of the exact query [`crate::RecordStore::list`] runs, for tests and
    /// operators: the plan must touch exactly one `records_p*` partition. With `generic_plan` the
    /// query is planned as a cached statement is after a few executions: once, with the tenant
    /// a parameter (pruned at executor start, "Subplans Removed"); otherwise with its values.
    pub async fn explain_list(
        &self,
        tenant: &str,
        filter: &ListFilter,
        generic_plan: bool,
    ) -> Result<String> {
        let mut pooled = super::bound::bound(&self.records_pool, tenant).await?;
        let conn: &mut PgConnection = &mut pooled;
        let mut list = QueryBuilder::<Postgres>::new("");
        push_list_query(&mut list, tenant, filter);
        let row = if generic_plan {
            sqlx::query("SET plan_cache_mode = force_generic_plan")
                .execute(&mut *conn)
                .await?;
            let prepare = format!("PREPARE explain_list AS {}", list.sql());
            // Simple protocol: its `$n` are the prepared statement's own parameters.
            sqlx::Executor::execute(&mut *conn, prepare.as_str()).await?;
            // The same arguments, in the order `push_list_query` binds them. EXECUTE under
            // EXPLAIN takes no bound parameters, so they are literals here (text quoted the
            // standard way: `standard_conforming_strings` is on since Postgres 9.1).
            let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
            let mut args = vec![text(tenant), filter.after_seq.to_string()];
            args.extend(filter.thread.as_deref().map(text));
            args.extend(filter.actor.as_deref().map(text));
            args.extend(filter.since_clock.map(|c| c.to_string()));
            args.push(filter.limit.to_string());
            let explain = format!(
                "EXPLAIN (FORMAT JSON) EXECUTE explain_list({})",
                args.join(", ")
            );
            let row = sqlx::query(&explain).fetch_one(&mut *conn).await;
            for reset in ["DEALLOCATE explain_list", "RESET plan_cache_mode"] {
                sqlx::query(reset).execute(&mut *conn).await?;
            }
            row?
        } else {
            let mut explain = QueryBuilder::<Postgres>::new("EXPLAIN (FORMAT JSON) ");
            push_list_query(&mut explain, tenant, filter);
            explain.build().fetch_one(&mut *conn).await?
        };
        // The plan column is `json`; its wire form is the text itself.
        Ok(row.try_get_unchecked::<String, _>(0)?)
    }
}
