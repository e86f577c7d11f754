//! One conformance suite, two backends: every scenario below runs against SQLite (a real database
//! file) and against Postgres (a database of its own, created and dropped per test).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{record, record_with_body};
use syncropel_store::query::Column;
use syncropel_store::{
    Appended, AuthChange, ListFilter, RecordStore, ServiceAccount, StoreError, StoredRecord,
};

/// Generates `sqlite::<scenario>` and `postgres::<scenario>` tests for each scenario.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    crate::common::on_sqlite(crate::$scenario).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    crate::common::on_postgres(crate::$scenario).await
                }
            )*
        }
    };
}

conformance!(
    append_is_idempotent_and_refuses_duplicate_clocks,
    concurrent_replays_store_one_record,
    tenants_are_isolated,
    lists_filter_and_threads_summarise,
    scan_pushes_column_equalities_down,
    cursors_never_skip_a_committed_record,
    committed_records_are_announced_in_sequence_order,
    search_sees_every_record_committed_before_it,
    search_refuses_no_words_and_reads_awkward_bodies,
    auth_changes_apply_with_their_audit_record,
    concurrent_token_lookups_each_get_their_own_answer,
    writes_move_state_with_their_records_and_replace_only_stubs,
);

fn all(limit: u32) -> ListFilter {
    ListFilter {
        limit,
        ..Default::default()
    }
}

async fn append_is_idempotent_and_refuses_duplicate_clocks(store: Arc<dyn RecordStore>) {
    let first = store.append("t", record("th", "a", 1, "x")).await.unwrap();
    let Appended::Inserted(stored) = &first else {
        panic!("expected insert: {first:?}")
    };
    assert_eq!(stored.seq, 1);
    assert!(stored.json.ends_with(",\"sequence\":1}"));
    serde_json::from_str::<serde_json::Value>(&stored.json).unwrap();

    let again = store.append("t", record("th", "a", 1, "x")).await.unwrap();
    assert_eq!(again, Appended::Existing(stored.clone()));

    let clash = store.append("t", record("th", "a", 1, "other")).await;
    assert!(
        matches!(clash, Err(StoreError::DuplicateClock { clock: 1, .. })),
        "{clash:?}"
    );

    // Another tenant has its own ids and clocks.
    let other = store.append("u", record("th", "a", 1, "x")).await.unwrap();
    assert!(matches!(other, Appended::Inserted(_)));
    let listed = store.list("t", &all(100)).await.unwrap();
    assert_eq!(listed, vec![stored.clone()]);
    assert_eq!(
        store.get("t", &stored.id).await.unwrap(),
        Some(stored.clone())
    );
    let in_u = store.get("u", &stored.id).await.unwrap().expect("u's copy");
    assert_eq!(in_u, other.record().clone());
    assert_eq!(store.get("v", &stored.id).await.unwrap(), None);

    // The next record after a replay and a clash takes the next number.
    let next = store.append("t", record("th", "a", 2, "y")).await.unwrap();
    assert!(matches!(next, Appended::Inserted(_)));
    assert!(next.record().seq > stored.seq);
}

/// The same record sent many times at once (retries): one row, every caller gets it.
async fn concurrent_replays_store_one_record(store: Arc<dyn RecordStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append("t", record("th", "a", 7, "same")).await })
        })
        .collect();
    let mut inserted = 0;
    let mut records = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        if matches!(outcome, Appended::Inserted(_)) {
            inserted += 1;
        }
        records.push(outcome.record().clone());
    }
    assert_eq!(inserted, 1);
    assert!(records.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        store.list("t", &all(100)).await.unwrap(),
        vec![records[0].clone()]
    );
    let threads = store.threads("t", None, 10).await.unwrap();
    assert_eq!(threads[0].record_count, 1);
}

async fn tenants_are_isolated(store: Arc<dyn RecordStore>) {
    for clock in 0..3 {
        store
            .append("t", record("th", "alice", clock, "secret walrus"))
            .await
            .unwrap();
    }
    let t_first = store.list("t", &all(1)).await.unwrap().remove(0);
    store
        .apply_auth_change("t", create_sa("sa1", &["records:read"]), audit(1))
        .await
        .unwrap();

    let u: &str = "u";
    assert!(store.list(u, &all(100)).await.unwrap().is_empty());
    assert_eq!(store.get(u, &t_first.id).await.unwrap(), None);
    assert!(store.threads(u, None, 10).await.unwrap().is_empty());
    assert!(store
        .scan(u, &[(Column::Thread, "th".into())], 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search(u, &["walrus".into()], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!store.has_service_accounts(u).await.unwrap());
    assert!(store.service_accounts(u).await.unwrap().is_empty());
    assert_eq!(store.service_account(u, "sa1").await.unwrap(), None);

    // u's own records are numbered and listed independently of t's.
    let mine = store
        .append(u, record("th", "alice", 0, "mine"))
        .await
        .unwrap();
    assert_eq!(
        store.list(u, &all(100)).await.unwrap(),
        vec![mine.record().clone()]
    );
    assert_eq!(store.list("t", &all(100)).await.unwrap().len(), 4);
}

async fn lists_filter_and_threads_summarise(store: Arc<dyn RecordStore>) {
    for clock in 0..5 {
        store
            .append("t", record("th_a", "alice", clock, "apple pie"))
            .await
            .unwrap();
        store
            .append("t", record("th_b", "bob", clock, "banana split"))
            .await
            .unwrap();
    }
    let page = |filter: ListFilter| {
        let store = store.clone();
        async move { store.list("t", &filter).await.unwrap() }
    };
    let a = page(ListFilter {
        thread: Some("th_a".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(a.len(), 5);
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq));
    let since = page(ListFilter {
        actor: Some("bob".into()),
        since_clock: Some(3),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(since.len(), 2);
    let after = page(ListFilter {
        after_seq: a[2].seq,
        thread: Some("th_a".into()),
        limit: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(after, vec![a[3].clone()]);
    // Every page, cursor by cursor, is the whole log once.
    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let p = page(ListFilter {
            after_seq: cursor,
            limit: 3,
            ..Default::default()
        })
        .await;
        let Some(last) = p.last() else { break };
        cursor = last.seq;
        paged.extend(p);
    }
    assert_eq!(paged, page(all(100)).await);
    assert_eq!(paged.len(), 10);

    let threads = store.threads("t", None, 10).await.unwrap();
    assert_eq!(
        threads.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["th_b", "th_a"]
    );
    assert_eq!(threads[0].record_count, 5);
    assert_eq!(threads[0].last_clock, 4);
    assert_eq!(threads[0].namespace, "default");
    assert_eq!(threads[0].last_seq, paged.last().unwrap().seq);
    let older = store
        .threads("t", Some(threads[0].last_seq), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(store.threads("t", None, 1).await.unwrap().len(), 1);

    let hits = store.search("t", &["banana".into()], 10).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|(score, r)| *score >= 0.0 && r.thread == "th_b"));
    // OR semantics: either word matches.
    let either = store
        .search("t", &["banana".into(), "apple".into()], 100)
        .await
        .unwrap();
    assert_eq!(either.len(), 10);
    assert!(either.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
    let hostile = store
        .search(
            "t",
            &[
                "\"".into(),
                "NEAR(".into(),
                "*".into(),
                "AND".into(),
                "'".into(),
                "\\".into(),
                "&|!():*<->".into(),
                "a\0b".into(),
                "banana')|('x".into(),
            ],
            10,
        )
        .await;
    assert!(hostile.is_ok(), "{hostile:?}");
}

async fn scan_pushes_column_equalities_down(store: Arc<dyn RecordStore>) {
    for clock in 0..4 {
        store
            .append("t", record("th_a", "alice", clock, "a"))
            .await
            .unwrap();
        store
            .append("t", record("th_b", "bob", clock, "b"))
            .await
            .unwrap();
    }
    let bobs = store
        .scan("t", &[(Column::Actor, "bob".into())], 0, 100)
        .await
        .unwrap();
    assert_eq!(bobs.len(), 4);
    assert!(bobs.iter().all(|r| r.thread == "th_b"));
    assert!(bobs.windows(2).all(|w| w[0].seq < w[1].seq));
    let after = store
        .scan("t", &[(Column::Actor, "bob".into())], bobs[1].seq, 1)
        .await
        .unwrap();
    assert_eq!(after, vec![bobs[2].clone()]);
    let none = store
        .scan(
            "t",
            &[
                (Column::Actor, "bob".into()),
                (Column::Thread, "th_a".into()),
            ],
            0,
            100,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    // Non-text columns are left to the caller: they do not narrow.
    let clocks = store
        .scan(
            "t",
            &[
                (Column::Clock, "1".into()),
                (Column::Namespace, "default".into()),
            ],
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(clocks.len(), 8);
    let by_id = store
        .scan("t", &[(Column::Id, bobs[0].id.clone())], 0, 100)
        .await
        .unwrap();
    assert_eq!(by_id, vec![bobs[0].clone()]);
}

/// Concurrent writers and a concurrent reader: a reader that pages by cursor never sees a record
/// with a smaller sequence appear after it moved past it, and ends with every acknowledged record.
async fn cursors_never_skip_a_committed_record(store: Arc<dyn RecordStore>) {
    let writer = |tenant: &'static str, w: usize| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for clock in 0..250 {
                let r = store
                    .append(tenant, record("th", &format!("w{w}"), clock, "x"))
                    .await
                    .unwrap();
                acked.push(r.record().seq);
            }
            acked
        })
    };
    let writers: Vec<_> = (0..8).map(|w| writer("t", w)).collect();
    // Another tenant writing at the same time shares the batches but not the numbering.
    let others: Vec<_> = (0..2).map(|w| writer("u", w)).collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            for _ in 0..100_000 {
                let page = store
                    .list(
                        "t",
                        &ListFilter {
                            after_seq: cursor,
                            limit: 37,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                for r in &page {
                    assert!(r.seq > cursor);
                    seen.push(r.seq);
                    cursor = r.seq;
                }
                if seen.len() == 2000 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut acked: Vec<i64> = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    for w in others {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    acked.sort();
    assert_eq!(
        seen, acked,
        "the paging reader saw every record exactly once, in order"
    );
    assert_eq!(store.list("u", &all(1000)).await.unwrap().len(), 500);
}

async fn committed_records_are_announced_in_sequence_order(store: Arc<dyn RecordStore>) {
    let mut events = store.subscribe();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append("t", record("th", "a", i, "x")).await.unwrap() })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap().record().clone());
    }
    // A replay is not announced again; the next record is.
    store.append("t", record("th", "a", 0, "x")).await.unwrap();
    let last_one = store.append("t", record("th", "a", 50, "x")).await.unwrap();
    acked.push(last_one.record().clone());
    acked.sort_by_key(|r| r.seq);

    let mut announced: Vec<StoredRecord> = Vec::new();
    for _ in 0..acked.len() {
        let c = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("announcement within 10 s")
            .unwrap();
        assert_eq!(c.tenant, "t");
        if let Some(prev) = announced.last() {
            assert!(c.record.seq > prev.seq, "announced in sequence order");
        }
        announced.push(c.record);
    }
    assert_eq!(
        announced, acked,
        "every committed record announced once, as stored"
    );
}

/// The full-text index is up to date for every search, and never holds a record twice.
async fn search_sees_every_record_committed_before_it(store: Arc<dyn RecordStore>) {
    store
        .append("t", record("th", "a", 1, "walrus"))
        .await
        .unwrap();
    assert_eq!(
        store
            .search("t", &["walrus".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .append("t", record("th", "a", 2, "walrus"))
        .await
        .unwrap();
    store
        .append("t", record("th", "a", 3, "narwhal"))
        .await
        .unwrap();
    let hits = store.search("t", &["walrus".into()], 10).await.unwrap();
    assert_eq!(
        hits.len(),
        2,
        "the second record is found and the first is not indexed twice"
    );
    assert_eq!(
        store
            .search("t", &["narwhal".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn search_refuses_no_words_and_reads_awkward_bodies(store: Arc<dyn RecordStore>) {
    let bodies = [
        r#"{"note":"o'brien said \"hi\" back\\slash"}"#,
        r#"{"nested":{"list":["zebra",1,true,null,{"deep":"okapi"}]}}"#,
        r#""a plain string body with quagga""#,
        r#"{"nul":"before\u0000after"}"#,
        r#"{"number":12345}"#,
    ];
    for (clock, body) in bodies.iter().enumerate() {
        store
            .append(
                "t",
                record_with_body(&format!("r{clock}"), "th", "a", clock as i64, body),
            )
            .await
            .unwrap();
    }
    let count = |words: &[&str]| {
        let store = store.clone();
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        async move { store.search("t", &words, 100).await.unwrap().len() }
    };
    assert_eq!(count(&["brien"]).await, 1);
    assert_eq!(count(&["slash"]).await, 1);
    assert_eq!(
        count(&["okapi"]).await,
        1,
        "nested string values are indexed"
    );
    assert_eq!(count(&["zebra", "quagga"]).await, 2);
    assert_eq!(count(&["after"]).await, 1);
    assert_eq!(count(&["12345"]).await, 0, "only string values are indexed");
    assert_eq!(count(&[]).await, 0);
    assert_eq!(count(&["", " ", "\0"]).await, 0);
    assert_eq!(count(&["nothing-like-it"]).await, 0);
}

fn create_sa(id: &str, scopes: &[&str]) -> AuthChange {
    AuthChange::CreateServiceAccount(ServiceAccount {
        id: id.into(),
        name: format!("{id} name"),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        allowed_actors: vec!["did:key:z6Mk".into()],
        created_at: 10,
    })
}

fn audit(clock: i64) -> syncropel_store::NewRecord {
    record("_auth", "did:key:steward", clock, "audit")
}

async fn auth_changes_apply_with_their_audit_record(store: Arc<dyn RecordStore>) {
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
    assert_eq!(audits(store.clone()).await, 3);

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
    assert_eq!(audits(store.clone()).await, 13);
}

async fn concurrent_token_lookups_each_get_their_own_answer(store: Arc<dyn RecordStore>) {
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

/// `write` stores records and state changes together; a peer's full record replaces the consent
/// stub of the same id (and is found by search), while any other stored record stays as it was,
/// and `append` never replaces a stub.
async fn writes_move_state_with_their_records_and_replace_only_stubs(store: Arc<dyn RecordStore>) {
    use syncropel_store::StateChange;
    let stub_json =
        r#"{"id":"r1","thread":"th","clock":1,"body":{"redacted":true},"redacted":true}"#;
    let mut stub = record_with_body("r1", "th", "a", 1, r#"{"redacted":true}"#);
    stub.json = stub_json.to_string();
    let results = store
        .write(
            "t",
            vec![stub, record("th", "a", 2, "plain")],
            vec![StateChange::put("cursor", "k", "c1")],
        )
        .await
        .unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(Appended::Inserted(_)))));
    assert_eq!(
        store
            .state_get("t", "cursor", "k")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
    let seq = store.get("t", "r1").await.unwrap().unwrap().seq;

    // A stub whose envelope is not the record's is not replaced by it.
    let mut odd = record_with_body("r2", "th", "a", 3, r#"{"redacted":true}"#);
    odd.json =
        r#"{"id":"r2","thread":"th","clock":3,"body":{"redacted":true},"redacted":true}"#.into();
    store.write("t", vec![odd], Vec::new()).await.unwrap();
    let elsewhere = record_with_body("r2", "th_other", "a", 3, r#"{"text":"x"}"#);
    store.write("t", vec![elsewhere], Vec::new()).await.unwrap();
    assert!(store
        .get("t", "r2")
        .await
        .unwrap()
        .unwrap()
        .json
        .contains("redacted"));

    // Through append (a local client) the stub stays.
    let full = record_with_body("r1", "th", "a", 1, r#"{"text":"glowing marmot"}"#);
    store.append("t", full.clone()).await.unwrap();
    assert!(store
        .get("t", "r1")
        .await
        .unwrap()
        .unwrap()
        .json
        .contains("redacted"));

    // From a peer the full record takes the stub's place, same sequence.
    let results = store
        .write(
            "t",
            vec![full.clone()],
            vec![
                StateChange::put("cursor", "k", "c2"),
                StateChange::delete("cursor", "gone"),
            ],
        )
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Ok(Appended::Existing(r)) if r.seq == seq && r.json.contains("marmot"))
    );
    let now = store.get("t", "r1").await.unwrap().unwrap();
    assert_eq!(now.seq, seq);
    assert!(now.json.contains("marmot") && !now.json.contains("redacted"));
    assert_eq!(
        store
            .state_get("t", "cursor", "k")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
    let found = store
        .search("t", &["marmot".to_string()], 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    // A full record is never replaced, not even by another full record of the same id.
    let other = record_with_body("r1", "th", "a", 1, r#"{"text":"something else"}"#);
    store.write("t", vec![other], Vec::new()).await.unwrap();
    assert!(store
        .get("t", "r1")
        .await
        .unwrap()
        .unwrap()
        .json
        .contains("marmot"));

    // PutIfAbsent keeps the first value; lists are per tenant and kind, ordered by key.
    store
        .write(
            "t",
            Vec::new(),
            vec![
                StateChange::put_if_absent("cursor", "k", "c3"),
                StateChange::put("cursor", "a", "x"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.state_list("t", "cursor").await.unwrap(),
        vec![
            ("a".to_string(), "x".to_string()),
            ("k".to_string(), "c2".to_string())
        ]
    );
    assert!(store.state_list("u", "cursor").await.unwrap().is_empty());
    assert_eq!(
        store.head_seq("t").await.unwrap(),
        store
            .list("t", &all(100))
            .await
            .unwrap()
            .last()
            .unwrap()
            .seq
    );
    assert_eq!(store.head_seq("u").await.unwrap(), 0);
}
