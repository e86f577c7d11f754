//! Token lookups in batches: whatever queued while the previous query ran goes into the next one
//! (every request looks its token up, so under load this saves most round trips).

use std::collections::HashMap;

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::sql::token_from_row;
use crate::shared::MAX_BATCH;
use crate::{Result, StoreError, TokenGrant};

/// One token lookup waiting for the next batch.
pub(super) struct TokenLookup {
    pub(super) tenant: String,
    pub(super) token_id: String,
    pub(super) reply: oneshot::Sender<Result<Option<TokenGrant>>>,
}

/// Answers token lookups until every sender is gone.
pub(super) async fn run_token_lookups(pool: PgPool, mut queue: mpsc::Receiver<TokenLookup>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match lookup(&pool, &batch).await {
            Ok(found) => {
                for lookup in batch.drain(..) {
                    // The same token may be asked for twice in one batch: both get it.
                    let grant = found.get(&(lookup.tenant, lookup.token_id)).cloned();
                    let _ = lookup.reply.send(Ok(grant));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for lookup in batch.drain(..) {
                    let _ = lookup
                        .reply
                        .send(Err(StoreError::ReadFailed(message.clone())));
                }
            }
        }
    }
}

/// The grants of a batch's tokens, by `(tenant, token_id)`.
async fn lookup(
    pool: &PgPool,
    batch: &[TokenLookup],
) -> Result<HashMap<(String, String), TokenGrant>> {
    let tenants: Vec<&str> = batch.iter().map(|l| l.tenant.as_str()).collect();
    let ids: Vec<&str> = batch.iter().map(|l| l.token_id.as_str()).collect();
    let rows = sqlx::query(
        "SELECT t.tenant, t.token_id, t.sa_id, t.scopes, s.allowed_actors, t.created_at, \
                t.expires_at, t.revoked_at, t.grant_id \
         FROM UNNEST($1::text[], $2::text[]) AS k(tenant, token_id) \
         JOIN tokens t ON t.tenant = k.tenant AND t.token_id = k.token_id \
         JOIN service_accounts s ON s.tenant = t.tenant AND s.id = t.sa_id",
    )
    .bind(&tenants)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let grant = token_from_row(r)?;
            Ok(((r.get("tenant"), grant.token_id.clone()), grant))
        })
        .collect()
}
