//! Two `relay` processes on one database behind a balancer, between two real stewards: one is
//! killed with SIGKILL while the source deposits and started again, the other while the
//! destination pulls. Nothing is lost and nothing arrives twice.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use syncropel_federation::{FederationConfig, RelayConfig};
use syncropel_store::testing::TestDb;
use syncropel_testkit::hosted::Balancer;
use syncropel_testkit::{eventually, Node, Options};

use crate::process::{migrate, RelayProcess};

const DEADLINE: Duration = Duration::from_secs(30);

fn relaying(urls: Vec<String>) -> FederationConfig {
    FederationConfig {
        relay: RelayConfig {
            offline_capable: !urls.is_empty(),
            urls,
            probe_after: Duration::from_secs(2),
            wait: Duration::from_secs(1),
            page_items: 25,
            ..RelayConfig::default()
        },
        ..syncropel_testkit::quick_federation()
    }
}

async fn queued(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(items), 0)::int8 FROM relay_envelopes")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_killed_while_depositing_and_delivering_lose_and_double_nothing() {
    let db = TestDb::create().await;
    assert!(migrate(&db).success());
    let mut first = RelayProcess::start(&db, "127.0.0.1:0", &[]);
    let mut second = RelayProcess::start(&db, "127.0.0.1:0", &[]);
    let balancer = Balancer::start(&[&first.url(), &second.url()]).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();

    let dest = Node::start(Options {
        federation: relaying(Vec::new()),
        ..Options::default()
    })
    .await;
    let source_config = FederationConfig {
        auto_approve: vec![dest.did()],
        ..relaying(vec![balancer.url.clone()])
    };
    let source = Node::start(Options {
        federation: source_config,
        ..Options::default()
    })
    .await;
    dest.pair_with(source.url()).await;
    let thread = "th_relay_replicas";
    let actor = "did:sync:user:alice";
    let mut expected = BTreeSet::new();
    let emit = |clock: i64| {
        let source = &source;
        async move {
            let record = source.emit(thread, actor, clock, json!({"c": clock})).await;
            record["id"].as_str().unwrap().to_string()
        }
    };
    let first_id = emit(1).await;
    expected.insert(first_id.clone());
    dest.pull(thread, &source.did()).await;
    let dest_stopped = dest.stop().await;

    // One replica dies with SIGKILL while the source deposits, and comes back on its port.
    for clock in 2..=60 {
        expected.insert(emit(clock).await);
    }
    let first_addr = first.addr.clone();
    first.kill_9();
    for clock in 61..=120 {
        expected.insert(emit(clock).await);
    }
    let first = RelayProcess::start(&db, &first_addr, &[]);
    for clock in 121..=180 {
        expected.insert(emit(clock).await);
    }
    // Every record written while the destination was away is queued (a count would also count
    // the first, queued before it pulled it).
    eventually("every record deposited", DEADLINE, || async {
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM relay_envelopes")
            .fetch_all(&pool)
            .await
            .unwrap();
        let bodies: Vec<String> = bodies
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        let queued = expected
            .iter()
            .filter(|id| *id != &first_id)
            .all(|id| bodies.iter().any(|b| b.contains(id.as_str())));
        queued.then_some(())
    })
    .await;
    let _source_stopped = source.stop().await;

    // The other dies while the destination pulls.
    let dest = Node::start(Options {
        federation: relaying(Vec::new()),
        ..Options::restart(dest_stopped)
    })
    .await;
    second.kill_9();
    eventually("everything at the destination", DEADLINE, || async {
        (dest.ids(thread).await == expected).then_some(())
    })
    .await;
    assert_eq!(
        dest.records(thread).await.len(),
        expected.len(),
        "nothing twice"
    );
    assert!(dest.quarantine(None).await.is_empty());
    eventually("the queue emptied by acks", DEADLINE, || async {
        (queued(&pool).await == 0).then_some(())
    })
    .await;
    drop(first);
    pool.close().await;
    db.drop().await;
}
