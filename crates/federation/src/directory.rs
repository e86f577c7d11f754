//! Talking to a did:sync directory (federation-protocol.md §1.4): the genesis of a new did:sync
//! and posting signed operations. Used by the hosted platform to register tenants and by a home
//! publishing or rotating its identity.

use std::collections::BTreeMap;

use serde_json::Value;
use syncropel_protocol::did_doc::RELAY_SERVICE;
use syncropel_protocol::did_sync::{OpType, Operation, Service};
use syncropel_protocol::{rfc3339_from_unix, unix_now, Keypair};

use crate::error::{FederationError, Result};
use crate::peer::PeerClient;

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
