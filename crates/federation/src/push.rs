//! Records a pair's peer pushes to us (`POST /v1/sync/records {"records": [...]}`,
//! federation-protocol.md §5.3): the same checks as pulled records (ids, signatures against the
//! actor's DID, our own threads refused, namespaces, quarantine), stored where the pull of
//! their thread stores its records (its cursor row's namespace), all or nothing for forged
//! input: one item whose id is not its hash or whose signature is missing or does not hold
//! refuses the whole push (`422` with its code) and nothing from it is stored. Only threads this
//! steward pulls from that peer are taken. Replays de-duplicate by id.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use syncropel_protocol::pair::PairView;
use syncropel_protocol::sync::PeerItem;
use syncropel_protocol::{ErrorCode, Refusal};
use syncropel_tenant::Tenant;

use crate::error::{FederationError, Result};
use crate::pairs;
use crate::puller::{check_relayed, store_relayed, PullError, Source};
use crate::state as fstate;
use crate::threads::refuse_unpullable;
use crate::Federation;

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

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub id: String,
    pub code: String,
}

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
