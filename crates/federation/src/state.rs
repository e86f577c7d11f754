//! Typed access to the federation state the record log does not hold (the store's
//! `federation_state` documents): the cursor epoch and key of this store, pull cursors, secrets
//! peers issued to us, handshakes in flight and quarantined records.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use syncropel_protocol::Keypair;
use syncropel_store::{RecordStore, StateChange};
use syncropel_tenant::sealed::{SealingKey, Unsealed};

use crate::error::{FederationError, Result};

pub const SYNC_META: &str = "sync_meta";
pub const CURSOR: &str = "cursor";
pub const SECRET: &str = "secret";
pub const HANDSHAKE: &str = "handshake";
/// Answers to token refreshes, kept for a retry with the same nonce (not handshakes: the
/// handshake rows are listed and parsed as such).
pub const REFRESH: &str = "refresh";
pub const QUARANTINE: &str = "quarantine";
pub const LEGACY_PAIR: &str = "legacy_pair";
/// Relays (federation-protocol.md §7): the queues peers pulled directly (source side, keyed by
/// queue id), the outbox's position at each relay (keyed `relay\nqueue id`), the relay cursors of
/// pull jobs (keyed `source\nthread\nrelay`), and the relays a peer's manifest named (keyed by
/// pair id).
pub const RELAY_SERVED: &str = "relay_served";
pub const OUTBOX: &str = "outbox";
pub const RELAY_CURSOR: &str = "relay_cursor";
pub const PEER_RELAYS: &str = "peer_relays";

/// What makes this store's cursors: an epoch naming this life of the store and the HMAC key.
#[derive(Clone, Serialize, Deserialize)]
pub struct SyncMeta {
    pub epoch: String,
    /// Hex of the HMAC key.
    key: String,
}

impl SyncMeta {
    pub fn mac_key(&self) -> Vec<u8> {
        hex::decode(&self.key).unwrap_or_default()
    }
}

/// The store's cursor epoch and key, made on first use (the first writer wins, so replicas agree).
pub async fn sync_meta(store: &dyn RecordStore, tenant: &str) -> Result<SyncMeta> {
    if let Some(text) = store.state_get(tenant, SYNC_META, "cursor").await? {
        return parse(&text);
    }
    let change = match new_epoch() {
        StateChange::Put { kind, key, value } => StateChange::PutIfAbsent { kind, key, value },
        other => other,
    };
    store.write(tenant, Vec::new(), vec![change]).await?;
    let text = store
        .state_get(tenant, SYNC_META, "cursor")
        .await?
        .ok_or_else(|| FederationError::corrupt("the cursor key vanished after it was written"))?;
    parse(&text)
}

/// A new epoch for cursors under `meta`'s key: a store made anew from another's export keeps
/// that store's key, so that peers' cursors of it answer `CURSOR_EPOCH_MISMATCH` (start again),
/// not `INVALID_CURSOR`.
pub fn next_epoch(meta: &SyncMeta) -> StateChange {
    let mut epoch = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut epoch);
    let next = SyncMeta {
        epoch: hex::encode(epoch),
        key: meta.key.clone(),
    };
    StateChange::put(SYNC_META, "cursor", to_text(&next))
}

/// A new epoch and key for this store's cursors, replacing the old (an import begins a new life
/// of the store: cursors issued before name no position in it).
pub fn new_epoch() -> StateChange {
    let mut epoch = [0u8; 8];
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut epoch);
    rand::thread_rng().fill_bytes(&mut key);
    let fresh = SyncMeta {
        epoch: hex::encode(epoch),
        key: hex::encode(key),
    };
    StateChange::put(SYNC_META, "cursor", to_text(&fresh))
}

/// Where a puller is in one source's thread.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PullCursor {
    pub cursor: String,
    pub last_sync_at: Option<i64>,
    pub pulled: u64,
    /// Our namespace the job's records are stored in, named when it started
    /// (federation-protocol.md §6.2); none: each record's own. Rows from before it read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
}

/// The key of a cursor row: the source (pair or legacy pair id) and the thread.
pub fn cursor_key(source: &str, thread: &str) -> String {
    format!("{source}\n{thread}")
}

pub fn split_cursor_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('\n')
}

pub async fn pull_cursor(
    store: &dyn RecordStore,
    tenant: &str,
    source: &str,
    thread: &str,
) -> Result<Option<PullCursor>> {
    match store
        .state_get(tenant, CURSOR, &cursor_key(source, thread))
        .await?
    {
        Some(text) => Ok(Some(parse(&text)?)),
        None => Ok(None),
    }
}

pub fn put_cursor(source: &str, thread: &str, cursor: &PullCursor) -> StateChange {
    StateChange::put(CURSOR, &cursor_key(source, thread), to_text(cursor))
}

/// Secrets (bearers a peer issued to us) are sealed with a key derived from the tenant's identity
/// key (`syncropel_tenant::sealed`), which is itself sealed at rest in hosted mode: a database
/// dump alone reveals no bearer.
pub fn seal_secret(identity: &Keypair, handle: &str, plaintext: &str) -> StateChange {
    StateChange::put(SECRET, handle, key(identity).seal(handle, plaintext))
}

pub async fn open_secret(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &Keypair,
    handle: &str,
) -> Result<Option<String>> {
    let Some(text) = store.state_get(tenant, SECRET, handle).await? else {
        return Ok(None);
    };
    let why = match key(identity).open(handle, &text) {
        Ok(plain) => return Ok(Some(plain)),
        Err(Unsealed::Malformed) => "is malformed",
        Err(Unsealed::WrongKey) => "does not open with this identity",
        Err(Unsealed::NotText) => "is not text",
    };
    Err(FederationError::corrupt(format!("secret {handle} {why}")))
}

const SECRETS_LABEL: &[u8] = b"syncropel federation secrets v1\n";

fn key(identity: &Keypair) -> SealingKey {
    SealingKey::derive(SECRETS_LABEL, identity)
}

/// Seals again under the current key the bearers sealed under a retired one (after a rotation
/// of the identity key); how many.
pub async fn reseal(
    store: &dyn RecordStore,
    tenant: &str,
    identity: &syncropel_tenant::Identity,
) -> Result<usize> {
    let (current, retired) = (&identity.key, &identity.retired_keys);
    let kind = SECRET;
    Ok(
        syncropel_tenant::sealed::reseal(store, tenant, kind, SECRETS_LABEL, current, retired)
            .await?,
    )
}

pub fn to_text<T: Serialize>(value: &T) -> String {
    #[allow(clippy::expect_used)] // Documents are structs of strings, numbers and lists.
    serde_json::to_string(value).expect("state documents always serialize")
}

pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| FederationError::corrupt(format!("state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_open_only_with_their_identity_and_handle() {
        let store = syncropel_store::SqliteStore::open_in_memory()
            .await
            .unwrap();
        let key = Keypair::from_seed(&[4; 32]);
        let change = seal_secret(&key, "h1", "spl_prod_sa_x_secret");
        let StateChange::Put { value, .. } = &change else {
            panic!("a put")
        };
        assert!(!value.contains("secret"));
        store.write("t", Vec::new(), vec![change]).await.unwrap();
        assert_eq!(
            open_secret(&store, "t", &key, "h1")
                .await
                .unwrap()
                .as_deref(),
            Some("spl_prod_sa_x_secret")
        );
        let other = Keypair::from_seed(&[5; 32]);
        assert!(open_secret(&store, "t", &other, "h1").await.is_err());
        assert_eq!(open_secret(&store, "t", &key, "h2").await.unwrap(), None);
    }

    #[test]
    fn a_cursor_row_keeps_its_target_namespace_and_older_rows_still_read() {
        let old: PullCursor = parse(r#"{"cursor":"c1","last_sync_at":5,"pulled":2}"#).unwrap();
        assert_eq!(old.target_namespace, None);
        assert!(!to_text(&old).contains("target_namespace"));
        let aimed = PullCursor {
            target_namespace: Some("research".into()),
            ..old
        };
        let again: PullCursor = parse(&to_text(&aimed)).unwrap();
        assert_eq!(again, aimed);
    }

    #[tokio::test]
    async fn the_cursor_key_is_made_once() {
        let store = syncropel_store::SqliteStore::open_in_memory()
            .await
            .unwrap();
        let first = sync_meta(&store, "t").await.unwrap();
        let again = sync_meta(&store, "t").await.unwrap();
        assert_eq!(first.epoch, again.epoch);
        assert_eq!(first.mac_key(), again.mac_key());
        assert_eq!(first.epoch.len(), 16);
        assert_eq!(first.mac_key().len(), 32);
        let other = sync_meta(&store, "u").await.unwrap();
        assert_ne!(first.mac_key(), other.mac_key());
    }
}
