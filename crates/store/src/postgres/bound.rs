//! Connections bound to one tenant (row-level security, migration 0005): a read made for a
//! tenant runs as the role `syncropel_tenant` with the tenant in `syncropel.tenant`, so that a
//! statement that forgot its `tenant = $1` still sees that tenant's rows alone. The binding is
//! made on the connection when it is taken from its pool and undone when it goes back, before
//! anyone else can take it; a connection that cannot be reset is closed instead.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor as _, Postgres};

use crate::Result;

/// A connection of `pool` that sees `tenant`'s rows alone until it goes back to the pool,
/// which must have been made with [`unbinding`].
pub(super) async fn bound(pool: &PgPool, tenant: &str) -> Result<PoolConnection<Postgres>> {
    let mut conn = pool.acquire().await?;
    sqlx::query(
        "SELECT set_config('role', 'syncropel_tenant', false), \
         set_config('syncropel.tenant', $1, false)",
    )
    .bind(tenant)
    .execute(&mut *conn)
    .await?;
    Ok(conn)
}

/// Pool options whose connections drop any tenant binding as they go back to the pool.
pub(super) fn unbinding(options: PgPoolOptions) -> PgPoolOptions {
    options.after_release(|conn, _| {
        Box::pin(async move {
            conn.execute("RESET ROLE; RESET syncropel.tenant").await?;
            Ok(true)
        })
    })
}
