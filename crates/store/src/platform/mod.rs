//! The hosted platform's own tables, beside the records of its tenants: tenants with their sealed
//! keys, provisionings, and the leases of pull jobs (schema: `migrations/postgres/0002_tenants.sql`
//! and `0004_pull_leases.sql`). The steward's hosted mode decides; every statement it runs is here.

mod leases;
mod provisions;
mod tenants;

use sqlx::PgPool;

use crate::{Result, StoreError};

pub use leases::LeasedJob;
pub use provisions::{LabelHolder, NewProvision, NewTenant, ProvisionRow, Reservation};
pub use tenants::{LiveTenant, SealedTenant, TenantOrigin, TenantState};

/// The unique index that a second live tenant with the same label violates: an insert refused
/// with [`StoreError::Conflict`] naming it lost a race for the label.
pub const LIVE_LABEL_CONSTRAINT: &str = "tenants_live_label";

/// The platform's tables, on the hosted record store's connection pool (see
/// [`crate::PgStore::platform`]); closing that store closes this too.
#[derive(Clone)]
pub struct PlatformStore {
    pub(crate) pool: PgPool,
}

/// A unique violation becomes [`StoreError::Conflict`] naming its constraint, so that a caller
/// can tell which rule a write broke; anything else stays a database error.
fn conflict(e: sqlx::Error) -> StoreError {
    let constraint = e
        .as_database_error()
        .filter(|d| d.is_unique_violation())
        .and_then(|d| d.constraint())
        .map(str::to_string);
    match constraint {
        Some(constraint) => StoreError::Conflict { constraint },
        None => StoreError::Database(e),
    }
}

/// Deletes everything stored for `tenant` (records, thread summaries, its counter, service
/// accounts, tokens, federation state, pull leases) and marks it purged, inside the caller's
/// transaction: the end of a deleted tenant's grace period. A lease left behind would run its
/// job under whichever tenant takes the label next.
async fn purge(conn: &mut sqlx::PgConnection, tenant: &str) -> Result<()> {
    for table in [
        "records",
        "threads",
        "tenant_counters",
        "service_accounts",
        "tokens",
        "federation_state",
        "pull_leases",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1"))
            .bind(tenant)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "UPDATE tenants SET status = 'purged', key_sealed = '', key_nonce = '' WHERE id = $1",
    )
    .bind(tenant)
    .execute(conn)
    .await?;
    Ok(())
}
