//! What only the Postgres backend promises: partition pruning by tenant, and several stores
//! (steward replicas) on one database seeing each other's writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use syncropel_store::testing::with_test_database;
use syncropel_store::{Appended, ListFilter, PgStore, RecordStore};

use crate::common::record;

/// The largest "Subplans Removed" of a plan: partitions pruned at executor start.
fn subplans_removed(plan: &serde_json::Value) -> u64 {
    match plan {
        serde_json::Value::Object(members) => members
            .iter()
            .map(|(key, value)| match key.as_str() {
                "Subplans Removed" => value.as_u64().unwrap_or(0),
                _ => subplans_removed(value),
            })
            .max()
            .unwrap_or(0),
        serde_json::Value::Array(items) => items.iter().map(subplans_removed).max().unwrap_or(0),
        _ => 0,
    }
}

fn relation_names(plan: &serde_json::Value, out: &mut BTreeSet<String>) {
    match plan {
        serde_json::Value::Object(members) => {
            for (key, value) in members {
                if key == "Relation Name" {
                    out.insert(value.as_str().unwrap_or_default().to_string());
                }
                relation_names(value, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| relation_names(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_list_query_touches_exactly_one_partition() {
    with_test_database(|url| async move {
        let store = PgStore::open(&url).await.unwrap();
        // Tenants spread over several partitions, so pruning has something to prune.
        for tenant in ["t", "u", "v", "w", "x", "y", "z"] {
            for clock in 0..3 {
                store
                    .append(tenant, record("th", "alice", clock, "x"))
                    .await
                    .unwrap();
            }
        }
        let filters = [
            ListFilter {
                limit: 100,
                ..Default::default()
            },
            ListFilter {
                thread: Some("th".into()),
                after_seq: 1,
                limit: 10,
                ..Default::default()
            },
            ListFilter {
                actor: Some("alice".into()),
                since_clock: Some(1),
                limit: 10,
                ..Default::default()
            },
        ];
        let mut partitions_of = Vec::new();
        for tenant in ["t", "u", "v", "w", "x", "y", "z"] {
            for (filter, generic) in filters.iter().flat_map(|f| [(f, false), (f, true)]) {
                let plan = store.explain_list(tenant, filter, generic).await.unwrap();
                let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
                let mut relations = BTreeSet::new();
                relation_names(&plan, &mut relations);
                assert_eq!(
                    relations.len(),
                    1,
                    "{tenant} {filter:?}: {relations:?}\n{plan:#}"
                );
                if generic {
                    // Planned once for every tenant, it prunes the other 15 when it starts.
                    assert_eq!(subplans_removed(&plan), 15, "{plan:#}");
                }
                let partition = relations.into_iter().next().unwrap();
                assert!(partition.starts_with("records_p"), "{partition}");
                partitions_of.push((tenant, partition));
            }
        }
        let distinct: BTreeSet<_> = partitions_of.iter().map(|(_, p)| p.clone()).collect();
        assert!(
            distinct.len() > 1,
            "seven tenants all hashed to one partition: {distinct:?}"
        );
        // And the partition holds that tenant's rows.
        for tenant in ["t", "u"] {
            let listed = store
                .list(
                    tenant,
                    &ListFilter {
                        limit: 100,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(listed.len(), 3);
        }
        store.close().await;
    })
    .await;
}

/// Two stores on one database, as two steward replicas: writes through either are numbered as one
/// sequence per tenant, and each store's subscribers are told of the other's writes, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_see_and_announce_each_others_writes() {
    with_test_database(|url| async move {
        let a: Arc<dyn RecordStore> = Arc::new(PgStore::open(&url).await.unwrap());
        let b: Arc<dyn RecordStore> = Arc::new(PgStore::open(&url).await.unwrap());
        let mut on_b = b.subscribe();
        let mut on_a = a.subscribe();

        // A write through A is announced by B.
        let first = a
            .append("t", record("th", "alice", 0, "hello"))
            .await
            .unwrap();
        let c = tokio::time::timeout(Duration::from_secs(10), on_b.recv())
            .await
            .expect("B announces A's write within 10 s")
            .unwrap();
        assert_eq!(c.tenant, "t");
        assert_eq!((c.thread.as_str(), c.seq), ("th", first.record().seq));
        assert_eq!(
            b.get("t", &first.record().id).await.unwrap().as_ref(),
            Some(first.record())
        );

        // Both write the same tenants at once: one gapless sequence per tenant, every record
        // announced by both stores in sequence order.
        let writer = |store: Arc<dyn RecordStore>, actor: &'static str| {
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for clock in 0..100 {
                    for tenant in ["t", "u"] {
                        let r = store
                            .append(tenant, record("th", actor, clock, "x"))
                            .await
                            .unwrap();
                        assert!(matches!(r, Appended::Inserted(_)));
                        acked.push((tenant, r.record().seq));
                    }
                }
                acked
            })
        };
        let tasks = [
            writer(a.clone(), "a1"),
            writer(a.clone(), "a2"),
            writer(b.clone(), "b1"),
            writer(b.clone(), "b2"),
        ];
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        for tenant in ["t", "u"] {
            let mut seqs: Vec<i64> = acked
                .iter()
                .filter(|(t, _)| *t == tenant)
                .map(|(_, s)| *s)
                .collect();
            seqs.sort();
            let offset = if tenant == "t" { 1 } else { 0 };
            let expected: Vec<i64> = (1 + offset..=400 + offset).collect();
            assert_eq!(
                seqs, expected,
                "{tenant}: gapless and unique across both stores"
            );
        }
        for (name, events) in [("A", &mut on_a), ("B", &mut on_b)] {
            let mut last = std::collections::HashMap::new();
            if name == "A" {
                last.insert("t".to_string(), 0);
            } else {
                last.insert("t".to_string(), 1);
            }
            let mut count = 0;
            let expected = if name == "A" { 801 } else { 800 };
            while count < expected {
                let c = tokio::time::timeout(Duration::from_secs(10), events.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{name} announced only {count} of {expected}"))
                    .unwrap();
                let prev = last.entry(c.tenant.clone()).or_insert(0);
                assert_eq!(
                    c.seq,
                    *prev + 1,
                    "{name}: {} in order, none skipped",
                    c.tenant
                );
                *prev = c.seq;
                count += 1;
            }
        }
        a.close().await;
        b.close().await;
    })
    .await;
}

/// Row-level security (FEDERATION §8.2.2): every table keyed by tenant lets the role a tenant's
/// reads run as see that tenant's rows alone, and nothing at all while no tenant is set, even
/// to a statement with no `tenant =` of its own.
#[tokio::test]
async fn a_connection_without_its_tenant_set_sees_no_rows_of_any_tenant_table() {
    use sqlx::{Connection, Executor, PgConnection, Row};
    use syncropel_store::{AuthChange, ServiceAccount, StateChange};
    with_test_database(|url| async move {
        let store = PgStore::open(&url).await.unwrap();
        for (tenant, clock) in [("t", 0), ("u", 1)] {
            store
                .append(tenant, record("th", "alice", clock, "x"))
                .await
                .unwrap();
            let put = StateChange::Put {
                kind: "cursor".into(),
                key: "k".into(),
                value: "v".into(),
            };
            store.write(tenant, Vec::new(), vec![put]).await.unwrap();
            let account = ServiceAccount {
                id: "sa".into(),
                name: "sa".into(),
                scopes: vec!["admin".into()],
                allowed_actors: Vec::new(),
                created_at: 0,
            };
            let audit = record("th_audit", "steward", clock, "made sa");
            let made = AuthChange::CreateServiceAccount(account);
            store.apply_auth_change(tenant, made, audit).await.unwrap();
            let mint = AuthChange::MintToken {
                token_id: "tok".into(),
                sa_id: "sa".into(),
                created_at: 0,
                expires_at: None,
                grant_id: None,
            };
            let audit = record("th_audit", "steward", clock + 10, "minted");
            store.apply_auth_change(tenant, mint, audit).await.unwrap();
        }
        let mut conn = PgConnection::connect(&url).await.unwrap();
        conn.execute(
            "INSERT INTO pull_leases (tenant, source, thread) VALUES ('t', 's', 'th'), ('u', 's', 'th')",
        )
        .await
        .unwrap();

        // Partitions are reached through `records` only (the role has no grant on them);
        // `provisions` is the platform's, keyed by account and read by no tenant.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
             AND NOT c.relispartition AND a.attname = 'tenant' AND c.relname <> 'provisions' \
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let tenant_tables = [
            "federation_state",
            "pull_leases",
            "records",
            "service_accounts",
            "tenant_counters",
            "threads",
            "tokens",
        ];
        assert_eq!(tables, tenant_tables, "every table keyed by tenant is listed");

        let count = |table: &str| format!("SELECT count(*) FROM {table}");
        let tenants = |table: &str| format!("SELECT DISTINCT tenant FROM {table} ORDER BY 1");
        for table in &tables {
            let all: i64 = sqlx::query_scalar(&count(table))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert!(all >= 2, "{table} holds rows of both tenants");
        }
        // The writer keeps each tenant's bytes beside its counter.
        for tenant in ["t", "u"] {
            let summed: i64 = sqlx::query_scalar(
                "SELECT sum(octet_length(record_json))::int8 FROM records WHERE tenant = $1",
            )
            .bind(tenant)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(store.stored_bytes(tenant).await.unwrap(), summed as u64);
        }
        conn.execute("SET ROLE syncropel_tenant").await.unwrap();
        for table in &tables {
            let seen: i64 = sqlx::query_scalar(&count(table))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(seen, 0, "{table} without a tenant set");
        }
        conn.execute("SELECT set_config('syncropel.tenant', 'u', false)")
            .await
            .unwrap();
        for table in &tables {
            let seen: Vec<String> = sqlx::query(&tenants(table))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert_eq!(seen, ["u"], "{table} with the tenant set to u");
        }
        let refused = conn
            .execute("UPDATE tenant_counters SET last_seq = 0")
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("permission denied"), "{refused}");

        // The store's own reads go through such bound connections and come back to the pool
        // unbound: a later read for the other tenant still sees its rows.
        let all = ListFilter {
            limit: 100,
            ..Default::default()
        };
        for tenant in ["t", "u", "t"] {
            assert_eq!(store.head_seq(tenant).await.unwrap(), 3, "{tenant}");
            assert_eq!(store.list(tenant, &all).await.unwrap().len(), 3, "{tenant}");
        }
        store.close().await;
    })
    .await;
}
