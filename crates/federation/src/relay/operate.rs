//! What an operator sees of and does with the relays (federation-protocol.md §7.6): each relay
//! asked for its health, the outbox rows, the queues the relays hold for and from this steward,
//! a kick that retries every row now, and a purge of one peer's queues.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use syncropel_api::{OutboxRow, RelayEndpoint, RelayQueues, RelayStatus};
use syncropel_store::StateChange;
use syncropel_tenant::Tenant;

use super::client::RelayClient;
use super::fallback::PeerRelays;
use super::outbox;
use crate::error::Result;
use crate::state::{parse, to_text, OUTBOX, PEER_RELAYS};
use crate::{pairs, Federation};

/// How long a relay gets to answer an operator's question.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Most relays one listing of queues asks (each twice, at once).
const MAX_RELAYS_ASKED: usize = 16;

/// The steward's relays, each asked for its health now, and the outbox.
pub async fn status(fed: &Federation, tenant: &Tenant) -> Result<RelayStatus> {
    let relays = join_all(fed.config.relay.urls.iter().map(|url| async move {
        let client = RelayClient {
            client: fed.client(),
            identity: &tenant.identity,
            base: url,
        };
        let error = match tokio::time::timeout(ASK_TIMEOUT, client.health()).await {
            Ok(Ok(_)) => None,
            Ok(Err(f)) => Some(f.to_string()),
            Err(_) => Some(format!("no answer within {ASK_TIMEOUT:?}")),
        };
        RelayEndpoint {
            url: url.clone(),
            reachable: error.is_none(),
            error,
        }
    }))
    .await;
    Ok(RelayStatus {
        object: "relay_status".into(),
        relays,
        offline_capable: fed.config.relay.offline_capable && !fed.config.relay.urls.is_empty(),
        outbox: outbox::rows(fed, &tenant.id).await?,
    })
}

/// The queues this steward's relays and its peers' relays hold for it and from it, as each
/// relay answers (its first page of each), narrowed to one peer or thread.
pub async fn queues(
    fed: &Federation,
    tenant: &Tenant,
    peer: Option<&str>,
    thread: Option<&str>,
) -> Result<RelayQueues> {
    let peer_did = match peer {
        Some(key) => Some(pairs::find(fed, tenant, key).await?.peer_did),
        None => None,
    };
    // Ours first, then peers', and a bounded number of them: one request asks each twice.
    let mut relays: Vec<String> = fed.config.relay.urls.clone();
    for (_, text) in fed.store.state_list(&tenant.id, PEER_RELAYS).await? {
        for relay in parse::<PeerRelays>(&text).unwrap_or_default().relays {
            if !relays.contains(&relay) {
                relays.push(relay);
            }
        }
    }
    relays.truncate(MAX_RELAYS_ASKED);
    let asked = join_all(relays.iter().map(|url| async move {
        let client = RelayClient {
            client: fed.client(),
            identity: &tenant.identity,
            base: url,
        };
        let mut statuses = Vec::new();
        for role in ["source", "destination"] {
            match tokio::time::timeout(ASK_TIMEOUT, client.list(role)).await {
                Ok(Ok(list)) => statuses.extend(
                    list["data"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|mut status| {
                            status["relay"] = json!(url);
                            status
                        }),
                ),
                Ok(Err(f)) => return Err(f.to_string()),
                Err(_) => return Err(format!("no answer within {ASK_TIMEOUT:?}")),
            }
        }
        Ok(statuses)
    }))
    .await;
    let mut listed = RelayQueues {
        object: "list".into(),
        ..RelayQueues::default()
    };
    for (url, answer) in relays.iter().zip(asked) {
        match answer {
            Ok(statuses) => listed
                .data
                .extend(statuses.into_iter().filter(|status: &Value| {
                    let queue = &status["queue"];
                    peer_did
                        .as_deref()
                        .is_none_or(|did| queue["dest_did"] == did || queue["source_did"] == did)
                        && thread.is_none_or(|t| queue["thread"] == t)
                })),
            Err(error) => listed.unreachable.push(RelayEndpoint {
                url: url.clone(),
                reachable: false,
                error: Some(error),
            }),
        }
    }
    Ok(listed)
}

/// Every outbox row due now, and the outbox woken: the rows it touched.
pub async fn kick(fed: &Federation, tenant: &Tenant) -> Result<usize> {
    touch(fed, tenant, |_| true, None).await
}

/// A peer's queues emptied at every relay and deposited again from what the peer confirmed,
/// under the filter that holds now: the rows it touched.
pub async fn purge(fed: &Federation, tenant: &Tenant, peer: &str) -> Result<usize> {
    let did = pairs::find(fed, tenant, peer).await?.peer_did;
    touch(fed, tenant, |row| row.peer_did == did, Some("purging")).await
}

async fn touch(
    fed: &Federation,
    tenant: &Tenant,
    which: impl Fn(&OutboxRow) -> bool,
    state: Option<&str>,
) -> Result<usize> {
    let mut changes = Vec::new();
    for (key, text) in fed.store.state_list(&tenant.id, OUTBOX).await? {
        let Ok(mut row) = parse::<OutboxRow>(&text) else {
            continue;
        };
        if !which(&row) {
            continue;
        }
        row.next_attempt_at = 0;
        if let Some(state) = state {
            row.state = state.to_string();
        }
        changes.push(StateChange::put(OUTBOX, &key, to_text(&row)));
    }
    let touched = changes.len();
    fed.store.write(&tenant.id, Vec::new(), changes).await?;
    fed.jobs.kick(&tenant.id, outbox::JOB);
    Ok(touched)
}
