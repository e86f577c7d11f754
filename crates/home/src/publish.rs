//! Publishing a home's identity beyond its did:key (federation-protocol.md §1.3, §1.4): registering a
//! did:sync at a directory, taking a did:web this steward serves itself, and rotating the
//! signing key of either. The key that signs records stays in `keys/identity.key`; a did:sync's
//! operations are signed by a separate rotation key (`keys/rotation.key`), which never signs
//! records.

use std::collections::BTreeMap;

pub(crate) use syncropel_federation::directory::multibase;
use syncropel_federation::directory::{services_with_relays, submit, sync_genesis};
use syncropel_federation::{DidResolver, PeerClient};
use syncropel_protocol::did_doc::{add_relay_services, did_web_document, did_web_for, did_web_url};
use syncropel_protocol::did_sync::{cid, did_from_genesis, sign_operation, OpType, Operation};
use syncropel_protocol::pair::PairView;
use syncropel_protocol::{rfc3339_from_unix, unix_now, Keypair};
use syncropel_store::RecordStore;

use crate::{Home, HomeError, PublishedIdentity, LOCAL_TENANT};

/// What `spl identity upgrade --method sync` registers.
#[derive(Clone, Debug, Default)]
pub struct SyncRegistration {
    /// Base URL of the directory.
    pub directory: String,
    pub handles: Vec<String>,
    pub namespaces: Vec<String>,
    /// The steward URL published as the `syncropel` service.
    pub endpoint: Option<String>,
    /// A did:key the user holds offline, placed first among the rotation keys so that it can
    /// override this home's own rotation key within the recovery window.
    pub recovery_key: Option<String>,
}

/// Registers the home's key under a new did:sync and makes it the home's DID.
pub async fn upgrade_to_sync(
    home: &Home,
    client: &PeerClient,
    registration: SyncRegistration,
) -> Result<PublishedIdentity, HomeError> {
    refuse_if_published(home)?;
    let key = home.keypair()?;
    // A genesis sent before whose answer was lost is sent again as it was: a new one (a new
    // `created_at`) would register a second DID holding the same handles.
    let signed = match home.pending_genesis()? {
        Some(pending) => pending,
        None => {
            let rotation = home.rotation_keypair()?;
            let mut rotation_keys: Vec<String> = registration.recovery_key.into_iter().collect();
            rotation_keys.push(rotation.did_key());
            let mut genesis = sync_genesis(
                &key,
                rotation_keys,
                registration.handles,
                registration.namespaces,
                registration.endpoint.as_deref(),
            );
            // The relays named in config.toml are services of the DID (§7.2).
            genesis.services =
                services_with_relays(registration.endpoint.as_deref(), &home.relays()?);
            let signed = sign_operation(&genesis, &rotation);
            home.set_pending_genesis(Some(&signed))?;
            signed
        }
    };
    let genesis = Operation::from_value(&signed)
        .map_err(|e| HomeError::Refused(format!("identity-genesis.json: {e}")))?;
    let did = did_from_genesis(&signed);
    let answer = submit(client, &registration.directory, "genesis", &signed)
        .await
        .map_err(|e| HomeError::Refused(e.message()))?;
    if answer["did"].as_str() != Some(did.as_str()) {
        return Err(HomeError::Refused(format!(
            "the directory registered {} instead of {did}",
            answer["did"]
        )));
    }
    let published = PublishedIdentity {
        did,
        method: "sync".into(),
        directory: Some(registration.directory),
        keys: vec![("key-1".into(), multibase(&key))],
        current: "key-1".into(),
        compromised: Vec::new(),
        head: Some(cid(&signed)),
        rotation_keys: genesis.rotation_keys,
        handles: genesis.handles,
        namespaces: genesis.namespaces,
        endpoint: genesis
            .services
            .get("syncropel")
            .map(|s| s.endpoint.clone()),
        endpoint_auto: false,
    };
    home.publish(&published)?;
    home.set_pending_genesis(None)?;
    Ok(published)
}

/// Makes the home's DID a did:web of `host` (with port, e.g. `spl.example.com` or
/// `127.0.0.1:9100`) and optional `path`; the steward serves its document from then on.
pub fn upgrade_to_web(
    home: &Home,
    host: &str,
    path: Option<&str>,
    endpoint: Option<String>,
) -> Result<PublishedIdentity, HomeError> {
    refuse_if_published(home)?;
    let key = home.keypair()?;
    let published = PublishedIdentity::first(did_web_for(host, path), "web", &key, endpoint);
    home.publish(&published)?;
    Ok(published)
}

/// The home's did:web document, as `spl serve` would serve it, for the operator to publish at
/// [`did_web_url`] where the steward does not answer itself: every key not withdrawn (current
/// first), a `syncropel` service at the published endpoint (else the origin the document is
/// fetched from) and the relays `config.toml` names. Also where it is to be published.
pub fn did_web_file(home: &Home) -> Result<(serde_json::Value, String), HomeError> {
    let published = home
        .published()?
        .filter(|p| p.method == "web")
        .ok_or_else(|| HomeError::Refused("this home's DID is not a did:web".into()))?;
    let url = did_web_url(&published.did).map_err(|e| HomeError::Refused(e.to_string()))?;
    // `scheme://authority`, the part before the path.
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    let origin = url[authority_at..]
        .find('/')
        .map_or(url.as_str(), |end| &url[..authority_at + end]);
    let keys: Vec<(String, String)> = published
        .keys
        .iter()
        .rev()
        .filter(|(fragment, _)| !published.compromised.contains(fragment))
        .cloned()
        .collect();
    let mut document = did_web_document(
        &published.did,
        &keys,
        std::slice::from_ref(&published.current),
        Some(published.endpoint.as_deref().unwrap_or(origin)),
        &[],
    );
    add_relay_services(&mut document, &published.did, &home.relays()?);
    Ok((document, url))
}

/// Replaces the signing key of a published identity (federation-protocol.md §1.3 rotation, §1.4 `update`). The old key
/// stays valid for the records it signed unless `compromised`, which withdraws it.
pub async fn rotate(
    home: &Home,
    client: &PeerClient,
    compromised: bool,
) -> Result<PublishedIdentity, HomeError> {
    let mut published = home.published()?.ok_or_else(|| {
        HomeError::Refused(
            "a did:key cannot rotate (a new key is a new DID); run `spl identity upgrade` first"
                .into(),
        )
    })?;
    let retired = published.current.clone();
    let fragment = format!("key-{}", published.keys.len() + 1);
    // Kept in `keys/next.key` until the rotation is done: a retry offers the same key.
    let key = home.next_keypair()?;
    if compromised {
        published.compromised.push(retired.clone());
    }
    if published.method == "sync" {
        published.head = Some(register_rotation(home, client, &published, &fragment, &key).await?);
    }
    // `identity.json` is the commit point; the key files follow it (see `Home::identity`).
    published.keys.push((fragment.clone(), multibase(&key)));
    published.current = fragment;
    home.publish(&published)?;
    home.replace_key(&retired)?;
    Ok(published)
}

/// Sends the `update` that makes `key` the signing key, and returns the new head. When an
/// earlier attempt was accepted but its answer lost, the directory's log already has the key in
/// force: that op's cid is the head.
async fn register_rotation(
    home: &Home,
    client: &PeerClient,
    published: &PublishedIdentity,
    fragment: &str,
    key: &Keypair,
) -> Result<String, HomeError> {
    let directory = published
        .directory
        .clone()
        .ok_or_else(|| HomeError::Refused("identity.json names no directory".into()))?;
    let hash = published.did.trim_start_matches("did:sync:").to_string();
    let update = Operation {
        kind: OpType::Update,
        prev: published.head.clone(),
        signing_keys: BTreeMap::from([(fragment.to_string(), multibase(key))]),
        rotation_keys: published.rotation_keys.clone(),
        handles: published.handles.clone(),
        namespaces: published.namespaces.clone(),
        services: services_with_relays(published.endpoint.as_deref(), &home.relays()?),
        compromised: published.compromised.clone(),
        created_at: rfc3339_from_unix(unix_now()),
        sig: None,
    };
    let signed = sign_operation(&update, &home.rotation_keypair()?);
    match submit(client, &directory, &format!("update/{hash}"), &signed)
        .await
        .map_err(|e| HomeError::Refused(e.message()))
    {
        Ok(_) => Ok(cid(&signed)),
        Err(refused) => match head_naming(client, &directory, &published.did, key).await {
            Some(head) => Ok(head),
            None => Err(refused),
        },
    }
}

/// Publishes the relays config.toml names as the services of the home's did:sync (an `update`
/// op signed by its rotation key), so that peers find them while this steward is down
/// (federation-protocol.md §7.2). A did:web's document names them as the steward serves it,
/// and a did:key has no document: for those nothing is sent (`None`).
pub async fn publish_relays(
    home: &Home,
    client: &PeerClient,
) -> Result<Option<PublishedIdentity>, HomeError> {
    let Some(mut published) = home.published()?.filter(|p| p.method == "sync") else {
        return Ok(None);
    };
    let directory = published
        .directory
        .clone()
        .ok_or_else(|| HomeError::Refused("identity.json names no directory".into()))?;
    let hash = published.did.trim_start_matches("did:sync:").to_string();
    let key = home.keypair()?;
    let update = Operation {
        kind: OpType::Update,
        prev: published.head.clone(),
        signing_keys: BTreeMap::from([(published.current.clone(), multibase(&key))]),
        rotation_keys: published.rotation_keys.clone(),
        handles: published.handles.clone(),
        namespaces: published.namespaces.clone(),
        services: services_with_relays(published.endpoint.as_deref(), &home.relays()?),
        compromised: published.compromised.clone(),
        created_at: rfc3339_from_unix(unix_now()),
        sig: None,
    };
    let signed = sign_operation(&update, &home.rotation_keypair()?);
    submit(client, &directory, &format!("update/{hash}"), &signed)
        .await
        .map_err(|e| HomeError::Refused(e.message()))?;
    published.head = Some(cid(&signed));
    home.publish(&published)?;
    Ok(Some(published))
}

/// The head of the DID's log at `directory` if its state in force signs with `key`, from the
/// log replayed and checked by the resolver.
async fn head_naming(
    client: &PeerClient,
    directory: &str,
    did: &str,
    key: &Keypair,
) -> Option<String> {
    let resolver = DidResolver::new(client.clone(), vec![directory.to_string()]);
    let resolved = resolver.resolve(did).await.ok()?;
    let signer = key.did_key();
    if resolved.current.contains(&signer) {
        resolved.head.clone()
    } else {
        None
    }
}

/// Pairs are made with a DID: a home with live pairs keeps its DID until they are revoked
/// (peers would refuse the new one; federation-protocol.md §1.2).
pub async fn refuse_if_paired(home: &Home) -> Result<(), HomeError> {
    let did = home.did()?;
    match live_pairs(home, &did).await?.len() {
        0 => Ok(()),
        n => Err(HomeError::Refused(format!(
            "{n} pairs were made with {did}; revoke them first (`spl federation revoke`) and pair \
             again once the identity is published"
        ))),
    }
}

/// The pairs of the home's store that `did` made and has not revoked, read from a stopped or a
/// running home alike (none without a store).
pub async fn live_pairs(home: &Home, did: &str) -> Result<Vec<PairView>, HomeError> {
    if !home.db_path().exists() {
        return Ok(Vec::new());
    }
    let store = syncropel_store::SqliteStore::open_file(&home.db_path()).await?;
    let records =
        syncropel_tenant::stored_thread(&store, LOCAL_TENANT, syncropel_protocol::PAIRS_THREAD)
            .await;
    store.close().await;
    let (records, _) = records.map_err(|e| HomeError::Refused(e.to_string()))?;
    Ok(
        syncropel_protocol::pair::fold_pairs(&records, did, |_| true)
            .into_values()
            .filter(|pair| pair.state != syncropel_protocol::PairState::Revoked)
            .collect(),
    )
}

fn refuse_if_published(home: &Home) -> Result<(), HomeError> {
    match home.published()? {
        Some(published) => Err(HomeError::Refused(format!(
            "this home is already published as {}; use `spl identity rotate` to change its key",
            published.did
        ))),
        None => Ok(()),
    }
}
