//! What one tenant's federation may cost a replica: its sync pairs (each a pull job against a
//! URL its creator chose) are capped.

use syncropel_client::api::CreateSyncPair;
use syncropel_client::ClientError;
use syncropel_federation::sync_pairs::MAX_SYNC_PAIRS;

use super::start;

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
