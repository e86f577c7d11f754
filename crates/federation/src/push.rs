//! Records a pair's peer pushes to us (`POST /v1/sync/records {"records": [...]}`,
//! federation-protocol.md §5.3): the same checks as pulled records (ids, signatures against the
//! actor's DID, our own threads refused, namespaces, quarantine), stored where the pull of
//! their thread stores its records (its cursor row's namespace), all or nothing for forged
//! input: one item whose id is not its hash or whose signature is missing or does not hold
//! refuses the whole push (`422` with its code) and nothing from it is stored. Only threads this
//! steward pulls from that peer are taken. Replays de-duplicate by id.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use syncropel_api::{PushRejected, PushSent};
use syncropel_protocol::pair::PairView;
use syncropel_protocol::sync::PeerItem;
use syncropel_protocol::{ErrorCode, Refusal};
use syncropel_tenant::Tenant;

use crate::consent::L0Consent;
use crate::error::{FederationError, Result};
use crate::feed::{self, ChangesQuery, Puller};
use crate::pairs;
use crate::puller::{check_relayed, store_relayed, PullError, Source};
use crate::state as fstate;
use crate::threads::refuse_unpullable;
use crate::Federation;
use crate::PeerError;

/// Most records one push carries.
pub const MAX_PUSH_RECORDS: usize = 1000;

/// What a push did.
#[derive(Debug, Default, Serialize)]
pub struct Pushed {
    /// Stored for the first time.
    pub accepted: usize,
    /// Held already.
    pub duplicates: usize,
    /// Kept in quarantine (a signer not resolvable yet, a namespace not taken here).
    pub quarantined: usize,
    /// Those held back at the check, with why: the sender need not send them again.
    pub rejected: Vec<Rejected>,
}

/// A pushed record held in quarantine here, with why.
pub type Rejected = PushRejected;

/// Stores what `pair`'s peer pushed.
pub async fn receive(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    records: Vec<Value>,
) -> Result<Pushed> {
    pairs::require_serving(pair)?;
    if records.len() > MAX_PUSH_RECORDS {
        return Err(Refusal::validation(format!(
            "a push carries at most {MAX_PUSH_RECORDS} records"
        ))
        .into());
    }
    // Grouped by thread, each in the order sent.
    let mut threads: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for raw in records {
        let item = PeerItem::from_value(raw.clone())
            .map_err(|e| Refusal::validation(format!("a pushed item is not a sync item: {e}")))?;
        refuse_unpullable(&item.envelope.thread)?;
        threads.entry(item.envelope.thread).or_default().push(raw);
    }
    let mut checked = Vec::with_capacity(threads.len());
    for (thread, items) in threads {
        // Only threads this steward pulls from that peer: a push fills what a pull would.
        let row =
            fstate::pull_cursor(fed.store.as_ref(), &tenant.id, &pair.pair_id, &thread).await?;
        let Some(row) = row else {
            return Err(Refusal::new(
                ErrorCode::ThreadNotAllowed,
                format!("this steward does not pull thread '{thread}' from you"),
            )
            .with_hint("push only the threads the steward pulls through this pair")
            .into());
        };
        let page = check_relayed(fed, &thread, items, BTreeMap::new())
            .await
            .map_err(pushed)?;
        if let Some((id, rejection)) = page.forged() {
            let code = match rejection.code() {
                "ID_MISMATCH" => ErrorCode::IdMismatch,
                "SIGNATURE_REQUIRED" => ErrorCode::SignatureRequired,
                _ => ErrorCode::SignatureInvalid,
            };
            return Err(Refusal::new(
                code,
                format!("record {id} of the push does not verify: nothing of it was stored"),
            )
            .into());
        }
        // Stored where the pull of the thread stores its records.
        checked.push((page, row.target_namespace));
    }
    let source = pairs::source(fed, tenant, pair.pair_id.clone())
        .await
        .map_err(pushed)?;
    let mut answer = Pushed::default();
    for (page, target_namespace) in checked {
        answer.rejected.extend(
            page.held()
                .into_iter()
                .map(|(id, code)| Rejected { id, code }),
        );
        let source = Source {
            target_namespace,
            ..source.clone()
        };
        let stored = store_relayed(fed, tenant, &source, page, None)
            .await
            .map_err(pushed)?;
        answer.accepted += stored.pulled;
        answer.duplicates += stored.duplicates;
        answer.quarantined += stored.quarantined;
    }
    Ok(answer)
}

/// A pull-side failure, as the pusher is answered.
fn pushed(e: PullError) -> FederationError {
    match e {
        PullError::Parked(refusal) => refusal.into(),
        PullError::Local(e) => e,
        PullError::Peer(e) => Refusal::validation(format!("the push does not hold: {e}")).into(),
    }
}

/// Most bytes of items one push request carries: under a receiver's default 1 MiB body limit.
const PUSH_BATCH_BYTES: usize = 768 * 1024;

/// Pushes to `pair`'s peer every record of `thread` its pull into `target` would be served
/// (scope, maps and consent as on the changes feed), in batches of at most 1000 items and
/// [`PUSH_BATCH_BYTES`]. The peer takes it only for a thread it pulls from us.
pub async fn send(
    fed: &Federation,
    tenant: &Tenant,
    pair: &PairView,
    thread: &str,
    target: &str,
) -> std::result::Result<PushSent, PullError> {
    pairs::require_serving(pair).map_err(PullError::Parked)?;
    let puller = Puller::of_pair(pair);
    puller.check_target(target).map_err(PullError::Parked)?;
    let url = pair.peer_url.as_deref().unwrap_or_default();
    let token = pairs::outbound_token(fed, tenant, &pair.pair_id)
        .await?
        .ok_or_else(|| {
            PullError::Parked(
                Refusal::new(
                    ErrorCode::AuthInvalid,
                    format!("pair {} has no outbound credential", pair.pair_id),
                )
                .with_hint("get a new one from the peer: `spl federation refresh <peer>`"),
            )
        })?;
    let endpoint = format!("{}/v1/sync/records", url.trim_end_matches('/'));
    let query = ChangesQuery {
        thread: thread.to_string(),
        target: target.to_string(),
        since: String::new(),
        limit: MAX_PUSH_RECORDS as u32,
        longpoll: false,
        l0: L0Consent::remembered(fed, tenant, &puller.did)
            .await
            .map_err(PullError::Local)?,
    };
    let mut sent = PushSent {
        thread: thread.to_string(),
        ..PushSent::default()
    };
    let mut after = 0;
    loop {
        let served = feed::items_after(fed, tenant, &puller, &query, after)
            .await
            .map_err(PullError::Local)?;
        let Some((_, last)) = served.seqs else {
            break;
        };
        for batch in batches(&served.items) {
            let records = batch
                .iter()
                .map(|text| serde_json::from_str::<Value>(text))
                .collect::<std::result::Result<Vec<Value>, _>>()
                .map_err(|e| FederationError::corrupt(format!("a stored record: {e}")))?;
            let (status, answer) = fed
                .client()
                .push(
                    &endpoint,
                    &json!({ "records": records }),
                    &token,
                    &tenant.identity.did,
                )
                .await
                .map_err(PullError::Peer)?;
            if status != 200 {
                let message = answer["message"].as_str().unwrap_or_default().to_string();
                return Err(PullError::Peer(if status >= 500 {
                    PeerError::Http5xx { status, message }
                } else {
                    PeerError::Http4xx {
                        status,
                        code: answer["code"].as_str().map(str::to_string),
                        message,
                    }
                }));
            }
            let count = |field: &str| answer[field].as_u64().unwrap_or(0);
            sent.pushed += batch.len() as u64;
            sent.requests += 1;
            sent.accepted += count("accepted");
            sent.duplicates += count("duplicates");
            sent.quarantined += count("quarantined");
            if let Some(rejected) = answer["rejected"].as_array() {
                sent.rejected.extend(rejected.iter().map(|r| Rejected {
                    id: r["id"].as_str().unwrap_or_default().to_string(),
                    code: r["code"].as_str().unwrap_or_default().to_string(),
                }));
            }
        }
        after = last;
        if !served.has_more {
            break;
        }
    }
    Ok(sent)
}

/// `items` cut into pushes of at most [`PUSH_BATCH_BYTES`] (one item at least).
fn batches(items: &[String]) -> Vec<&[String]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        if i > start && bytes + item.len() > PUSH_BATCH_BYTES {
            batches.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += item.len() + 1;
    }
    if start < items.len() {
        batches.push(&items[start..]);
    }
    batches
}
