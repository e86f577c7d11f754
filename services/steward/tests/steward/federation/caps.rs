//! What one tenant's federation may cost a replica: its sync pairs (each a pull job against a
//! URL its creator chose) are capped, at most four of its pulls work at once however many
//! jobs it has, and a page naming many parents costs a bounded number of lookups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use syncropel_client::api::CreateSyncPair;
use syncropel_client::ClientError;
use syncropel_federation::sync_pairs::MAX_SYNC_PAIRS;
use syncropel_federation::ACTIVE_PULLS_PER_TENANT;
use syncropel_protocol::Keypair;
use syncropel_testkit::eventually;

use super::{
    cursor_at, legacy_pair, serve_fake, signed_item, signed_item_with_parents, start, DEADLINE,
};

#[tokio::test]
async fn a_tenant_holds_a_bounded_number_of_sync_pairs() {
    let a = start().await;
    // Nobody answers there: the jobs back off.
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let request = |n: usize| CreateSyncPair {
        peer_did: "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH".into(),
        peer_url: Some(nowhere.clone()),
        thread_id: format!("th_cap_{n}"),
        peer_token: Some("spl_prod_sa_x_secret".into()),
    };
    for n in 0..MAX_SYNC_PAIRS {
        let created = a.client.create_sync_pair(&request(n)).await.unwrap();
        assert_eq!(created.status(), 201, "{n}: {}", created.json());
    }
    let refused = a
        .client
        .create_sync_pair(&request(MAX_SYNC_PAIRS))
        .await
        .unwrap_err();
    let ClientError::Api { status, code, .. } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(
        (*status, code.as_str()),
        (403, "TENANT_LIMIT_REACHED"),
        "{refused}"
    );
    // Asking again for one that exists is not a new pair.
    let again = a.client.create_sync_pair(&request(0)).await.unwrap();
    assert_eq!(again.status(), 201, "{}", again.json());
    let listed = a.client.sync_pairs().await.unwrap();
    assert_eq!(listed.data.len(), MAX_SYNC_PAIRS);
}

/// A peer that always has more, answering each catch-up page after a while, and naming many
/// parents nobody holds; it counts the catch-up requests in flight and the ids asked of it.
#[derive(Default)]
struct Busy {
    key: Option<Keypair>,
    pages: Mutex<HashMap<String, i64>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    asked_ids: Mutex<Vec<usize>>,
}

impl Busy {
    fn key(&self) -> &Keypair {
        self.key.as_ref().unwrap()
    }
}

async fn busy_changes(
    State(busy): State<Arc<Busy>>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let thread = query["thread"].clone();
    let n = {
        let mut pages = busy.pages.lock().unwrap();
        let n = pages.entry(thread.clone()).or_default();
        *n += 1;
        *n
    };
    let catching_up = query.get("feed").map(String::as_str) == Some("normal");
    if catching_up {
        let now = busy.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        busy.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        busy.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let did = busy.key().did_key();
    let records: Vec<Value> = if thread == "th_parents" {
        // Two records, each naming a thousand parents nobody holds.
        (2 * n..2 * n + 2)
            .map(|clock| {
                let parents: Vec<String> = (0..1000)
                    .map(|i| syncropel_protocol::sha256_hex(format!("{clock}-{i}").as_bytes()))
                    .collect();
                signed_item_with_parents(busy.key(), &thread, &did, clock, json!({}), &parents)
            })
            .collect()
    } else {
        vec![signed_item(busy.key(), &thread, &did, n, json!({"n": n}))]
    };
    Json(
        json!({"object": "sync_changes", "thread": thread, "records": records,
                "next_cursor": cursor_at(n), "has_more": true}),
    )
}

async fn busy_records(State(busy): State<Arc<Busy>>, Json(body): Json<Value>) -> Json<Value> {
    let asked = body["ids"].as_array().map_or(0, Vec::len);
    busy.asked_ids.lock().unwrap().push(asked);
    Json(json!({"records": []}))
}

async fn start_busy() -> (String, Arc<Busy>) {
    let busy = Arc::new(Busy {
        key: Some(Keypair::generate()),
        ..Busy::default()
    });
    let app = axum::Router::new()
        .route("/v1/sync/changes", axum::routing::get(busy_changes))
        .route("/v1/sync/records", axum::routing::post(busy_records))
        .with_state(busy.clone());
    (serve_fake(app).await, busy)
}

#[tokio::test]
async fn at_most_four_of_a_tenants_pulls_work_at_once() {
    let (url, busy) = start_busy().await;
    let a = start().await;
    for n in 0..8 {
        legacy_pair(
            &a,
            &busy.key().did_key(),
            &url,
            &format!("th_busy_{n}"),
            "x",
        )
        .await;
    }
    eventually("catch-ups under way", DEADLINE, || async {
        (busy.pages.lock().unwrap().values().sum::<i64>() > 60).then_some(())
    })
    .await;
    let most = busy.most_in_flight.load(Ordering::SeqCst);
    assert!(most <= ACTIVE_PULLS_PER_TENANT, "{most} catch-ups at once");
    assert!(most >= 2, "the pulls do run side by side ({most})");
}

#[tokio::test]
async fn a_page_naming_thousands_of_parents_costs_at_most_a_thousand_lookups() {
    let (url, busy) = start_busy().await;
    let a = start().await;
    legacy_pair(&a, &busy.key().did_key(), &url, "th_parents", "x").await;
    eventually("missing parents asked for", DEADLINE, || async {
        (busy.asked_ids.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    // Each page names two thousand parents: a thousand are looked up, so a thousand asked for.
    let asked = busy.asked_ids.lock().unwrap().clone();
    assert!(asked.iter().all(|&n| n <= 1000), "{asked:?}");
    assert!(asked.contains(&1000), "{asked:?}");
}
