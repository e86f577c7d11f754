//! Identities beyond did:key between real stewards on 127.0.0.1 (federation-protocol.md §1.3-§1.5):
//! a did:web steward serving its document, a did:sync steward registered at a real directory,
//! records verified before and after a key rotation, compromised keys, signers that cannot be
//! resolved yet, and hosted tenants registered at the directory when they are provisioned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncropel_client::api::{PullRequest, UpgradeIdentity};
use syncropel_federation::config::ResolverClock;
use syncropel_federation::directory::{multibase, submit, sync_genesis};
use syncropel_federation::FederationConfig;
use syncropel_federation::{PeerClient, PeerClientOptions};
use syncropel_protocol::did_sync::{cid, did_from_genesis, sign_operation, OpType, Operation};
use syncropel_protocol::sync::{verify_items, DocumentKeys, PeerItem, ResolvedKeys};
use syncropel_protocol::Keypair;
use syncropel_steward::hosted::DirectoryRegistration;
use syncropel_store::platform::TenantState;
use syncropel_testkit::hosted::{Config, Replica};
use syncropel_testkit::{error_code, send, with_test_database, Directory, Identity, Node, Options};

fn client() -> PeerClient {
    PeerClient::new(PeerClientOptions {
        allow_private: true,
        ..PeerClientOptions::default()
    })
}

/// A DID registered at `directory` whose records `signing` signs and whose ops `rotation` signs.
struct SyncDid {
    did: String,
    head: String,
    rotation: Keypair,
    directory: String,
}

impl SyncDid {
    async fn register(directory: &str, signing: &Keypair) -> SyncDid {
        let rotation = Keypair::generate();
        let genesis = sync_genesis(signing, vec![rotation.did_key()], vec![], vec![], None);
        let signed = sign_operation(&genesis, &rotation);
        let did = did_from_genesis(&signed);
        let answer = submit(&client(), directory, "genesis", &signed)
            .await
            .unwrap();
        assert_eq!(answer["did"], did.as_str(), "{answer}");
        SyncDid {
            did,
            head: cid(&signed),
            rotation,
            directory: directory.to_string(),
        }
    }

    /// Replaces the signing keys with `keys` (name → key), withdrawing `compromised` names.
    async fn update(&mut self, keys: &[(&str, &Keypair)], compromised: &[&str]) {
        let op = Operation {
            kind: OpType::Update,
            prev: Some(self.head.clone()),
            signing_keys: keys
                .iter()
                .map(|(name, key)| (name.to_string(), multibase(key)))
                .collect(),
            rotation_keys: vec![self.rotation.did_key()],
            handles: vec![],
            namespaces: vec![],
            services: Default::default(),
            compromised: compromised.iter().map(|s| s.to_string()).collect(),
            created_at: syncropel_protocol::rfc3339_from_unix(1_800_000_000),
            sig: None,
        };
        let signed = sign_operation(&op, &self.rotation);
        let hash = self.did.trim_start_matches("did:sync:");
        submit(
            &client(),
            &self.directory,
            &format!("update/{hash}"),
            &signed,
        )
        .await
        .unwrap();
        self.head = cid(&signed);
    }
}

/// A `KNOW` record (`{"n": clock}`) by the steward's own DID, as stored.
async fn emit(node: &Node, thread: &str, clock: i64) -> Value {
    node.emit(thread, &node.did(), clock, json!({"n": clock}))
        .await
}

async fn has(node: &Node, id: &str) -> bool {
    node.record(id).await.is_some()
}

/// Pulls `thread` once from a peer without a pair, with a token the peer gave us.
async fn pull_from(node: &Node, peer: &Node, thread: &str) -> Value {
    let token = peer.steward.token(&["federation:sync_pull"], &[]).await;
    let request = PullRequest {
        thread: thread.into(),
        peer: peer.url().into(),
        peer_token: Some(token),
        namespace: None,
    };
    let pulled = node.client.pull(&request).await.unwrap();
    assert_eq!(pulled.status(), 200, "{}", pulled.json());
    pulled.into_json()
}

async fn assert_no_quarantine(node: &Node) {
    let quarantine = node.quarantine(None).await;
    assert!(quarantine.is_empty(), "{quarantine:?}");
}

/// `options` for a steward known by the did:sync `sync`, signing with `key`.
fn as_sync(key: &Keypair, sync: &SyncDid, options: Options) -> Options {
    Options {
        keypair: Some(key.clone()),
        identity: Identity::Sync {
            did: sync.did.clone(),
        },
        ..options
    }
}

/// A steward resolving did:sync at `directory` on a resolver clock the test moves forward (by
/// the seconds it stores).
async fn resolving_peer(directory: &str) -> (Node, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let shift = offset.clone();
    let clock: ResolverClock =
        Arc::new(move || start + Duration::from_secs(shift.load(Ordering::SeqCst)));
    let peer = Node::start(Options {
        federation: FederationConfig {
            resolver_clock: clock,
            ..federation(&[directory])
        },
        ..Options::default()
    })
    .await;
    (peer, offset)
}

/// `id` waits in `node`'s quarantine for its signer, and only it.
async fn assert_waiting(node: &Node, id: &str) {
    assert_eq!(
        node.quarantine(None).await,
        HashMap::from([(id.to_string(), "SIGNER_UNRESOLVED".into())])
    );
}

/// `id` is stored, and nothing waits in quarantine.
async fn assert_admitted(node: &Node, id: &str) {
    assert!(has(node, id).await);
    assert_no_quarantine(node).await;
}

fn federation(directories: &[&str]) -> FederationConfig {
    FederationConfig {
        poll_interval: Duration::from_millis(200),
        directories: directories.iter().map(|s| s.to_string()).collect(),
        ..FederationConfig::default()
    }
}

/// A hosted replica that registers new tenants at `directory` with the platform's `key`.
async fn registering_replica(db: &str, directory: &str, key: &Keypair) -> Replica {
    Replica::start(
        db,
        Config {
            registration: Some(DirectoryRegistration {
                directory: directory.to_string(),
                rotation_key: Arc::new(key.clone()),
            }),
            federation: FederationConfig {
                directories: vec![directory.to_string()],
                ..FederationConfig::default()
            },
            ..Config::default()
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------

/// A did:web steward serves its document (domain form; another in path form), a peer pairs with
/// it through the document's key, and the records it signs as its did:web verify at the peer.
#[tokio::test]
async fn a_did_web_steward_serves_its_document_and_its_records_verify_at_a_peer() {
    let key = Keypair::generate();
    let b_key = Keypair::generate();
    // The did:web names the address the steward binds.
    let a = Node::start(Options {
        keypair: Some(key.clone()),
        identity: Identity::Web {
            path: None,
            endpoint: None,
        },
        federation: FederationConfig {
            auto_approve: vec![b_key.did_key()],
            ..federation(&[])
        },
        ..Options::default()
    })
    .await;
    let did = a.did();
    assert!(did.starts_with("did:web:127.0.0.1%3A"), "{did}");

    // The document, as any resolver fetches it: no token needed. Read as sent: the member names
    // are what is checked.
    let document: Value = reqwest::get(format!("{}/.well-known/did.json", a.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["id"], did.as_str());
    assert_eq!(
        document["verificationMethod"][0]["publicKeyMultibase"],
        multibase(&key).as_str()
    );
    assert_eq!(
        document["verificationMethod"][0]["type"],
        "Ed25519VerificationKey2020"
    );
    assert_eq!(
        document["assertionMethod"][0],
        format!("{did}#key-1").as_str()
    );
    assert_eq!(document["service"][0]["type"], "syncropel");
    assert_eq!(document["service"][0]["serviceEndpoint"], a.url());
    let (status, body) = a.get("/teams/alice/did.json").await;
    assert_eq!(status, 404, "{body}");

    // B pairs with A: it checks A's manifest against the keys of A's document.
    let b = Node::start(Options {
        keypair: Some(b_key),
        federation: federation(&[]),
        ..Options::default()
    })
    .await;
    let view = b.pair_with(a.url()).await;
    assert_eq!(view["peer_did"], did.as_str(), "{view}");

    let thread = "th_web_records";
    let record = emit(&a, thread, 1).await;
    assert_eq!(record["signer"], key.did_key().as_str(), "{record}");
    let pulled = b.pull(thread, &did).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    assert!(has(&b, record["id"].as_str().unwrap()).await);
    assert!(b.quarantine(None).await.is_empty());

    // The path form: a document at /<path>/did.json, none at the well-known place.
    let c_key = Keypair::generate();
    let c = Node::start(Options {
        keypair: Some(c_key.clone()),
        identity: Identity::Web {
            path: Some("teams/alice".into()),
            endpoint: Some("https://spl.example.com".into()),
        },
        ..Options::default()
    })
    .await;
    let path_did = c.did();
    assert!(path_did.ends_with(":teams:alice"), "{path_did}");
    let (status, document) = c.get("/teams/alice/did.json").await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["id"], path_did.as_str());
    assert_eq!(
        document["service"][0]["serviceEndpoint"],
        "https://spl.example.com"
    );
    assert_eq!(c.get("/.well-known/did.json").await.0, 404);
    let keys = b.steward.state.federation.keys_of(&path_did).await.unwrap();
    assert_eq!(keys, vec![c_key.did_key()]);

    // A did:key steward has no document.
    let (status, refusal) = b.get("/.well-known/did.json").await;
    assert_eq!(status, 404, "{refusal}");
    assert_eq!(error_code(&refusal), "NOT_FOUND");
}

/// A did:sync steward pairs through its directory; its records verify at the peer before and
/// after it rotates its signing key (the peer's cached document lacks the new key and is fetched
/// again), and the old records still verify against the rotated document.
#[tokio::test]
async fn records_of_a_did_sync_steward_verify_before_and_after_a_rotation() {
    let directory = Directory::start().await;
    let (k1, k2) = (Keypair::generate(), Keypair::generate());
    let mut sync = SyncDid::register(&directory.url, &k1).await;
    let b_key = Keypair::generate();
    let approving = Options {
        federation: FederationConfig {
            auto_approve: vec![b_key.did_key()],
            ..federation(&[&directory.url])
        },
        ..Options::default()
    };
    let a = Node::start(as_sync(&k1, &sync, approving)).await;
    let b = Node::start(Options {
        keypair: Some(b_key),
        federation: federation(&[&directory.url]),
        ..Options::default()
    })
    .await;
    b.pair_with(a.url()).await;

    let thread = "th_sync_rotation";
    let before = emit(&a, thread, 1).await;
    let pulled = b.pull(thread, &sync.did).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");

    // Rotate: key-2 replaces key-1 at the directory; A restarts on its address signing with it.
    sync.update(&[("key-2", &k2)], &[]).await;
    let stopped = a.stop().await;
    // A's home no longer names key-1 (as after a compromise): the pair it answered as
    // responder, whose genesis key-1 signed, stands all the same.
    let restart = Options {
        federation: federation(&[&directory.url]),
        ..Options::restart(stopped)
    };
    let a = Node::start(as_sync(&k2, &sync, restart)).await;
    let pairs = a.client.federation_pairs().await.unwrap();
    assert_eq!(pairs.status(), 200, "{}", pairs.json());
    let pairs = pairs.into_json();
    assert_eq!(pairs["data"][0]["state"], "active", "{pairs}");
    let after = emit(&a, thread, 2).await;
    assert_eq!(after["signer"], k2.did_key().as_str(), "{after}");
    b.pull(thread, &sync.did).await;
    let after_id = after["id"].as_str().unwrap().to_string();
    b.arrived(&after_id).await;
    assert_no_quarantine(&b).await;

    // The old record still verifies against the rotated document.
    let keys = b.steward.state.federation.keys_of(&sync.did).await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let stored = b.record(before["id"].as_str().unwrap()).await.unwrap();
    let item = PeerItem::from_value(json!({"id": stored["id"], "record": stored})).unwrap();
    let document = DocumentKeys {
        current: keys[..1].to_vec(),
        keys,
        fresh: true,
    };
    let resolved = ResolvedKeys::from([(sync.did.clone(), document)]);
    assert_eq!(verify_items(&[item], &resolved), vec![Ok(())]);
}

/// Once a key is withdrawn as compromised, a peer that first sees records it signed refuses
/// them (`SIGNATURE_INVALID`, final), while records of the key in force are admitted.
#[tokio::test]
async fn records_signed_by_a_compromised_key_are_refused_when_first_seen_after() {
    let directory = Directory::start().await;
    let (k1, k2) = (Keypair::generate(), Keypair::generate());
    let mut sync = SyncDid::register(&directory.url, &k1).await;
    let thread = "th_sync_compromised";
    let a = Node::start(as_sync(&k1, &sync, Options::default())).await;
    let leaked = emit(&a, thread, 1).await;
    sync.update(&[("key-2", &k2)], &["key-1"]).await;
    let stopped = a.stop().await;
    let a = Node::start(as_sync(&k2, &sync, Options::restart(stopped))).await;
    let good = emit(&a, thread, 2).await;

    let b = Node::start(Options {
        federation: federation(&[&directory.url]),
        ..Options::default()
    })
    .await;
    let pulled = pull_from(&b, &a, thread).await;
    assert_eq!(pulled["pulled"], 1, "{pulled}");
    assert!(has(&b, good["id"].as_str().unwrap()).await);
    assert!(!has(&b, leaked["id"].as_str().unwrap()).await);
    assert_eq!(
        b.quarantine(None).await,
        HashMap::from([(
            leaked["id"].as_str().unwrap().to_string(),
            "SIGNATURE_INVALID".to_string()
        )])
    );
}

/// A record whose actor's document cannot be had is quarantined as `SIGNER_UNRESOLVED`, never
/// admitted unverified; a later pull, once the directory answers, verifies and admits it and
/// clears its quarantine entry.
#[tokio::test]
async fn unresolvable_signers_wait_in_quarantine_and_are_admitted_once_resolved() {
    let directory = Directory::start().await;
    let key = Keypair::generate();
    let sync = SyncDid::register(&directory.url, &key).await;
    let a = Node::start(as_sync(&key, &sync, Options::default())).await;
    let thread = "th_sync_unresolved";
    let record = emit(&a, thread, 1).await;
    let id = record["id"].as_str().unwrap().to_string();

    let (b, offset) = resolving_peer(&directory.url).await;
    let stopped = directory.stop().await;
    let pulled = pull_from(&b, &a, thread).await;
    assert_eq!(pulled["pulled"], 0, "{pulled}");
    assert_waiting(&b, &id).await;
    assert!(!has(&b, &id).await);

    // The directory is back; past the resolver's memory of the failure, the next pull of the
    // pair re-verifies the waiting record.
    let _directory = Directory::restart(stopped).await;
    offset.store(60, Ordering::SeqCst);
    emit(&a, thread, 2).await;
    pull_from(&b, &a, thread).await;
    assert_admitted(&b, &id).await;
}

/// Hosted provisioning registers each tenant's did:sync (the user's recovery key first, then the
/// platform's rotation key), serves the tenant's secondary did:web on its host naming the
/// did:sync, and signs the tenant's manifest with a key of its did:sync document.
#[tokio::test]
async fn hosted_tenants_are_registered_at_the_directory_when_provisioned() {
    let directory = Directory::start().await;
    let platform_key = Keypair::generate();
    let recovery = Keypair::generate();
    let url = directory.url.clone();
    with_test_database(|db| async move {
        let replica = registering_replica(&db, &url, &platform_key).await;
        let body = json!({"label": "acme", "bootstrap_token": "bootstrap-token-for-acme",
                          "recovery_key": recovery.did_key()});
        let (status, accepted) = replica.provision("acct-1", "k1", &body).await;
        assert_eq!(status, 202, "{accepted}");
        let id = accepted["instance_id"].as_str().unwrap();
        let described = replica.provision_status("acct-1", id).await;
        let did = described.did;
        assert!(did.starts_with("did:sync:"), "{did}");
        // A retry answers the same tenant; the directory keeps one DID.
        let (status, again) = replica.provision("acct-1", "k1", &body).await;
        assert_eq!(status, 202, "{again}");
        assert_eq!(again["instance_id"], accepted["instance_id"]);

        // The directory's log names the rotation keys in order.
        let hash = did.trim_start_matches("did:sync:");
        let log: Value = reqwest::get(format!("{url}/directory/{hash}/operations"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let genesis = &log["operations"][0]["op"];
        assert_eq!(
            genesis["rotation_keys"],
            json!([recovery.did_key(), platform_key.did_key()])
        );
        assert_eq!(
            genesis["services"]["syncropel"]["endpoint"],
            "http://acme.steward.test"
        );

        // The manifest is signed with a key of the did:sync document (read as sent: the signature
        // covers its JSON).
        let (status, manifest) =
            send(replica.tenant_request("acme", reqwest::Method::GET, "/.well-known/syncropel"))
                .await;
        assert_eq!(status, 200, "{manifest}");
        let manifest = &manifest["federation_manifest"];
        assert_eq!(manifest["daemon"]["did"], did.as_str());
        let keys = replica.state.federation.keys_of(&did).await.unwrap();
        syncropel_federation::manifest::verify(manifest, &keys).unwrap();

        // The secondary did:web of the tenant host names the did:sync.
        let (status, document) =
            send(replica.tenant_request("acme", reqwest::Method::GET, "/.well-known/did.json"))
                .await;
        assert_eq!(status, 200, "{document}");
        assert_eq!(document["id"], "did:web:acme.steward.test");
        assert_eq!(document["alsoKnownAs"], json!([did]));
        replica.stop().await;
    })
    .await;
}

/// A hosted did:key tenant upgrades to a did:sync through any replica (here one that was
/// started with the platform's directory); bad bodies change nothing; a local steward sends
/// the operator to `spl identity upgrade`.
#[tokio::test]
async fn a_hosted_did_key_tenant_upgrades_to_a_did_sync() {
    let directory = Directory::start().await;
    let url = directory.url.clone();
    with_test_database(|db| async move {
        let plain = Replica::start(&db, Config::default()).await;
        let token = plain.new_tenant("acct-1", "beta").await;
        let before = plain
            .tenant_client("beta", &token)
            .identity()
            .await
            .unwrap();
        assert_eq!(before.status(), 200, "{}", before.json());
        assert_eq!(before.method, "key", "{before:?}");
        let (status, refusal) = plain
            .tenant_post("beta", &token, "/v1/identity/upgrade", &json!({}))
            .await;
        assert_eq!(status, 501, "{refusal}");

        let registering = registering_replica(&db, &url, &Keypair::generate()).await;
        for bad in [
            json!({"recovery_key": 5}),
            json!({"recovery_key": "did:key:nope"}),
            json!({"other": 1}),
            json!([]),
        ] {
            let (status, refusal) = registering
                .tenant_post("beta", &token, "/v1/identity/upgrade", &bad)
                .await;
            assert_eq!(status, 400, "{bad}: {refusal}");
        }
        let tenant = registering.tenant_client("beta", &token);
        let unchanged = tenant.identity().await.unwrap();
        assert_eq!(unchanged.did, before.did);

        let recovery = Keypair::generate();
        let upgrade = UpgradeIdentity {
            recovery_key: Some(recovery.did_key()),
        };
        let upgraded = tenant.upgrade_identity(&upgrade).await.unwrap();
        assert_eq!(upgraded.status(), 200, "{}", upgraded.json());
        let did = upgraded.into_value().did;
        assert!(did.starts_with("did:sync:"), "{did}");
        let after = tenant.identity().await.unwrap();
        assert_eq!(after.did, did, "{after:?}");
        assert_eq!(after.signer, before.signer, "the key stays");
        let keys = registering.state.federation.keys_of(&did).await.unwrap();
        assert_eq!(keys, vec![before.signer.clone()]);
        let (status, again) = registering
            .tenant_post("beta", &token, "/v1/identity/upgrade", &json!({}))
            .await;
        assert_eq!(status, 400, "{again}");
        plain.stop().await;
        registering.stop().await;
    })
    .await;

    let local = Node::start(Options::default()).await;
    let (status, refusal) = local.post("/v1/identity/upgrade", &json!({})).await;
    assert_eq!(status, 501, "{refusal}");
    assert!(refusal["hint"]
        .as_str()
        .unwrap()
        .contains("spl identity upgrade"));
}

/// A home whose steward has a live pair keeps its DID: upgrading is refused until the pair is
/// revoked.
#[tokio::test]
async fn a_home_with_live_pairs_is_not_upgraded() {
    let b_key = Keypair::generate();
    let a = Node::start(Options {
        federation: FederationConfig {
            auto_approve: vec![b_key.did_key()],
            ..federation(&[])
        },
        ..Options::default()
    })
    .await;
    let b = Node::start(Options {
        keypair: Some(b_key),
        ..Options::default()
    })
    .await;
    b.pair_with(a.url()).await;
    let stopped = a.stop().await;
    let home = syncropel_home::Home::new(stopped.home.path().to_path_buf());
    let refusal = syncropel_home::refuse_if_paired(&home).await.unwrap_err();
    assert!(refusal.to_string().contains("1 pairs"), "{refusal}");
    assert!(home.published().unwrap().is_none());
}

/// A record signed by a key the peer's cached document lacks, when the document cannot be
/// fetched afresh yet (forced fetches are rationed per DID), waits as `SIGNER_UNRESOLVED`
/// rather than being refused for good, and is admitted once the document is fetched again.
#[tokio::test]
async fn a_new_key_not_yet_in_a_cached_document_waits_instead_of_failing() {
    let directory = Directory::start().await;
    let (k1, k2) = (Keypair::generate(), Keypair::generate());
    let mut sync = SyncDid::register(&directory.url, &k1).await;
    let (b, offset) = resolving_peer(&directory.url).await;
    // B holds key-1 only, and a stranger's signature has just used up the forced fetch.
    let federation = &b.steward.state.federation;
    assert!(federation.signs_for(&sync.did, &k1.did_key()).await);
    assert!(
        !federation
            .signs_for(&sync.did, &Keypair::generate().did_key())
            .await
    );

    sync.update(&[("key-2", &k2)], &[]).await;
    let a = Node::start(as_sync(&k2, &sync, Options::default())).await;
    let thread = "th_sync_rationed";
    let record = emit(&a, thread, 1).await;
    let id = record["id"].as_str().unwrap().to_string();
    pull_from(&b, &a, thread).await;
    assert_waiting(&b, &id).await;

    offset.store(31, Ordering::SeqCst);
    pull_from(&b, &a, thread).await;
    assert_admitted(&b, &id).await;
}

/// `spl identity upgrade` retried after the directory's answer was lost sends the same genesis
/// and gets the same DID (a new genesis would register a second DID holding the handles).
#[tokio::test]
async fn a_retried_upgrade_registers_one_did() {
    let directory = Directory::start().await;
    let root = tempfile::tempdir().unwrap();
    let home = syncropel_home::Home::new(root.path().to_path_buf());
    home.init(false).unwrap();
    let registration = || syncropel_home::SyncRegistration {
        directory: directory.url.clone(),
        handles: vec!["retry-me".into()],
        ..Default::default()
    };
    // The first attempt: its genesis reached the directory, its answer did not come back.
    let rotation = home.rotation_keypair().unwrap();
    let genesis = sync_genesis(
        &home.keypair().unwrap(),
        vec![rotation.did_key()],
        vec!["retry-me".into()],
        vec![],
        None,
    );
    let signed = sign_operation(&genesis, &rotation);
    home.set_pending_genesis(Some(&signed)).unwrap();
    submit(&client(), &directory.url, "genesis", &signed)
        .await
        .unwrap();

    let published = syncropel_home::upgrade_to_sync(&home, &client(), registration())
        .await
        .unwrap();
    assert_eq!(published.did, did_from_genesis(&signed));
    assert_eq!(published.handles, vec!["retry-me".to_string()]);
    assert!(home.pending_genesis().unwrap().is_none());
    assert_eq!(home.did().unwrap(), published.did);
}

/// `spl identity rotate` retried after the directory's answer to the update was lost: the key
/// it offers is already in force there, so the retry takes that update's cid as the head
/// instead of registering another.
#[tokio::test]
async fn a_retried_rotation_adopts_the_update_the_directory_holds() {
    let directory = Directory::start().await;
    let root = tempfile::tempdir().unwrap();
    let home = syncropel_home::Home::new(root.path().to_path_buf());
    home.init(false).unwrap();
    let registration = syncropel_home::SyncRegistration {
        directory: directory.url.clone(),
        ..Default::default()
    };
    let published = syncropel_home::upgrade_to_sync(&home, &client(), registration)
        .await
        .unwrap();
    // The first attempt: its update reached the directory, its answer did not come back.
    let next = home.next_keypair().unwrap();
    let mut sync = SyncDid {
        did: published.did.clone(),
        head: published.head.clone().unwrap(),
        rotation: home.rotation_keypair().unwrap(),
        directory: directory.url.clone(),
    };
    sync.update(&[("key-2", &next)], &[]).await;

    let rotated = syncropel_home::rotate(&home, &client(), false)
        .await
        .unwrap();
    assert_eq!(rotated.head.as_deref(), Some(sync.head.as_str()));
    assert_eq!(rotated.current, "key-2");
    assert_eq!(home.keypair().unwrap().did_key(), next.did_key());
    let resolved = syncropel_federation::DidResolver::new(client(), vec![directory.url.clone()])
        .resolve(&published.did)
        .await
        .unwrap();
    assert_eq!(resolved.current, vec![next.did_key()]);
    assert_eq!(resolved.head, rotated.head);
}

/// A hosted did:sync tenant that moves away is pointed at its new home by the platform's rotation
/// key when that home fences it (federation-protocol.md §8.5 step 3): the directory's log then
/// names the new endpoint, everything else kept; fencing again sends nothing more. The fenced
/// tenant is deleted once `moved_kept` has passed; a tenant that was not fenced stays.
#[tokio::test]
async fn a_fenced_hosted_did_sync_is_published_at_its_new_home_then_deleted() {
    let directory = Directory::start().await;
    let url = directory.url.clone();
    with_test_database(|db| async move {
        let replica = registering_replica(&db, &url, &Keypair::generate()).await;
        let token = replica.new_tenant("acct-1", "mover").await;
        // Registered at provisioning, with the platform's rotation key.
        let did = replica
            .tenant_client("mover", &token)
            .identity()
            .await
            .unwrap()
            .into_value()
            .did;
        assert!(did.starts_with("did:sync:"), "{did}");
        let hash = did.trim_start_matches("did:sync:").to_string();
        let log = || {
            let url = format!("{url}/directory/{hash}/operations");
            async move {
                let log: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                log["operations"].as_array().unwrap().clone()
            }
        };
        let before = log().await;

        // The identity key, as the new home has it from the bundle.
        let passphrase = "a passphrase long enough";
        let bundle = replica
            .tenant_request("mover", reqwest::Method::POST, "/v1/portability/export")
            .bearer_auth(&token)
            .json(&json!({"passphrase": passphrase, "intent": "leave"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bundle.status(), 200);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mover.tar.zst");
        std::fs::write(&path, bundle.bytes().await.unwrap()).unwrap();
        let opened = syncropel_portability::open(
            &path,
            Some(passphrase),
            &syncropel_bundle::Limits::default(),
        )
        .unwrap();
        let key = opened.key.unwrap();

        let new_home = "http://127.0.0.1:9/new-home";
        let notice = syncropel_protocol::moved::sign_moved(
            &did,
            new_home,
            syncropel_protocol::unix_now(),
            &key,
        );
        let (status, fenced) = replica
            .tenant_post("mover", &token, "/v1/portability/fence", &notice)
            .await;
        assert_eq!(status, 200, "{fenced}");
        assert_eq!(fenced["endpoint_published"]["ok"], true, "{fenced}");
        let after = log().await;
        assert_eq!(after.len(), before.len() + 1);
        let (last, previous) = (
            &after[after.len() - 1]["op"],
            &before[before.len() - 1]["op"],
        );
        assert_eq!(last["type"], "update", "{last}");
        assert_eq!(last["services"]["syncropel"]["endpoint"], new_home);
        for kept in ["signing_keys", "rotation_keys", "handles", "namespaces"] {
            assert_eq!(last[kept], previous[kept], "{kept}");
        }
        assert_eq!(
            fenced["endpoint_published"]["head"],
            after[after.len() - 1]["cid"]
        );

        // Again (a retried fence): the DID already names the new home.
        let (status, again) = replica
            .tenant_post("mover", &token, "/v1/portability/fence", &notice)
            .await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["endpoint_published"]["ok"], true, "{again}");
        assert_eq!(log().await.len(), after.len());

        // Kept 30 days after the fence, then deleted (its deletion grace starts then).
        let platform = replica.platform();
        assert_eq!(platform.delete_moved().await.unwrap(), 0);
        let stays = replica.new_tenant("acct-2", "stays").await;
        let impatient = Replica::start(
            &db,
            Config {
                moved_kept: Duration::ZERO,
                ..Config::default()
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The replica's own sweep may have deleted it already: between the two, once.
        assert!(impatient.platform().delete_moved().await.unwrap() <= 1);
        let deleted = replica
            .platform()
            .store()
            .live_tenant("mover", Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.status, TenantState::Deleted);
        let (status, _) = replica.tenant_get("stays", &stays, "/v1/records").await;
        assert_eq!(status, 200, "an unfenced tenant stays");
        impatient.stop().await;
        replica.stop().await;
    })
    .await;
}
