//! Consent between namespaces (federation-protocol.md §6): grants, public grants, L0
//! acceptances and revocations are records on `th_consent` (each with an audit record on
//! `th_audit_consent`, same transaction); the entries in force are a fold over them, read afresh
//! for every page that needs them, so a revocation holds from the next pull on every replica.
//! A source that requires two-sided L0 consent checks the acceptances a puller shows here, and
//! stores them for what it serves the puller unasked (pushes, relay deposits).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Map, Value};
use syncropel_protocol::consent::{
    acceptance_body, decide, fold, grant_body, revoke_body, Acceptance, Consent, ConsentOp,
    Delivery, Grant, HashLevel, ANY_NAMESPACE, CONSENT_AUDIT_KIND, CONSENT_AUDIT_THREAD,
    CONSENT_THREAD, PUBLIC_GRANT_TTL_SECS, PUBLIC_LEVELS,
};
use syncropel_protocol::sync::{sync_item, PeerItem};
use syncropel_protocol::{unix_now, validate_namespace_id, validate_thread, ErrorCode, Refusal};
use syncropel_store::{ListFilter, StateChange};
use syncropel_tenant::Tenant;

use crate::error::Result;
use crate::Federation;

/// The header a puller shows its L0 acceptances in (federation-protocol.md §6.4): base64url of
/// each acceptance's signed sync item, comma-separated or repeated.
pub const ACCEPT_HEADER: &str = "x-syncropel-consent-accept";
/// Most acceptances one request may show.
pub const MAX_ACCEPTANCES: usize = 8;
/// Largest acceptance shown, in base64url characters (a consent record is well under 2 KiB).
pub const MAX_ACCEPTANCE_CHARS: usize = 8 * 1024;
/// How long a verified acceptance is taken on trust before its signature is checked again (the
/// puller's key may be withdrawn); never past the acceptance's own expiry.
const ACCEPTANCE_RECHECK_SECS: i64 = 3600;
/// How long an acceptance shown that did not verify is refused without being checked again.
const ACCEPTANCE_REFUSED_SECS: i64 = 60;
/// Most refused acceptances remembered per puller; past it, its oldest is forgotten.
const MAX_REFUSED: usize = 64;
/// How long checking the acceptances of one request may take (documents fetched included): what
/// is not verified by then is taken as not shown.
const ACCEPTANCE_CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
/// The state kind verified acceptances are stored under, keyed `<puller DID>|<record id>`.
const ACCEPTANCE_STATE: &str = "l0_acceptance";
/// Most stored acceptances of one puller read back.
const MAX_STORED_PER_PULLER: u32 = 256;
/// Most pullers (per tenant) whose acceptances one replica remembers; past it, pullers with
/// nothing live are forgotten, and new ones are verified on every request until room frees.
const ACCEPTANCE_CACHE_PULLERS: usize = 4096;

/// What L0 a page may deliver whole (federation-protocol.md §6.4).
#[derive(Clone, Debug)]
pub enum L0Consent {
    /// The source does not require acceptance: a grant with L0 delivers full records.
    Open,
    /// Only for the namespace pairs of these acceptances, verified for this puller.
    Accepted {
        acceptances: Vec<Acceptance>,
        /// Unix seconds when the first of them expires or is due to be checked again: a
        /// decision held longer (a continuous feed) must be made afresh by then.
        until: Option<i64>,
    },
}

impl L0Consent {
    /// For a request that shows no acceptance: none when the source requires one.
    pub fn unshown(fed: &Federation) -> L0Consent {
        match fed.config.l0_requires_acceptance {
            false => L0Consent::Open,
            true => L0Consent::accepted(Vec::new()),
        }
    }

    fn accepted(verified: Vec<(Acceptance, i64)>) -> L0Consent {
        L0Consent::Accepted {
            until: verified.iter().map(|(_, until)| *until).min(),
            acceptances: verified.into_iter().map(|(a, _)| a).collect(),
        }
    }

    /// For what this steward serves a puller without a request of its (relay deposits,
    /// pushes): the acceptances its last pulls showed, as stored for the tenant (so on every
    /// replica and after a restart), each still verified here.
    pub async fn remembered(
        fed: &Federation,
        tenant: &Tenant,
        puller_did: &str,
    ) -> Result<L0Consent> {
        if !fed.config.l0_requires_acceptance {
            return Ok(L0Consent::Open);
        }
        let now = unix_now();
        let mut check = Check::new(fed, tenant, puller_did, now);
        let mut accepted = Vec::new();
        for (_, value) in stored_acceptances(fed, tenant, puller_did).await? {
            let Some(item) = stored_item(&value) else {
                continue;
            };
            if let Checked::Verified(acceptance, until) = check.one(&item).await {
                accepted.push((acceptance, until));
            }
        }
        Ok(L0Consent::accepted(accepted))
    }

    /// Unix seconds by which this decision must be made again (see [`L0Consent::Accepted`]).
    pub fn until(&self) -> Option<i64> {
        match self {
            L0Consent::Open => None,
            L0Consent::Accepted { until, .. } => *until,
        }
    }

    fn admits(&self, source_did: &str, record_ns: &str, target_ns: &str, now: i64) -> bool {
        match self {
            L0Consent::Open => true,
            L0Consent::Accepted { acceptances, .. } => acceptances
                .iter()
                .any(|a| a.admits(source_did, record_ns, target_ns, now)),
        }
    }
}

struct Verified {
    /// The id of the signed record that states it.
    item_id: String,
    acceptance: Acceptance,
    /// Unix seconds.
    until: i64,
}

/// What one replica remembers of one puller's acceptances.
#[derive(Default)]
struct Shown {
    /// Oldest first; at most [`MAX_ACCEPTANCES`].
    verified: VecDeque<Verified>,
    /// Ids of records shown that did not verify, with when to check them again; oldest first,
    /// at most [`MAX_REFUSED`].
    refused: VecDeque<(String, i64)>,
}

impl Shown {
    fn live(&self, now: i64) -> bool {
        self.verified.iter().any(|v| v.until > now) || self.refused.iter().any(|r| r.1 > now)
    }
}

/// What a replica remembers of one record shown.
enum Remembered {
    Verified(Acceptance, i64),
    Refused,
}

/// Acceptances verified on this replica, by (tenant, puller) and the id of the record shown:
/// however a puller spells what it shows, it holds at most [`MAX_ACCEPTANCES`] entries, and
/// evicts only its own.
#[derive(Default)]
pub(crate) struct AcceptanceCache(Mutex<HashMap<(String, String), Shown>>);

impl AcceptanceCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Shown>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, tenant: &str, puller: &str, item_id: &str, now: i64) -> Option<Remembered> {
        let cache = self.lock();
        let shown = cache.get(&(tenant.to_string(), puller.to_string()))?;
        if let Some(v) = shown
            .verified
            .iter()
            .find(|v| v.item_id == item_id && v.until > now)
        {
            return Some(Remembered::Verified(v.acceptance.clone(), v.until));
        }
        shown
            .refused
            .iter()
            .any(|(id, until)| id == item_id && *until > now)
            .then_some(Remembered::Refused)
    }

    /// Changes what is remembered of `puller`, unless the cache is full of other live pullers.
    fn update(&self, tenant: &str, puller: &str, now: i64, change: impl FnOnce(&mut Shown)) {
        let mut cache = self.lock();
        let key = (tenant.to_string(), puller.to_string());
        if !cache.contains_key(&key) && cache.len() >= ACCEPTANCE_CACHE_PULLERS {
            cache.retain(|_, shown| shown.live(now));
            if cache.len() >= ACCEPTANCE_CACHE_PULLERS {
                return;
            }
        }
        change(cache.entry(key).or_default());
    }

    fn put(&self, tenant: &str, puller: &str, verified: Verified, now: i64) {
        self.update(tenant, puller, now, |shown| {
            shown
                .verified
                .retain(|v| v.item_id != verified.item_id && v.until > now);
            shown.verified.push_back(verified);
            while shown.verified.len() > MAX_ACCEPTANCES {
                shown.verified.pop_front();
            }
        });
    }

    fn refuse(&self, tenant: &str, puller: &str, item_id: &str, now: i64) {
        self.update(tenant, puller, now, |shown| {
            shown
                .refused
                .retain(|(id, until)| id != item_id && *until > now);
            shown
                .refused
                .push_back((item_id.to_string(), now + ACCEPTANCE_REFUSED_SECS));
            while shown.refused.len() > MAX_REFUSED {
                shown.refused.pop_front();
            }
        });
    }
}

/// The acceptances `puller_did` shows in [`ACCEPT_HEADER`] (`shown`, one value each) on a pull
/// into `target`, checked: each must be a signed record of the puller on `th_consent`, an
/// `accept` naming this steward, in force. Shown values that are not base64url of a sync item
/// are refused (`VALIDATION_ERROR`); well-formed ones that do not verify or name another steward
/// are left out, so the pull gets stubs. What holds is stored for the tenant, and what the
/// puller no longer shows for `target` removed (see [`L0Consent::remembered`]). Without the
/// source's `l0_requires_acceptance` nothing is looked at.
pub async fn l0_consent(
    fed: &Federation,
    tenant: &Tenant,
    puller_did: &str,
    target: &str,
    shown: &[String],
) -> Result<L0Consent> {
    if !fed.config.l0_requires_acceptance {
        return Ok(L0Consent::Open);
    }
    if shown.len() > MAX_ACCEPTANCES {
        return Err(Refusal::validation(format!(
            "at most {MAX_ACCEPTANCES} acceptances in {ACCEPT_HEADER}"
        ))
        .into());
    }
    let items = shown
        .iter()
        .map(|value| decode_acceptance(value))
        .collect::<Result<Vec<_>>>()?;
    let mut check = Check::new(fed, tenant, puller_did, unix_now());
    let mut accepted = Vec::new();
    let mut kept = Vec::new();
    for (item, raw) in &items {
        match check.one(item).await {
            Checked::Verified(acceptance, until) => {
                kept.push((item.id.as_str(), Some((raw, acceptance.expires_at))));
                accepted.push((acceptance, until));
            }
            // Shown, just not verified in time: neither taken nor dropped.
            Checked::Undecided => kept.push((item.id.as_str(), None)),
            Checked::Refused => {}
        }
    }
    if !puller_did.is_empty() {
        store_shown(fed, tenant, puller_did, target, &kept).await;
    }
    Ok(L0Consent::accepted(accepted))
}

/// The outcome of checking one acceptance shown.
enum Checked {
    /// Verified (now or lately), until then.
    Verified(Acceptance, i64),
    Refused,
    /// The check ran out of time.
    Undecided,
}

/// The checks of one request's acceptances, sharing a deadline and one fresh document fetch.
struct Check<'a> {
    fed: &'a Federation,
    tenant: &'a Tenant,
    puller_did: &'a str,
    now: i64,
    deadline: tokio::time::Instant,
    /// One fresh fetch of the puller's document per request: acceptances signed by keys it does
    /// not list cannot make us fetch it again and again.
    may_refetch: bool,
}

impl<'a> Check<'a> {
    fn new(fed: &'a Federation, tenant: &'a Tenant, puller_did: &'a str, now: i64) -> Check<'a> {
        Check {
            fed,
            tenant,
            puller_did,
            now,
            deadline: tokio::time::Instant::now() + ACCEPTANCE_CHECK_DEADLINE,
            may_refetch: true,
        }
    }

    /// `item` checked, from what this replica remembers when it can; the verdict is remembered.
    async fn one(&mut self, item: &PeerItem) -> Checked {
        let (fed, tenant, puller_did, now) = (self.fed, self.tenant, self.puller_did, self.now);
        match fed.acceptances.get(&tenant.id, puller_did, &item.id, now) {
            Some(Remembered::Verified(acceptance, until)) => {
                return Checked::Verified(acceptance, until)
            }
            Some(Remembered::Refused) => return Checked::Refused,
            None => {}
        }
        let checked = tokio::time::timeout_at(
            self.deadline,
            verify_acceptance(fed, tenant, puller_did, item, now, &mut self.may_refetch),
        )
        .await;
        match checked {
            Ok(Some(acceptance)) => {
                let until = acceptance
                    .expires_at
                    .map_or(now + ACCEPTANCE_RECHECK_SECS, |at| {
                        at.min(now + ACCEPTANCE_RECHECK_SECS)
                    });
                let verified = Verified {
                    item_id: item.id.clone(),
                    acceptance: acceptance.clone(),
                    until,
                };
                fed.acceptances.put(&tenant.id, puller_did, verified, now);
                Checked::Verified(acceptance, until)
            }
            Ok(None) => {
                tracing::debug!(
                    puller = puller_did,
                    record = %item.id,
                    "an L0 acceptance shown does not hold; serving digests"
                );
                fed.acceptances
                    .refuse(&tenant.id, puller_did, &item.id, now);
                Checked::Refused
            }
            // Not remembered as refused: a slow document host is no verdict on the record.
            Err(_) => {
                tracing::debug!(
                    puller = puller_did,
                    record = %item.id,
                    "checking an L0 acceptance took too long; serving digests"
                );
                Checked::Undecided
            }
        }
    }
}

/// The tenant's stored acceptances of `puller_did`, as (key, value).
async fn stored_acceptances(
    fed: &Federation,
    tenant: &Tenant,
    puller_did: &str,
) -> Result<Vec<(String, String)>> {
    let prefix = format!("{puller_did}|");
    Ok(fed
        .store
        .state_page(
            &tenant.id,
            ACCEPTANCE_STATE,
            &prefix,
            "",
            MAX_STORED_PER_PULLER,
        )
        .await?)
}

/// The signed item a stored acceptance keeps.
fn stored_item(value: &str) -> Option<PeerItem> {
    let mut stored: Value = serde_json::from_str(value).ok()?;
    PeerItem::from_value(stored.get_mut("item")?.take()).ok()
}

/// One acceptance shown on a pull that was not refused: its record id, with the item and its
/// expiry when it was verified.
type Kept<'a> = (&'a str, Option<(&'a Value, Option<i64>)>);

/// Stores the acceptances `puller_did` showed on a pull into `target` (`kept`), and removes the stored ones for `target` it no
/// longer shows. A failure is logged: the pull is served all the same.
async fn store_shown(
    fed: &Federation,
    tenant: &Tenant,
    puller_did: &str,
    target: &str,
    kept: &[Kept<'_>],
) {
    let stored = match stored_acceptances(fed, tenant, puller_did).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "reading the stored L0 acceptances failed");
            return;
        }
    };
    let key = |id: &str| format!("{puller_did}|{id}");
    let mut changes = Vec::new();
    for (stored_key, value) in &stored {
        let shown = kept.iter().any(|(id, _)| key(id) == *stored_key);
        let target_of =
            stored_item(value).and_then(|item| match ConsentOp::parse(&item.envelope.body) {
                Ok(ConsentOp::Accept(a)) => Some(a.target_namespace),
                _ => None,
            });
        // One that no longer parses goes too.
        if !shown && target_of.as_deref().is_none_or(|t| t == target) {
            changes.push(StateChange::Delete {
                kind: ACCEPTANCE_STATE.into(),
                key: stored_key.clone(),
            });
        }
    }
    for (id, verified) in kept {
        let Some((item, expires_at)) = verified else {
            continue;
        };
        if !stored.iter().any(|(k, _)| *k == key(id)) {
            let value = json!({"item": item, "expires_at": expires_at});
            changes.push(StateChange::put(
                ACCEPTANCE_STATE,
                &key(id),
                value.to_string(),
            ));
        }
    }
    if changes.is_empty() {
        return;
    }
    if let Err(e) = fed.store.write(&tenant.id, Vec::new(), changes).await {
        tracing::warn!(error = %e, "storing the L0 acceptances shown failed");
    }
}

/// The item a shown value carries, with its JSON.
fn decode_acceptance(value: &str) -> Result<(PeerItem, Value)> {
    let malformed = || {
        Refusal::validation(format!(
            "{ACCEPT_HEADER} carries base64url of a signed record item, at most \
             {MAX_ACCEPTANCE_CHARS} characters each"
        ))
    };
    if value.len() > MAX_ACCEPTANCE_CHARS {
        return Err(malformed().into());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    let item = PeerItem::from_value(raw.clone()).map_err(|_| malformed())?;
    Ok((item, raw))
}

/// The acceptance `item` states, if it is one `puller_did` signed for this steward, in force.
async fn verify_acceptance(
    fed: &Federation,
    tenant: &Tenant,
    puller_did: &str,
    item: &PeerItem,
    now: i64,
    may_refetch: &mut bool,
) -> Option<Acceptance> {
    if item.redaction.is_some() || item.envelope.thread != CONSENT_THREAD {
        return None;
    }
    let Ok(ConsentOp::Accept(acceptance)) = ConsentOp::parse(&item.envelope.body) else {
        return None;
    };
    let for_us = acceptance.peer_did == *tenant.identity.did
        && acceptance.expires_at.is_none_or(|at| at > now);
    let signed = for_us
        && !puller_did.is_empty()
        && fed
            .signed_by_refetching(item, puller_did, may_refetch)
            .await;
    signed.then_some(acceptance)
}

/// The consent entries of one tenant, loaded the first time a page needs them.
pub struct Grants(Option<Vec<Grant>>);

impl Grants {
    pub fn lazy() -> Grants {
        Grants(None)
    }

    pub async fn load(&mut self, fed: &Federation, tenant: &str) -> Result<&Grants> {
        if self.0.is_none() {
            self.0 = Some(current(fed, tenant).await?);
        }
        Ok(self)
    }

    /// The filter for one record; `source_did` is this steward, whom acceptances name.
    pub fn decide(
        &self,
        record_ns: &str,
        target_ns: &str,
        caller: &str,
        thread: &str,
        l0: &L0Consent,
        source_did: &str,
    ) -> Delivery {
        let now = unix_now();
        decide(
            self.0.as_deref().unwrap_or_default(),
            record_ns,
            target_ns,
            caller,
            thread,
            now,
            l0.admits(source_did, record_ns, target_ns, now),
        )
    }
}

/// Every record on `th_consent`, in log order.
async fn records(fed: &Federation, tenant: &str) -> Result<Vec<Value>> {
    Ok(fed.thread_records(tenant, CONSENT_THREAD).await?.0)
}

fn bodies(records: &[Value]) -> Vec<&Map<String, Value>> {
    records
        .iter()
        .filter_map(|record| record.get("body").and_then(Value::as_object))
        .collect()
}

/// The grants and acceptances not revoked (expired ones included; activity is decided at use).
pub async fn entries(fed: &Federation, tenant: &str) -> Result<Vec<Consent>> {
    Ok(fold(bodies(&records(fed, tenant).await?)))
}

/// The grants not revoked (expired ones included; activity is decided at use).
pub async fn current(fed: &Federation, tenant: &str) -> Result<Vec<Grant>> {
    Ok(entries(fed, tenant)
        .await?
        .into_iter()
        .filter_map(|entry| match entry {
            Consent::Grant(grant) => Some(grant),
            Consent::Accept(_) => None,
        })
        .collect())
}

/// What this steward, pulling from `source_did` into `target_namespace`, shows in
/// [`ACCEPT_HEADER`]: each of its acceptances in force for that source and target, as base64url
/// of the signed record that states it (at most [`MAX_ACCEPTANCES`], the latest).
pub async fn shown_acceptances(
    fed: &Federation,
    tenant: &str,
    source_did: &str,
    target_namespace: &str,
) -> Result<Vec<String>> {
    let now = unix_now();
    let mut shown: Vec<String> = own_acceptances(fed, tenant)
        .await?
        .iter()
        .filter(|ours| {
            let a = &ours.acceptance;
            a.peer_did == source_did
                && a.target_namespace == target_namespace
                && a.expires_at.is_none_or(|at| at > now)
        })
        .map(|ours| ours.shown.clone())
        .collect();
    let keep = shown.len().saturating_sub(MAX_ACCEPTANCES);
    shown.drain(..keep);
    Ok(shown)
}

/// One of our acceptances not revoked (expired ones included), with the value that shows it.
struct Ours {
    acceptance: Acceptance,
    shown: String,
}

/// Our acceptances as folded from `th_consent` up to a sequence of it.
type Folded = (i64, Arc<Vec<Ours>>);

/// [`Folded`] per tenant.
#[derive(Default)]
pub(crate) struct OwnAcceptances(Mutex<HashMap<String, Folded>>);

/// Our acceptances, in fold order. Every pull asks, so the fold is kept per tenant and reused
/// while no record has been added to `th_consent` since (one indexed read checks that, on every
/// replica alike).
async fn own_acceptances(fed: &Federation, tenant: &str) -> Result<Arc<Vec<Ours>>> {
    let cached = fed
        .own_acceptances
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(tenant)
        .cloned();
    if let Some((seq, ours)) = cached {
        let newer = ListFilter {
            thread: Some(CONSENT_THREAD.into()),
            after_seq: seq,
            limit: 1,
            ..ListFilter::default()
        };
        if fed.store.list(tenant, &newer).await?.is_empty() {
            return Ok(ours);
        }
    }
    let (records, seq) = fed.thread_records(tenant, CONSENT_THREAD).await?;
    let ours: Vec<Ours> = fold(bodies(&records))
        .into_iter()
        .filter_map(|entry| match entry {
            Consent::Accept(acceptance) => {
                // The record that states it: the last one of its id.
                let record = records.iter().rev().find(|r| {
                    r["body"]["grant_id"] == acceptance.grant_id.as_str()
                        && r["body"]["op"] == "accept"
                })?;
                let item = sync_item(record)?;
                let shown =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(item.to_string());
                Some(Ours { acceptance, shown })
            }
            Consent::Grant(_) => None,
        })
        .collect();
    let ours = Arc::new(ours);
    let mut cache = fed
        .own_acceptances
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // A cache only: past this many tenants it starts afresh.
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(tenant.to_string(), (seq, ours.clone()));
    Ok(ours)
}

/// The audit body of one consent change: `op` is `grant`, `accept` or `revoke`; `detail` the
/// record it mirrors (for a revoke, the reason).
fn audit(grant_id: &str, op: &str, detail: Value) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("kind".into(), json!(CONSENT_AUDIT_KIND));
    body.insert("grant_id".into(), json!(grant_id));
    body.insert("op".into(), json!(op));
    body.insert("detail".into(), detail);
    body.insert("at".into(), json!(unix_now()));
    body
}

/// A grant the operator asks for; what it leaves out takes the defaults of
/// federation-protocol.md §6.1 (every hash level, every thread, no expiry).
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub source_namespace: String,
    pub target_namespace: String,
    pub hash_levels: Vec<HashLevel>,
    pub peer_did: Option<String>,
    /// `None`: every thread.
    pub threads: Option<Vec<String>>,
    pub purpose: Option<String>,
    pub expires_at: Option<i64>,
    /// Who grants it: the operator's service account, or the steward's DID.
    pub granted_by: String,
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
    )
}

/// Records a grant and its audit record; it holds from the next page on.
pub async fn grant(fed: &Federation, tenant: &Tenant, request: GrantRequest) -> Result<Grant> {
    validate_namespace_id(&request.source_namespace)?;
    validate_namespace_id(&request.target_namespace)?;
    let grant = Grant {
        grant_id: new_id("cg"),
        source_namespace: request.source_namespace,
        target_namespace: request.target_namespace,
        hash_levels: request.hash_levels,
        peer_did: request.peer_did,
        threads: request.threads,
        purpose: request.purpose,
        expires_at: request.expires_at,
        granted_by: Some(request.granted_by),
        public: false,
    };
    record_grant(fed, tenant, grant).await
}

/// Writes a grant with its audit record, once what the fold will read back is what we wrote.
async fn record_grant(fed: &Federation, tenant: &Tenant, grant: Grant) -> Result<Grant> {
    let record = grant_body(&grant);
    if ConsentOp::parse(&record)? != ConsentOp::Grant(grant.clone()) {
        return Err(Refusal::validation("the grant does not form a valid consent record").into());
    }
    write_with_audit(fed, tenant, &grant.grant_id, "grant", record).await?;
    Ok(grant)
}

async fn write_with_audit(
    fed: &Federation,
    tenant: &Tenant,
    grant_id: &str,
    op: &str,
    record: Map<String, Value>,
) -> Result<()> {
    let audit = audit(grant_id, op, Value::Object(record.clone()));
    fed.write_own(
        tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
    Ok(())
}

/// A public sharing grant (federation-protocol.md §6.1): `thread`'s records, of any namespace,
/// to any caller pulling into any namespace, at `level` (L0: full records, L2: stubs).
#[derive(Clone, Debug)]
pub struct PublicGrantRequest {
    pub thread: String,
    pub level: HashLevel,
    /// Unix seconds, at most [`PUBLIC_GRANT_TTL_SECS`] ahead; `None`: that long.
    pub expires_at: Option<i64>,
    pub purpose: Option<String>,
    pub granted_by: String,
}

/// Records a public grant and its audit record.
pub async fn grant_public(
    fed: &Federation,
    tenant: &Tenant,
    request: PublicGrantRequest,
) -> Result<Grant> {
    validate_thread(&request.thread)?;
    if !PUBLIC_LEVELS.contains(&request.level) {
        return Err(Refusal::validation("a public grant's level is L0 or L2").into());
    }
    let now = unix_now();
    let latest = now + PUBLIC_GRANT_TTL_SECS;
    let expires_at = request.expires_at.unwrap_or(latest);
    if expires_at <= now || expires_at > latest {
        return Err(
            Refusal::validation("a public grant expires in the future and within 7 days").into(),
        );
    }
    let grant = Grant {
        grant_id: new_id("cg"),
        source_namespace: ANY_NAMESPACE.to_owned(),
        target_namespace: ANY_NAMESPACE.to_owned(),
        hash_levels: vec![request.level],
        peer_did: None,
        threads: Some(vec![request.thread]),
        purpose: request.purpose,
        expires_at: Some(expires_at),
        granted_by: Some(request.granted_by),
        public: true,
    };
    record_grant(fed, tenant, grant).await
}

/// An L0 acceptance this steward records as a puller (federation-protocol.md §6.4): records of
/// `source_namespace` at `peer_did` may land whole in our `target_namespace`.
#[derive(Clone, Debug)]
pub struct AcceptRequest {
    pub peer_did: String,
    pub source_namespace: String,
    pub target_namespace: String,
    pub expires_at: Option<i64>,
    pub accepted_by: String,
}

/// Records an acceptance and its audit record; this steward's pulls from `peer_did` into
/// `target_namespace` show it from the next one on.
pub async fn accept(
    fed: &Federation,
    tenant: &Tenant,
    request: AcceptRequest,
) -> Result<Acceptance> {
    validate_namespace_id(&request.source_namespace)?;
    validate_namespace_id(&request.target_namespace)?;
    if request.expires_at.is_some_and(|at| at <= unix_now()) {
        return Err(Refusal::validation("an acceptance expires in the future").into());
    }
    let acceptance = Acceptance {
        grant_id: new_id("ca"),
        source_namespace: request.source_namespace,
        target_namespace: request.target_namespace,
        peer_did: request.peer_did,
        expires_at: request.expires_at,
        accepted_by: Some(request.accepted_by),
    };
    let record = acceptance_body(&acceptance);
    if ConsentOp::parse(&record)? != ConsentOp::Accept(acceptance.clone()) {
        return Err(
            Refusal::validation("the acceptance does not form a valid consent record").into(),
        );
    }
    write_with_audit(fed, tenant, &acceptance.grant_id, "accept", record).await?;
    kick_pulls_from(fed, tenant, &acceptance.peer_did).await;
    Ok(acceptance)
}

/// Our pulls from `peer_did` drop the request or feed they hold (asked with the acceptances as
/// they were), so the next one shows what is in force now.
async fn kick_pulls_from(fed: &Federation, tenant: &Tenant, peer_did: &str) {
    let pairs = crate::pairs::load(fed, tenant).await.map(|pairs| {
        pairs
            .into_values()
            .filter(|p| p.peer_did == peer_did)
            .map(|p| p.pair_id)
            .collect::<Vec<_>>()
    });
    let sync_pairs = crate::sync_pairs::registry(fed, &tenant.id)
        .await
        .map(|pairs| {
            pairs
                .into_values()
                .filter(|p| p.peer_did == peer_did)
                .map(|p| p.pair_id)
                .collect::<Vec<_>>()
        });
    match (pairs, sync_pairs) {
        (Ok(pairs), Ok(sync_pairs)) => {
            for id in pairs.iter().chain(&sync_pairs) {
                fed.jobs.kick(&tenant.id, id);
            }
        }
        // The change is recorded; the pulls show it from their next request anyway.
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "could not list the pulls from a peer to kick them")
        }
    }
}

/// The levels of a pair-scoped grant that names none (federation-protocol.md §6.4): the peer
/// gets bodies only from a grant that names L0.
pub const PAIR_GRANT_LEVELS: [HashLevel; 1] = [HashLevel::L1];
/// The most namespaces of the peer one pair grant request may name.
pub const MAX_PAIR_GRANT_MAPS: usize = 32;

/// Grants bound to a pair's peer (`POST /v1/federation/pairs/{id}/grants`, `spl federation
/// grant`): records of `namespace` here reach each of `maps` at the peer (its own name when
/// `maps` is empty).
#[derive(Clone, Debug)]
pub struct PairGrantRequest {
    pub namespace: String,
    pub maps: Vec<String>,
    /// `None`: [`PAIR_GRANT_LEVELS`].
    pub hash_levels: Option<Vec<HashLevel>>,
    /// Who grants them: the operator's service account, or the steward's DID.
    pub granted_by: String,
}

/// Records one grant per target namespace, each bound to the peer of the pair `key` (a pair
/// id, peer DID or peer URL). Every namespace is checked before any grant is written; the grants
/// are separate records, so a failed write leaves the earlier ones in force (asking again adds
/// grants alike, which is harmless).
pub async fn grant_to_pair(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    request: PairGrantRequest,
) -> Result<Vec<Grant>> {
    let pair = crate::pairs::find(fed, tenant, key).await?;
    let targets = if request.maps.is_empty() {
        vec![request.namespace.clone()]
    } else {
        request.maps
    };
    if targets.len() > MAX_PAIR_GRANT_MAPS {
        return Err(Refusal::validation(format!(
            "at most {MAX_PAIR_GRANT_MAPS} target namespaces per request"
        ))
        .into());
    }
    validate_namespace_id(&request.namespace)?;
    for target in &targets {
        validate_namespace_id(target)?;
    }
    let hash_levels = request
        .hash_levels
        .unwrap_or_else(|| PAIR_GRANT_LEVELS.to_vec());
    let mut granted = Vec::with_capacity(targets.len());
    for target in targets {
        let one = GrantRequest {
            source_namespace: request.namespace.clone(),
            target_namespace: target,
            hash_levels: hash_levels.clone(),
            peer_did: Some(pair.peer_did.clone()),
            threads: None,
            purpose: Some(format!("pair {}", pair.pair_id)),
            expires_at: None,
            granted_by: request.granted_by.clone(),
        };
        granted.push(grant(fed, tenant, one).await?);
    }
    Ok(granted)
}

/// Revokes a grant in force bound to the peer of the pair `key`; any other grant is `404`, so
/// a pair's controls cannot revoke what was granted to someone else.
pub async fn revoke_pair_grant(
    fed: &Federation,
    tenant: &Tenant,
    key: &str,
    grant_id: &str,
    reason: &str,
) -> Result<()> {
    let pair = crate::pairs::find(fed, tenant, key).await?;
    let theirs = current(fed, &tenant.id)
        .await?
        .iter()
        .any(|g| g.grant_id == grant_id && g.peer_did.as_deref() == Some(pair.peer_did.as_str()));
    if !theirs {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no grant '{grant_id}' bound to {} in force", pair.peer_did),
        )
        .into());
    }
    revoke(fed, tenant, grant_id, reason).await
}

/// Revokes a grant (public or not) or an acceptance in force, effective from the next pull.
pub async fn revoke(fed: &Federation, tenant: &Tenant, grant_id: &str, reason: &str) -> Result<()> {
    let entries = entries(fed, &tenant.id).await?;
    let in_force = entries.iter().find(|entry| match entry {
        Consent::Grant(g) => g.grant_id == grant_id,
        Consent::Accept(a) => a.grant_id == grant_id,
    });
    let Some(in_force) = in_force else {
        return Err(Refusal::new(
            ErrorCode::NotFound,
            format!("no grant '{grant_id}' in force"),
        )
        .into());
    };
    let record = revoke_body(grant_id, reason);
    let audit = audit(grant_id, "revoke", json!({"reason": reason}));
    fed.write_own(
        tenant,
        vec![
            (CONSENT_THREAD, record, Vec::new()),
            (CONSENT_AUDIT_THREAD, audit, Vec::new()),
        ],
        Vec::new(),
    )
    .await?;
    if let Consent::Accept(acceptance) = in_force {
        kick_pulls_from(fed, tenant, &acceptance.peer_did).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acceptance(id: &str) -> Acceptance {
        Acceptance {
            grant_id: id.to_string(),
            source_namespace: "research".into(),
            target_namespace: "default".into(),
            peer_did: "did:key:zSource".into(),
            expires_at: None,
            accepted_by: None,
        }
    }

    fn verified(item_id: &str, until: i64) -> Verified {
        Verified {
            item_id: item_id.to_string(),
            acceptance: acceptance(&format!("ca_{item_id}")),
            until,
        }
    }

    #[test]
    fn padding_variants_of_one_acceptance_decode_to_one_record() {
        let item = json!({"id": "a".repeat(64), "record": {"act": "KNOW",
            "thread": CONSENT_THREAD, "actor": "did:key:zPuller", "clock": 1, "body": {}}});
        let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(item.to_string());
        let ids: Vec<String> = ["", "=", "=="]
            .iter()
            .map(|pad| decode_acceptance(&format!("{plain}{pad}")).unwrap().0.id)
            .collect();
        assert_eq!(ids, vec!["a".repeat(64); 3]);
    }

    #[test]
    fn a_flood_from_one_puller_evicts_only_its_own_acceptances() {
        let cache = AcceptanceCache::default();
        let now = 1_000;
        cache.put("t", "did:key:zHonest", verified("honest", now + 60), now);
        for n in 0..2 * ACCEPTANCE_CACHE_PULLERS {
            cache.put(
                "t",
                "did:key:zFlood",
                verified(&format!("v{n}"), now + 60),
                now,
            );
        }
        let honest = match cache.get("t", "did:key:zHonest", "honest", now) {
            Some(Remembered::Verified(a, _)) => a.grant_id,
            _ => panic!("the honest puller's acceptance was evicted"),
        };
        assert_eq!(honest, "ca_honest");
        let held = |id: &str| cache.get("t", "did:key:zFlood", id, now).is_some();
        let n = 2 * ACCEPTANCE_CACHE_PULLERS;
        // Its newest are kept, its older evicted.
        assert!((n - MAX_ACCEPTANCES..n).all(|k| held(&format!("v{k}"))));
        assert!(!held(&format!("v{}", n - MAX_ACCEPTANCES - 1)));
        // Another tenant's puller of the same DID is another entry.
        assert!(cache.get("u", "did:key:zHonest", "honest", now).is_none());
    }

    #[test]
    fn an_acceptance_that_did_not_verify_is_refused_for_a_while_for_its_puller_only() {
        let cache = AcceptanceCache::default();
        let now = 1_000;
        cache.put("t", "did:key:zOther", verified("x", now + 600), now);
        cache.refuse("t", "did:key:zFlood", "x", now);
        let refused = |at| {
            matches!(
                cache.get("t", "did:key:zFlood", "x", at),
                Some(Remembered::Refused)
            )
        };
        assert!(refused(now + ACCEPTANCE_REFUSED_SECS - 1));
        assert!(!refused(now + ACCEPTANCE_REFUSED_SECS));
        assert!(matches!(
            cache.get("t", "did:key:zOther", "x", now),
            Some(Remembered::Verified(..))
        ));
        for n in 0..10 * MAX_REFUSED {
            cache.refuse("t", "did:key:zFlood", &format!("r{n}"), now);
        }
        let held = cache.lock();
        let of = |did: &str| &held[&("t".to_string(), did.to_string())];
        assert_eq!(of("did:key:zFlood").refused.len(), MAX_REFUSED);
        assert_eq!(of("did:key:zOther").verified.len(), 1);
    }
}
