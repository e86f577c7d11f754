//! Talking to a did:sync directory (federation-protocol.md §1.4): the genesis of a new did:sync,
//! posting signed operations, and pointing a DID at a new endpoint after a move (§8.5). Used by
//! the hosted platform to register tenants and by a home publishing or rotating its identity.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use syncropel_protocol::did_doc::RELAY_SERVICE;
use syncropel_protocol::did_sync::{cid, sign_operation, OpType, Operation, Service};
use syncropel_protocol::{rfc3339_from_unix, unix_now, ErrorCode, Keypair, Refusal};

use crate::error::{FederationError, Result};
use crate::peer::PeerClient;
use crate::resolve::{replay_state, OP_LOG_LIMIT};

/// The genesis of a did:sync whose records are signed by `signing_key` and whose operations
/// may be signed by `rotation_keys` (highest priority first).
pub fn sync_genesis(
    signing_key: &Keypair,
    rotation_keys: Vec<String>,
    handles: Vec<String>,
    namespaces: Vec<String>,
    endpoint: Option<&str>,
) -> Operation {
    Operation {
        kind: OpType::Genesis,
        prev: None,
        signing_keys: BTreeMap::from([("key-1".to_string(), multibase(signing_key))]),
        rotation_keys,
        handles,
        namespaces,
        services: services(endpoint),
        compromised: Vec::new(),
        created_at: rfc3339_from_unix(unix_now()),
        sig: None,
    }
}

/// Posts a signed operation to a directory and checks its answer; returns the answer's body.
pub async fn submit(
    client: &PeerClient,
    directory: &str,
    route: &str,
    op: &Value,
) -> Result<Value> {
    let url = format!("{}/directory/{route}", directory.trim_end_matches('/'));
    let (status, answer) = client
        .post_json(&url, op, None, None)
        .await
        .map_err(|e| FederationError::unreachable(format!("the directory at {directory}: {e}")))?;
    if !(200..300).contains(&status) {
        let code = answer["code"].as_str().unwrap_or("?");
        let message = answer["message"].as_str().unwrap_or("");
        return Err(FederationError::unreachable(format!(
            "the directory refused the operation ({status} {code}): {message}"
        )));
    }
    Ok(answer)
}

/// The multibase form of a public key (`z6Mk…`): its did:key without the prefix.
pub fn multibase(key: &Keypair) -> String {
    key.did_key().trim_start_matches("did:key:").to_string()
}

/// The `services` of a did:sync operation: the steward's endpoint as `syncropel`.
pub fn services(endpoint: Option<&str>) -> BTreeMap<String, Service> {
    services_with_relays(endpoint, &[])
}

/// [`services`], and a `syncropel-relay` service per relay, in order (`relay-1`, …).
pub fn services_with_relays(
    endpoint: Option<&str>,
    relays: &[String],
) -> BTreeMap<String, Service> {
    let steward = endpoint.map(|endpoint| {
        (
            "syncropel".to_string(),
            Service {
                kind: "syncropel".into(),
                endpoint: endpoint.to_string(),
            },
        )
    });
    let relays = relays.iter().enumerate().map(|(n, relay)| {
        (
            format!("relay-{}", n + 1),
            Service {
                kind: RELAY_SERVICE.into(),
                endpoint: relay.clone(),
            },
        )
    });
    steward.into_iter().chain(relays).collect()
}

/// A rotation key this steward holds for did:sync DIDs at a directory: a home's own, or the
/// hosted platform's, listed in each tenant's DID after the user's recovery key.
#[derive(Clone)]
pub struct Publisher {
    pub directory: String,
    pub rotation_key: Arc<Keypair>,
}

impl Publisher {
    /// Points `did`'s `syncropel` service at `endpoint` (federation-protocol.md §8.5 step 3): an
    /// `update` that keeps everything else of the state in force (read from the directory's log,
    /// replayed and checked), signed by the rotation key, which must be one of the DID's. The
    /// new head; nothing is sent when the DID already names `endpoint`.
    pub async fn publish_endpoint(
        &self,
        client: &PeerClient,
        did: &str,
        endpoint: &str,
    ) -> Result<String> {
        let refused = |why: String| {
            FederationError::Refused(Refusal::new(ErrorCode::PreconditionFailed, why))
        };
        let hash = did
            .strip_prefix("did:sync:")
            .ok_or_else(|| refused(format!("{did} is not a did:sync")))?;
        let directory = self.directory.trim_end_matches('/');
        let (log, _) = client
            .get_document(
                &format!("{directory}/directory/{hash}/operations"),
                OP_LOG_LIMIT,
            )
            .await
            .map_err(|e| {
                FederationError::unreachable(format!("the directory at {directory}: {e}"))
            })?;
        let state = replay_state(did, log)
            .map_err(|e| FederationError::unreachable(format!("the log of {did}: {e}")))?;
        if state.deactivated {
            return Err(refused(format!("{did} is deactivated")));
        }
        if state.services.get("syncropel").map(|s| s.endpoint.as_str()) == Some(endpoint) {
            return Ok(state.head);
        }
        if !state.rotation_keys.contains(&self.rotation_key.did_key()) {
            return Err(refused(format!(
                "this steward holds no rotation key of {did}: publish the new endpoint with the \
                 recovery key"
            )));
        }
        let mut services = state.services;
        services.insert(
            "syncropel".into(),
            Service {
                kind: "syncropel".into(),
                endpoint: endpoint.to_string(),
            },
        );
        let update = Operation {
            kind: OpType::Update,
            prev: Some(state.head),
            signing_keys: state.signing_keys,
            rotation_keys: state.rotation_keys,
            handles: state.handles,
            namespaces: state.namespaces,
            services,
            compromised: Vec::new(),
            created_at: rfc3339_from_unix(unix_now()),
            sig: None,
        };
        let signed = sign_operation(&update, &self.rotation_key);
        submit(client, directory, &format!("update/{hash}"), &signed).await?;
        Ok(cid(&signed))
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("directory", &self.directory)
            .field("rotation_key", &self.rotation_key.did_key())
            .finish()
    }
}
