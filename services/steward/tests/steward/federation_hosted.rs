//! Federation between hosted tenants and local stewards over HTTP on 127.0.0.1
//! (federation-protocol.md §4-§5): a tenant addressed by path prefix pairs with a local steward in
//! either role, records flow both ways verified, hosted pull jobs run under a lease in
//! `pull_leases`, and when the replica holding a lease dies the job moves to a surviving replica
//! without losing or doubling a record.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncropel_client::api::{PullRequest, StartPair};
use syncropel_client::{encode_segment, Client, Pairing};
use syncropel_federation::{FederationConfig, RelayConfig};
use syncropel_steward::tenant::Tenant;
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{know, with_test_database_here, Node, Options, Relay, Sql};

use crate::federation::assert_reciprocal;

const DEADLINE: Duration = Duration::from_secs(15);

/// Short intervals everywhere (as in the federation tests), leases of `lease_ttl`.
fn config(auto_approve: Vec<String>, lease_ttl: Duration) -> FederationConfig {
    FederationConfig {
        auto_approve,
        lease_ttl,
        ..syncropel_testkit::quick_federation()
    }
}

/// A hosted replica whose tenants live at `http://127.0.0.1:PORT/t/<label>`.
pub(crate) async fn replica(
    database_url: String,
    auto_approve: Vec<String>,
    lease_ttl: Duration,
) -> Replica {
    Replica::start(
        &database_url,
        Config {
            path_prefix: Some("/t".into()),
            reachable_urls: true,
            federation: config(auto_approve, lease_ttl),
            ..Config::default()
        },
    )
    .await
}

/// A local steward approving pair requests from `auto_approve`.
pub(crate) async fn start_local(auto_approve: Vec<String>) -> Node {
    Node::start(Options {
        federation: config(auto_approve, Duration::from_secs(60)),
        ..Options::default()
    })
    .await
}

/// A record of the local steward's user, as stored.
async fn local_emit(local: &Node, thread: &str, clock: i64) -> Value {
    local
        .emit(thread, "did:sync:user:lou", clock, json!({"n": clock}))
        .await
}

/// A provisioned hosted tenant and its admin bearer.
pub(crate) struct Hosted {
    pub label: String,
    pub token: String,
    pub tenant: Arc<Tenant>,
}

impl Hosted {
    pub(crate) async fn provision(replica: &Replica, label: &str) -> Hosted {
        let token = replica.new_tenant("acct", label).await;
        let tenant = replica.platform().tenant(label).await.unwrap().unwrap();
        Hosted {
            label: label.to_string(),
            token,
            tenant,
        }
    }

    pub(crate) fn did(&self) -> String {
        self.tenant.identity.did.to_string()
    }

    pub(crate) fn url(&self) -> String {
        self.tenant.url.clone().unwrap()
    }

    /// The tenant's typed client through a replica.
    pub(crate) fn via(&self, replica: &Replica) -> Client {
        replica.tenant_client(&self.label, &self.token)
    }

    pub(crate) async fn emit(&self, via: &Replica, thread: &str, clock: i64) -> Value {
        let envelope = know(thread, "did:sync:user:hana", clock, json!({"n": clock}));
        let emitted = self.via(via).emit::<Value>(&envelope).await.unwrap();
        assert!(emitted.created, "{}", emitted.record);
        emitted.record
    }

    /// The record `id` (`200`), or `None` (`404`); read raw, so that any other status fails.
    pub(crate) async fn record(&self, via: &Replica, id: &str) -> Option<Value> {
        let path = format!("/v1/records/{}", encode_segment(id));
        let (status, body) = via.tenant_get(&self.label, &self.token, &path).await;
        match status {
            200 => Some(body),
            404 => None,
            _ => panic!("GET record {id}: {status} {body}"),
        }
    }

    /// Waits for the record `id` to be readable through `via`.
    pub(crate) async fn arrived(&self, via: &Replica, id: &str, what: &str) -> Value {
        syncropel_testkit::eventually(what, DEADLINE, || self.record(via, id)).await
    }

    /// The ids of the first 1000 records of `thread` (read raw: the listing answers `200`).
    pub(crate) async fn ids(&self, via: &Replica, thread: &str) -> BTreeSet<String> {
        let path = format!("/v1/records?thread={}&limit=1000", encode_segment(thread));
        let (status, list) = via.tenant_get(&self.label, &self.token, &path).await;
        assert_eq!(status, 200, "{list}");
        let data = list["data"].as_array().unwrap();
        let ids: BTreeSet<String> = data
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), data.len(), "a record is listed twice: {data:?}");
        ids
    }

    pub(crate) async fn pull(&self, via: &Replica, thread: &str, peer: &str) -> Value {
        let request = PullRequest {
            thread: thread.into(),
            peer: peer.into(),
            peer_token: None,
            namespace: None,
        };
        let pulled = self.via(via).pull(&request).await.unwrap();
        assert_eq!(pulled.status(), 200, "{}", pulled.json());
        pulled.into_json()
    }

    pub(crate) async fn pair(&self, via: &Replica, key: &str) -> Value {
        let pair = self.via(via).federation_pair(key).await.unwrap();
        assert_eq!(pair.status(), 200, "{}", pair.json());
        pair.into_json()
    }
}

/// A record as it arrived at a peer: the same id, signature and signer as at its source.
fn assert_verified_copy(got: &Value, sent: &Value, signer: &str) {
    assert_eq!(got["id"], sent["id"]);
    assert_eq!(got["sig"], sent["sig"], "{got}");
    assert_eq!(got["signer"], sent["signer"], "{got}");
    assert_eq!(got["signer"], signer, "{got}");
    assert_eq!(got["body"], sent["body"]);
}

/// The lease row of a pull job: (holder, lease_until).
async fn lease(
    replica: &Replica,
    tenant: &str,
    source: &str,
    thread: &str,
) -> Option<(String, i64)> {
    Sql::of(replica.platform().store())
        .row(
            "SELECT holder, lease_until FROM pull_leases \
             WHERE tenant = $1 AND source = $2 AND thread = $3",
            &[tenant.into(), source.into(), thread.into()],
        )
        .await
}

fn runs(replica: &Replica, tenant: &str, source: &str, thread: &str) -> bool {
    let key = (tenant.to_string(), source.to_string(), thread.to_string());
    replica.state.federation.jobs.running().contains(&key)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_tenant_pairs_and_syncs_with_local_stewards_both_ways() {
    with_test_database_here(|url| async move {
        let local = start_local(Vec::new()).await;
        let replica = replica(url.clone(), vec![local.did()], Duration::from_secs(60)).await;
        let hosted = Hosted::provision(&replica, "acme").await;
        assert_eq!(hosted.url(), format!("{}/t/acme", replica.url));

        // The local steward pairs with the tenant, which approves it by its own configuration.
        let ours = local.pair_with(&hosted.url()).await;
        assert_eq!(ours["peer_did"], hosted.did());
        let pair_id = ours["pair_id"].as_str().unwrap().to_string();
        let theirs = hosted.pair(&replica, &local.did()).await;
        assert_eq!(theirs["pair_id"], pair_id);
        assert_eq!(theirs["state"], "active", "{theirs}");
        assert_eq!(theirs["role"], "responder");
        assert_eq!(theirs["peer_url"], local.url());
        assert_reciprocal(&ours, &theirs);

        // Hosted → local: a one-shot pull, then the job.
        let thread = "th_hosted_to_local";
        let mut sent = vec![hosted.emit(&replica, thread, 1).await];
        let pulled = local.pull(thread, &hosted.did()).await;
        assert_eq!(pulled["pulled"], 1, "{pulled}");
        for clock in 2..=4 {
            sent.push(hosted.emit(&replica, thread, clock).await);
        }
        for record in &sent {
            let got = local.arrived(record["id"].as_str().unwrap()).await;
            assert_verified_copy(&got, record, &hosted.did());
        }
        assert_eq!(local.ids(thread).await.len(), sent.len());
        assert_eq!(local.pair(&pair_id).await["sync_health"]["status"], "ok");

        // Local → hosted: the tenant's job runs under a lease held by this replica.
        let thread = "th_local_to_hosted";
        let mut sent = vec![local_emit(&local, thread, 1).await];
        let pulled = hosted.pull(&replica, thread, &local.did()).await;
        assert_eq!(pulled["pulled"], 1, "{pulled}");
        let (holder, until) = lease(&replica, &hosted.tenant.id, &pair_id, thread)
            .await
            .expect("the hosted pull job has a lease row");
        assert_eq!(holder, replica.leases.holder());
        assert!(until >= syncropel_protocol::unix_now(), "{until}");
        assert!(runs(&replica, &hosted.tenant.id, &pair_id, thread));
        for clock in 2..=4 {
            sent.push(local_emit(&local, thread, clock).await);
        }
        for record in &sent {
            let id = record["id"].as_str().unwrap();
            let what = format!("{id} at the hosted tenant");
            let got = hosted.arrived(&replica, id, &what).await;
            assert_verified_copy(&got, record, &local.did());
        }
        assert_eq!(hosted.ids(&replica, thread).await.len(), sent.len());

        // The other way round: the tenant initiates with a local steward that approves it.
        let responder = start_local(vec![hosted.did()]).await;
        let request = StartPair {
            peer_url: responder.url().into(),
            ..StartPair::default()
        };
        let started = hosted.via(&replica).start_pairing(&request).await.unwrap();
        assert_eq!(started.status(), 200, "{}", started.json());
        let (pairing, view) = started.into_parts();
        assert!(matches!(pairing, Pairing::Paired(_)), "{view}");
        assert_eq!(view["state"], "active", "{view}");
        assert_eq!(view["role"], "initiator");
        let theirs = responder.pair(&hosted.did()).await;
        assert_eq!(theirs["state"], "active", "{theirs}");
        assert_eq!(theirs["peer_url"], hosted.url(), "the tenant's own URL");
        assert_eq!(
            theirs["tokens"]["outbound"]["token_id"],
            view["tokens"]["inbound"]["token_id"]
        );
        // The responder reaches the tenant at the URL it paired from.
        let thread = "th_hosted_initiated";
        let record = hosted.emit(&replica, thread, 1).await;
        let pulled = responder.pull(thread, &hosted.did()).await;
        assert_eq!(pulled["pulled"], 1, "{pulled}");
        let got = responder
            .record(record["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_verified_copy(&got, &record, &hosted.did());
        // And the tenant pulls from it through the same pair, under a lease.
        let back = local_emit(&responder, thread, 2).await;
        let pulled = hosted.pull(&replica, thread, &responder.did()).await;
        assert_eq!(pulled["pulled"], 1, "{pulled}");
        let source = view["pair_id"].as_str().unwrap();
        assert!(lease(&replica, &hosted.tenant.id, source, thread)
            .await
            .is_some());
        let got = hosted
            .record(&replica, back["id"].as_str().unwrap())
            .await
            .unwrap();
        assert_verified_copy(&got, &back, &responder.did());

        replica.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replicas_pull_jobs_move_to_a_surviving_replica() {
    with_test_database_here(|url| async move {
        let ttl = Duration::from_secs(2);
        let local = start_local(Vec::new()).await;
        let first = replica(url.clone(), vec![local.did()], ttl).await;
        let second = replica(url.clone(), vec![local.did()], ttl).await;
        let hosted = Hosted::provision(&first, "lease").await;
        let view = local.pair_with(&hosted.url()).await;
        let pair_id = view["pair_id"].as_str().unwrap().to_string();
        let tenant = hosted.tenant.id.clone();

        let thread = "th_leased";
        let mut sent = vec![local_emit(&local, thread, 1).await];
        let pulled = hosted.pull(&first, thread, &local.did()).await;
        assert_eq!(pulled["pulled"], 1, "{pulled}");
        let (holder, _) = lease(&first, &tenant, &pair_id, thread).await.unwrap();
        assert_eq!(holder, first.leases.holder());
        assert_ne!(first.leases.holder(), second.leases.holder());
        // A live holder keeps its lease through several sweeps of the other replica.
        tokio::time::sleep(ttl).await;
        let (holder, _) = lease(&first, &tenant, &pair_id, thread).await.unwrap();
        assert_eq!(holder, first.leases.holder());
        assert!(runs(&first, &tenant, &pair_id, thread));
        assert!(!runs(&second, &tenant, &pair_id, thread));
        sent.push(local_emit(&local, thread, 2).await);
        let id = sent[1]["id"].as_str().unwrap();
        let what = "the second record, pulled by the first replica";
        hosted.arrived(&second, id, what).await;

        // The holder dies; what the local steward writes next still arrives at the tenant.
        first.stop().await;
        let died = Instant::now();
        for clock in 3..=5 {
            sent.push(local_emit(&local, thread, clock).await);
        }
        for record in &sent {
            let id = record["id"].as_str().unwrap();
            let what = format!("{id} after the takeover");
            let got = hosted.arrived(&second, id, &what).await;
            assert_verified_copy(&got, record, &local.did());
        }
        let took = died.elapsed();
        assert!(took < 4 * ttl, "the takeover took {took:?}");
        let (holder, until) = lease(&second, &tenant, &pair_id, thread).await.unwrap();
        assert_eq!(holder, second.leases.holder());
        assert!(until >= syncropel_protocol::unix_now());
        assert!(runs(&second, &tenant, &pair_id, thread));
        // Nothing lost, nothing doubled, and the survivor's job stays in step.
        let expected: BTreeSet<String> = sent
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(hosted.ids(&second, thread).await, expected);
        let last = local_emit(&local, thread, 6).await;
        let id = last["id"].as_str().unwrap();
        hosted
            .arrived(&second, id, "a record after the takeover")
            .await;
        assert_eq!(hosted.ids(&second, thread).await.len(), expected.len() + 1);
        let again = hosted.pull(&second, thread, &local.did()).await;
        assert_eq!(again["pulled"], 0, "{again}");
        // The pair on the tenant's side is intact (pull cursors moved through the survivor).
        let theirs = hosted.pair(&second, &pair_id).await;
        assert_eq!(theirs["state"], "active", "{theirs}");
        let ours = local.pair(&pair_id).await;
        assert_eq!(
            theirs["tokens"]["outbound"]["token_id"],
            ours["tokens"]["inbound"]["token_id"]
        );

        second.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_replica_holding_a_full_batch_of_jobs_still_takes_over_expired_ones() {
    with_test_database_here(|url| async move {
        let ttl = Duration::from_secs(2);
        let replica = replica(url.clone(), Vec::new(), ttl).await;
        // A dead replica's jobs: more than one sweep claims at once (500).
        let sql = Sql::of(replica.platform().store());
        sql.execute(
            "INSERT INTO pull_leases (tenant, source, thread, holder, lease_until) \
             SELECT 'ten_gone', 'fed_gone', 'th_' || n, 'rep_dead', 0 \
             FROM generate_series(1, 501) AS n",
            &[],
        )
        .await;
        let holder = replica.leases.holder().to_string();
        let held = || async {
            sql.scalar::<i64>(
                "SELECT count(*) FROM pull_leases WHERE holder = $1 AND lease_until >= $2",
                &[(&holder).into(), syncropel_protocol::unix_now().into()],
            )
            .await
        };
        syncropel_testkit::eventually("every job taken over", DEADLINE, || async {
            (held().await == 501).then_some(())
        })
        .await;
        replica.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_tenant_deposits_at_its_peers_relay_under_a_lease() {
    with_test_database_here(|url| async move {
        // The local steward is the one often offline: it names a relay, which the hosted tenant
        // caches when they pair and deposits at for it (the mailbox).
        let relay = Relay::start().await;
        let relaying = |urls: Vec<String>| FederationConfig {
            relay: RelayConfig {
                offline_capable: !urls.is_empty(),
                urls,
                probe_after: Duration::from_secs(2),
                wait: Duration::from_secs(1),
                ..RelayConfig::default()
            },
            ..config(Vec::new(), Duration::from_secs(60))
        };
        let local = Node::start(Options {
            federation: relaying(vec![relay.url.clone()]),
            ..Options::default()
        })
        .await;
        let replica = replica(url.clone(), vec![local.did()], Duration::from_secs(60)).await;
        let hosted = Hosted::provision(&replica, "acme").await;
        local.pair_with(&hosted.url()).await;
        let thread = "th_hosted_mailbox";
        let mut expected = BTreeSet::new();
        let first = hosted.emit(&replica, thread, 1).await;
        expected.insert(first["id"].as_str().unwrap().to_string());
        local.pull(thread, &hosted.did()).await;

        // The tenant's outbox runs as a job under a lease, like its pull jobs.
        let tenant = hosted.tenant.id.clone();
        syncropel_testkit::eventually("the outbox's lease", DEADLINE, || async {
            lease(&replica, &tenant, "relay-outbox", "*").await
        })
        .await;
        let stopped = local.stop().await;
        let mut later = BTreeSet::new();
        for clock in 2..=10 {
            let record = hosted.emit(&replica, thread, clock).await;
            later.insert(record["id"].as_str().unwrap().to_string());
        }
        expected.extend(later.clone());
        syncropel_testkit::eventually("deposits at the peer's relay", DEADLINE, || async {
            relay.holds(&later).await.then_some(())
        })
        .await;

        // The platform is unreachable when the local steward comes back: its own relay has it all.
        replica.stop().await;
        let local = Node::start(Options {
            federation: relaying(vec![relay.url.clone()]),
            ..Options::restart(stopped)
        })
        .await;
        syncropel_testkit::eventually("everything from the mailbox", DEADLINE * 2, || async {
            (local.ids(thread).await == expected).then_some(())
        })
        .await;
        relay.remove().await;
    })
    .await;
}

/// A hosted source (federation-protocol.md §6.1, §6.4): a tenant's public L2 grant reaches a
/// local puller as stubs in any namespace, and with `l0_requires_acceptance` its L0 grant serves
/// digests until the local steward records its acceptance, then whole signed records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_source_serves_public_grants_and_l0_only_to_an_accepting_puller() {
    with_test_database_here(|url| async move {
        let local = start_local(Vec::new()).await;
        let replica = Replica::start(
            &url,
            Config {
                path_prefix: Some("/t".into()),
                reachable_urls: true,
                federation: FederationConfig {
                    l0_requires_acceptance: true,
                    ..config(vec![local.did()], Duration::from_secs(60))
                },
                ..Config::default()
            },
        )
        .await;
        let hosted = Hosted::provision(&replica, "acme").await;
        local.pair_with(&hosted.url()).await;
        local.register_namespace("research").await;
        let (status, answer) = replica
            .tenant_post(
                &hosted.label,
                &hosted.token,
                "/v1/namespaces",
                &json!({"id": "research"}),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        let post = |body: Value| {
            let (replica, hosted) = (&replica, &hosted);
            async move {
                let (status, answer) = replica
                    .tenant_post(&hosted.label, &hosted.token, "/v1/consent/grants", &body)
                    .await;
                assert_eq!(status, 201, "{answer}");
                answer
            }
        };
        let emit = |thread: &'static str, clock: i64, body: Value| {
            let (replica, hosted) = (&replica, &hosted);
            async move {
                let envelope = know(thread, "did:sync:user:hana", clock, body);
                let emitted = hosted.via(replica).emit::<Value>(&envelope).await.unwrap();
                emitted.record
            }
        };

        let public =
            post(json!({"public": true, "thread": "th_host_pub", "granted_level": "L2"})).await;
        assert_eq!(public["source_namespace"], "*", "{public}");
        let shared = emit("th_host_pub", 1, json!({"namespace": "research"})).await;
        local.pull("th_host_pub", &hosted.did()).await;
        let stub = local.arrived(shared["id"].as_str().unwrap()).await;
        assert_eq!(stub["redacted"], true, "{stub}");
        assert_eq!(stub["consent_grant"], public["grant_id"]);

        post(
            json!({"source_namespace": "research", "target_namespace": "default",
                    "hash_levels": ["L0"], "peer_did": local.did()}),
        )
        .await;
        let before = emit("th_host_l0", 1, json!({"namespace": "research", "n": 1})).await;
        local.pull("th_host_l0", &hosted.did()).await;
        let stub = local.arrived(before["id"].as_str().unwrap()).await;
        assert_eq!(stub["redacted"], true, "{stub}");

        let (status, accepted) = local
            .post(
                "/v1/consent/grants",
                &json!({"op": "accept", "peer_did": hosted.did(),
                        "source_namespace": "research", "target_namespace": "default"}),
            )
            .await;
        assert_eq!(status, 201, "{accepted}");
        // The longpoll asked before the acceptance is answered as it was asked.
        let marker = emit("th_host_l0", 2, json!({"marker": true})).await;
        local.arrived(marker["id"].as_str().unwrap()).await;
        let after = emit("th_host_l0", 3, json!({"namespace": "research", "n": 3})).await;
        let got = local.arrived(after["id"].as_str().unwrap()).await;
        assert_verified_copy(&got, &after, &hosted.tenant.identity.signer);
    })
    .await;
}
