//! The hosted steward over real Postgres: provisioning (JWT, idempotency, labels, limits, grace
//! periods), tenants addressed by host and by path prefix, isolation on every route, and replicas
//! that share one database (in this process and as `steward` processes killed mid-burst).

mod isolation;
mod provisioning;
mod replicas;
mod sweep;

use syncropel_testkit::hosted::Replica;
use syncropel_testkit::Sql;

/// Direct SQL on a replica's database.
fn sql(replica: &Replica) -> Sql {
    Sql::of(replica.platform().store())
}

async fn count(replica: &Replica, query: &str) -> i64 {
    sql(replica).scalar(query, &[]).await
}
