//! Service accounts and tokens, changed together with their audit records.

use std::sync::Arc;

use syncropel_store::{AuthChange, ListFilter, NewRecord, RecordStore, ServiceAccount, StoreError};

use crate::common::record;

pub fn create_sa(id: &str, scopes: &[&str]) -> AuthChange {
    AuthChange::CreateServiceAccount(ServiceAccount {
        id: id.into(),
        name: format!("{id} name"),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        allowed_actors: vec!["did:key:z6Mk".into()],
        created_at: 10,
    })
}

pub fn audit(clock: i64) -> NewRecord {
    record("_auth", "did:key:steward", clock, "audit")
}

pub async fn auth_changes_apply_with_their_audit_record(store: Arc<dyn RecordStore>) {
    let audits = |store: Arc<dyn RecordStore>| async move {
        store
            .list(
                "t",
                &ListFilter {
                    thread: Some("_auth".into()),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .len()
    };
    assert!(!store.has_service_accounts("t").await.unwrap());
    assert!(store
        .apply_auth_change(
            "t",
            create_sa("sa1", &["records:read", "records:write"]),
            audit(1)
        )
        .await
        .unwrap());
    assert!(store.has_service_accounts("t").await.unwrap());
    let sa = store.service_account("t", "sa1").await.unwrap().unwrap();
    assert_eq!(sa.scopes, ["records:read", "records:write"]);
    assert_eq!(sa.allowed_actors, ["did:key:z6Mk"]);
    assert_eq!(store.service_accounts("t").await.unwrap(), vec![sa.clone()]);
    assert_eq!(audits(store.clone()).await, 1);

    // Refused changes store no audit record.
    let again = store
        .apply_auth_change("t", create_sa("sa1", &[]), audit(2))
        .await;
    assert!(
        matches!(again, Err(StoreError::ServiceAccountExists(ref id)) if id == "sa1"),
        "{again:?}"
    );
    let unknown = store
        .apply_auth_change(
            "t",
            AuthChange::MintToken {
                token_id: "tok0".into(),
                sa_id: "nobody".into(),
                created_at: 11,
                expires_at: None,
                grant_id: None,
            },
            audit(3),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownServiceAccount(ref id)) if id == "nobody"),
        "{unknown:?}"
    );
    assert_eq!(audits(store.clone()).await, 1);
    assert_eq!(store.token("t", "tok0").await.unwrap(), None);

    assert!(store
        .apply_auth_change(
            "t",
            AuthChange::MintToken {
                token_id: "tok1".into(),
                sa_id: "sa1".into(),
                created_at: 12,
                expires_at: Some(99),
                grant_id: None,
            },
            audit(4),
        )
        .await
        .unwrap());
    let grant = store.token("t", "tok1").await.unwrap().unwrap();
    assert_eq!(grant.sa_id, "sa1");
    assert_eq!(grant.scopes, ["records:read", "records:write"]);
    assert_eq!(grant.allowed_actors, ["did:key:z6Mk"]);
    assert_eq!(
        (grant.created_at, grant.expires_at, grant.revoked_at),
        (12, Some(99), None)
    );
    assert_eq!(
        store.token("u", "tok1").await.unwrap(),
        None,
        "tokens belong to one tenant"
    );
    assert_eq!(grant.grant_id, None);
    let parent = AuthChange::ParentTokens {
        sa_id: "sa1".into(),
        grant_id: "gr_1".into(),
    };
    assert!(store
        .apply_auth_change("t", parent, audit(7))
        .await
        .unwrap());
    let grant = store.token("t", "tok1").await.unwrap().unwrap();
    assert_eq!(
        grant.grant_id.as_deref(),
        Some("gr_1"),
        "live tokens are parented"
    );

    let revoke = |clock: i64| AuthChange::RevokeToken {
        token_id: "tok1".into(),
        revoked_at: 20 + clock,
    };
    assert!(store
        .apply_auth_change("t", revoke(5), audit(5))
        .await
        .unwrap());
    assert!(!store
        .apply_auth_change("t", revoke(6), audit(6))
        .await
        .unwrap());
    assert_eq!(
        store.token("t", "tok1").await.unwrap().unwrap().revoked_at,
        Some(25)
    );
    assert_eq!(audits(store.clone()).await, 4);

    // Auth changes and appends queued together share batches and keep their own outcomes.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store
                    .apply_auth_change("t", create_sa(&format!("bulk{i}"), &["x"]), audit(100 + i))
                    .await
                    .map(|_| ())
            } else {
                store
                    .append("t", record("th", "a", i, "x"))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.service_accounts("t").await.unwrap().len(), 11);
    assert_eq!(audits(store.clone()).await, 14);
}

pub async fn concurrent_token_lookups_each_get_their_own_answer(store: Arc<dyn RecordStore>) {
    for (tenant, clock) in [("t1", 1), ("t2", 3)] {
        let applied = store
            .apply_auth_change(tenant, create_sa("sa1", &["records:read"]), audit(clock))
            .await
            .unwrap();
        assert!(applied);
        let mint = AuthChange::MintToken {
            token_id: format!("tok-{tenant}"),
            sa_id: "sa1".into(),
            created_at: 12,
            expires_at: None,
            grant_id: None,
        };
        assert!(store
            .apply_auth_change(tenant, mint, audit(clock + 1))
            .await
            .unwrap());
    }
    // Many lookups at once, as concurrent requests make them: each answer is for its own
    // (tenant, token), including the same token asked for twice and another tenant's token.
    let asks: Vec<(&str, &str, bool)> = (0..60)
        .map(|i| match i % 4 {
            0 => ("t1", "tok-t1", true),
            1 => ("t2", "tok-t2", true),
            2 => ("t1", "tok-t2", false),
            _ => ("t2", "unknown", false),
        })
        .collect();
    let answers = futures_util::future::join_all(asks.iter().map(|(tenant, token, _)| {
        let store = store.clone();
        async move { store.token(tenant, token).await.unwrap() }
    }))
    .await;
    for ((tenant, token, known), answer) in asks.iter().zip(answers) {
        match answer {
            Some(grant) => {
                assert!(known, "{tenant}/{token} must be unknown");
                assert_eq!(grant.token_id, *token);
            }
            None => assert!(!known, "{tenant}/{token} must be found"),
        }
    }
}
