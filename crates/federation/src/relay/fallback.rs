//! The puller side of relaying (federation-protocol.md §7.5): a job whose source stays
//! unreachable pulls the same thread from the source's relays, checks every envelope and every
//! record as on a direct pull, and stores them with that relay's cursor. The source cursor never
//! moves on relay data, so a relay that loses or withholds records delays them and nothing more:
//! the job returns to its source as soon as it answers and pulls from where it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncropel_protocol::relay::{Envelope, EnvelopeError, Queue};
use syncropel_protocol::DEFAULT_NAMESPACE;
use syncropel_store::{RecordStore, StateChange};
use syncropel_tenant::Tenant;
use tokio::sync::mpsc;

use super::client::{RelayClient, RelayFailure};
use crate::peer::PeerError;
use crate::puller::{check_relayed, store_relayed, Checked, PullError, PullOutcome, Source};
use crate::state::{parse, pull_cursor, to_text, PEER_RELAYS, RELAY_CURSOR};
use crate::{pairs, Federation};

/// The relays a peer's manifest named, cached with its pair (federation-protocol.md §7.2):
/// asked while the peer is down, even once the manifest has expired (a stale relay can only
/// lack data, never inject it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRelays {
    pub relays: Vec<String>,
    pub offline_capable: bool,
}

impl PeerRelays {
    /// The relays a verified manifest names (at most three, http(s) only).
    pub fn of_manifest(manifest: &Value) -> PeerRelays {
        let federation = &manifest["federation"];
        let relays = federation["relays"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            .take(3)
            .map(str::to_string)
            .collect();
        PeerRelays {
            relays,
            offline_capable: federation["offline_capable"].as_bool().unwrap_or(false),
        }
    }

    /// The state change that caches them for `pair_id`.
    pub fn cache(&self, pair_id: &str) -> StateChange {
        StateChange::put(PEER_RELAYS, pair_id, to_text(self))
    }

    /// Those cached for `pair_id` (none when nothing is, or the store cannot say).
    pub async fn cached(store: &dyn RecordStore, tenant: &str, pair_id: &str) -> PeerRelays {
        match store.state_get(tenant, PEER_RELAYS, pair_id).await {
            Ok(Some(text)) => parse(&text).unwrap_or_default(),
            _ => PeerRelays::default(),
        }
    }
}

/// Where to look for a source's records while it is down (federation-protocol.md §7.2): the
/// relays the operator named for the pair, then those its DID document names (did:web and
/// did:sync resolve without the source), then those of its last verified manifest, then this
/// steward's own (where a source deposits for a peer that names them: the mailbox of §7.6).
pub async fn relays_of(fed: &Federation, tenant: &Tenant, source: &Source) -> PeerRelays {
    let configured = match pairs::find(fed, tenant, &source.id).await {
        Ok(pair) => pair.relays,
        Err(_) => Vec::new(),
    };
    let tenant = tenant.id.as_str();
    let cached = PeerRelays::cached(fed.store.as_ref(), tenant, &source.id).await;
    let documented = match source.peer_did.starts_with("did:key:") {
        true => Vec::new(),
        false => match fed.resolver().resolve(&source.peer_did).await {
            Ok(resolved) => resolved.relays.clone(),
            Err(_) => Vec::new(),
        },
    };
    let mut named = PeerRelays {
        relays: Vec::new(),
        offline_capable: cached.offline_capable,
    };
    let everywhere = configured
        .iter()
        .chain(&documented)
        .chain(&cached.relays)
        .chain(&fed.config.relay.urls);
    for relay in everywhere {
        if !named.relays.contains(relay) {
            named.relays.push(relay.clone());
        }
    }
    named
}

/// Where a job is in one relay's queue.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RelayCursor {
    cursor: String,
}

/// The queue of `thread` from `source` to this steward.
pub fn queue_of(tenant: &Tenant, source: &Source, thread: &str) -> Queue {
    Queue {
        source_did: source.peer_did.clone(),
        dest_did: tenant.identity.did.to_string(),
        pair_id: source.id.clone(),
        generation: source.generation,
        thread: thread.to_string(),
        target_namespace: source
            .target_namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
    }
}

/// Pulls `thread` from `source`'s queue at `relay` (opening the queue there first, from the
/// source cursor held): a page, or, when the destination is far behind, pages in a pipeline
/// (the next one fetched and checked while this one is stored), each stored with the relay
/// cursor past it and then acked.
pub async fn pull(
    fed: &Arc<Federation>,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    relay: &str,
    wait: Duration,
) -> Result<PullOutcome, PullError> {
    let queue = queue_of(tenant, source, thread);
    let queue_id = queue.id();
    let client = RelayClient {
        client: fed.client(),
        identity: &tenant.identity,
        base: relay,
    };
    let at = Place {
        key: format!("{}\n{thread}\n{relay}", source.id),
        queue_id: queue_id.clone(),
        relay: relay.to_string(),
        thread: thread.to_string(),
        signers: signers_of(fed, &source.peer_did).await?,
    };
    let held: Option<RelayCursor> = match fed
        .store
        .state_get(&tenant.id, RELAY_CURSOR, &at.key)
        .await?
    {
        Some(text) => Some(parse(&text)?),
        None => None,
    };
    let cursor = match held {
        Some(held) => held.cursor,
        None => {
            open(fed, tenant, source, thread, &client, &queue).await?;
            String::new()
        }
    };
    let limit = fed.config.relay.page_items;
    let page = match client.changes(&queue_id, &cursor, limit, wait).await {
        // The queue was dropped and opened again, or never opened here: from its start.
        Err(f) if restarts(&f) => {
            open(fed, tenant, source, thread, &client, &queue).await?;
            client.changes(&queue_id, "", limit, wait).await
        }
        page => page,
    }
    .map_err(|f| PullError::Peer(f.error))?;
    let first = at.check(fed, page).await?;
    let (more, next) = (first.has_more, first.next_cursor.clone());
    let mut outcome = at.store(fed, tenant, source, first, &cursor).await?;
    if more {
        let rest = at.pull_through(fed, tenant, source, next).await;
        let rest = rest?;
        outcome.pulled += rest.pulled;
        outcome.duplicates += rest.duplicates;
        outcome.quarantined += rest.quarantined;
        outcome.has_more = rest.has_more;
        outcome.relayed_through = outcome.relayed_through.max(rest.relayed_through);
    }
    Ok(outcome)
}

/// Pages a catch-up pulls before its job looks at its source again.
const PAGES_PER_PULL: usize = 50;
/// Pages fetched and checked ahead of the one being stored.
const PIPELINE_PAGES: usize = 2;

/// Which queue at which relay a job pulls, and who may sign its envelopes.
#[derive(Clone)]
struct Place {
    /// Of the job's relay cursor row.
    key: String,
    queue_id: String,
    relay: String,
    thread: String,
    signers: Vec<String>,
}

/// A page whose envelopes and records were checked; not yet stored.
struct CheckedPage {
    checked: Checked,
    next_cursor: String,
    has_more: bool,
    /// The highest `last_sseq` of its envelopes that passed.
    through: i64,
}

impl Place {
    /// Checks every envelope of a page (a failing one is discarded whole and counted) and every
    /// record of those that pass, as on a direct pull.
    async fn check(&self, fed: &Federation, page: Value) -> Result<CheckedPage, PullError> {
        let (envelopes, next_cursor, has_more) = parse_page(&page)?;
        let mut items = Vec::new();
        let mut vouches = BTreeMap::new();
        let mut through = 0;
        for mut envelope in envelopes {
            match checked(envelope["envelope"].take(), &self.queue_id, &self.signers) {
                Ok(envelope) => {
                    through = through.max(envelope.last_sseq);
                    items.extend(envelope.items);
                    vouches.extend(envelope.actor_keys);
                }
                Err(e) => {
                    let code = match e {
                        EnvelopeError::Signature => "SIGNATURE_INVALID",
                        EnvelopeError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
                        EnvelopeError::Invalid(_) => "VALIDATION_ERROR",
                    };
                    syncropel_telemetry::series::relay_envelope_rejected(code);
                    tracing::warn!(relay = %self.relay, %code, error = %e, "an envelope from a relay was discarded");
                }
            }
        }
        Ok(CheckedPage {
            checked: check_relayed(fed, &self.thread, items, vouches).await?,
            next_cursor,
            has_more,
            through,
        })
    }

    /// Stores a checked page with the relay cursor past it, then acks it (off the pull's path).
    async fn store(
        &self,
        fed: &Federation,
        tenant: &Tenant,
        source: &Source,
        page: CheckedPage,
        held: &str,
    ) -> Result<PullOutcome, PullError> {
        let moved = StateChange::put(
            RELAY_CURSOR,
            &self.key,
            to_text(&RelayCursor {
                cursor: page.next_cursor.clone(),
            }),
        );
        let mut outcome = store_relayed(fed, tenant, source, page.checked, Some(moved)).await?;
        syncropel_telemetry::series::relay_pulled(outcome.pulled, outcome.duplicates);
        if page.next_cursor != held {
            // Best effort: a lost ack costs a delivery again, dropped by id; acks are
            // cumulative, so one arriving after a later one removes nothing more.
            let (peers, identity) = (fed.client().clone(), tenant.identity.clone());
            let (relay, queue_id) = (self.relay.clone(), self.queue_id.clone());
            let through = page.next_cursor;
            tokio::spawn(async move {
                let client = RelayClient {
                    client: &peers,
                    identity: &identity,
                    base: &relay,
                };
                if let Err(f) = client.ack(&queue_id, &through).await {
                    tracing::debug!(relay, error = %f, "acking a relay page failed");
                }
            });
        }
        outcome.has_more = page.has_more;
        outcome.relayed_through = page.through;
        Ok(outcome)
    }

    /// The pages after `cursor`, fetched and checked ahead on a task of their own while each
    /// is stored in order; nothing after a page that fails.
    async fn pull_through(
        &self,
        fed: &Arc<Federation>,
        tenant: &Tenant,
        source: &Source,
        mut cursor: String,
    ) -> Result<PullOutcome, PullError> {
        let (pages, mut checked) = mpsc::channel(PIPELINE_PAGES);
        let producer = {
            let (fed, at, identity) = (fed.clone(), self.clone(), tenant.identity.clone());
            let mut since = cursor.clone();
            tokio::spawn(async move {
                let client = RelayClient {
                    client: fed.client(),
                    identity: &identity,
                    base: &at.relay,
                };
                let limit = fed.config.relay.page_items;
                for _ in 0..PAGES_PER_PULL {
                    let page = match client
                        .changes(&at.queue_id, &since, limit, Duration::ZERO)
                        .await
                    {
                        Ok(page) => at.check(&fed, page).await,
                        Err(f) => Err(PullError::Peer(f.error)),
                    };
                    let more = match &page {
                        Ok(page) => {
                            since = page.next_cursor.clone();
                            page.has_more
                        }
                        Err(_) => false,
                    };
                    if pages.send(page).await.is_err() || !more {
                        return;
                    }
                }
            })
        };
        let mut total = PullOutcome::default();
        while let Some(page) = checked.recv().await {
            let stored = match page {
                Ok(page) => {
                    let next = page.next_cursor.clone();
                    let stored = self.store(fed, tenant, source, page, &cursor).await;
                    cursor = next;
                    stored
                }
                Err(e) => Err(e),
            };
            let outcome = match stored {
                Ok(outcome) => outcome,
                Err(e) => {
                    producer.abort();
                    return Err(e);
                }
            };
            total.pulled += outcome.pulled;
            total.duplicates += outcome.duplicates;
            total.quarantined += outcome.quarantined;
            total.has_more = outcome.has_more;
            total.relayed_through = total.relayed_through.max(outcome.relayed_through);
        }
        Ok(total)
    }
}

/// The `head_sseq` of `source`'s queue at `relay` (what was deposited there), if it answers.
pub async fn head_at(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    relay: &str,
) -> Option<i64> {
    let client = RelayClient {
        client: fed.client(),
        identity: &tenant.identity,
        base: relay,
    };
    let queue_id = queue_of(tenant, source, thread).id();
    let status = client.status(&queue_id).await.ok()?;
    status["head_sseq"].as_i64()
}

fn restarts(failure: &RelayFailure) -> bool {
    failure.status() == Some(404)
        || matches!(
            failure.code(),
            Some("CURSOR_EPOCH_MISMATCH" | "INVALID_CURSOR")
        )
}

/// Opens the queue at the relay, from the source cursor this job holds, and forgets any relay
/// cursor of an earlier life of the queue.
async fn open(
    fed: &Federation,
    tenant: &Tenant,
    source: &Source,
    thread: &str,
    client: &RelayClient<'_>,
    queue: &Queue,
) -> Result<(), PullError> {
    let since = pull_cursor(fed.store.as_ref(), &tenant.id, &source.id, thread)
        .await?
        .map(|c| c.cursor);
    client
        .open(queue, since.as_deref())
        .await
        .map_err(|f| PullError::Peer(f.error))?;
    Ok(())
}

fn parse_page(page: &Value) -> Result<(Vec<Value>, String, bool), PullError> {
    let broken = |why: &str| PullError::Peer(PeerError::Parse(format!("relay page: {why}")));
    if page["object"] != "relay_changes" {
        return Err(broken("not a relay_changes object"));
    }
    let envelopes = page["envelopes"]
        .as_array()
        .cloned()
        .ok_or_else(|| broken("no `envelopes`"))?;
    let next = page["next_cursor"]
        .as_str()
        .ok_or_else(|| broken("no `next_cursor`"))?;
    Ok((
        envelopes,
        next.to_string(),
        page["has_more"].as_bool().unwrap_or(false),
    ))
}

/// The keys that may sign for the source: a did:key is its own; others as resolved.
async fn signers_of(fed: &Federation, did: &str) -> Result<Vec<String>, PullError> {
    if did.starts_with("did:key:") {
        return Ok(vec![did.to_string()]);
    }
    let resolved = fed.resolver().resolve(did).await.map_err(PullError::Peer)?;
    Ok(resolved.keys.clone())
}

/// The envelope as any of `signers` signed it for `queue_id`.
fn checked(envelope: Value, queue_id: &str, signers: &[String]) -> Result<Envelope, EnvelopeError> {
    let Some((last, others)) = signers.split_last() else {
        return Err(EnvelopeError::Signature);
    };
    for signer in others {
        match Envelope::check_value(envelope.clone(), queue_id, signer) {
            Err(EnvelopeError::Signature) => continue,
            checked => return checked,
        }
    }
    Envelope::check_value(envelope, queue_id, last)
}
