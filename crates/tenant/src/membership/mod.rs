//! Members, invites and grants (protocol.md §10.2, §11.11).
//!
//! A membership invite, redeemed, makes a *principal*: a label (`did:sync:user:<label>`), a
//! custodial key the steward holds for it (its master DID), a grant from the tenant to it, and a
//! service account whose token is parented to that grant. Agent sub-grants hang below a
//! member's grant and only narrow it. A grant-parented token is alive only while every grant on
//! its chain is: revoking a member is one revocation, and its bearers and its agents' bearers
//! fail their next request with `401 GRANT_REVOKED`.
//!
//! Every act is a record, written before the answer: the member's identity thread
//! (`th_identity_<label>`: binding, grant, acceptance, revocation) and `th_audit_invites`. Both
//! are server-written only, and each record carries the document it leaves behind, so the
//! state documents here (`invite`, `member`, `grant`) are a cache that [`replay`] rebuilds from
//! the records alone. Invite ids are shown once, like tokens: records hold their SHA-256.
//!
//! Uniqueness (an invite's uses, a label's generation, a grant's child slots) is decided by
//! claims: a state document written only if absent and read back, which holds across replicas
//! sharing one database.

mod grants;
mod invites;
mod members;

use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use syncropel_protocol::{unix_now, Act, ErrorCode, Keypair, Refusal, IDENTITY_THREAD_PREFIX};
use syncropel_store::{NewRecord, RecordStore, StateChange};

use crate::{seal, sealed_own, server_record, Identity, Result, TenantError};

pub use grants::{check_chain, narrows, Caveats};
pub use invites::{InviteRequest, Redeemed, Redemption};
pub use members::{AgentRequest, Revoked};

pub const INVITES_THREAD: &str = "th_invites";
pub const INVITES_AUDIT_THREAD: &str = "th_audit_invites";
pub const INVITE_KIND: &str = "core.invite.v1";
pub const INVITE_EVENT_KIND: &str = "core.invite.event.v1";
pub const GRANT_KIND: &str = "core.identity.grant.v1";
pub const BINDING_KIND: &str = "core.identity.binding.v1";
pub const ACCEPTANCE_KIND: &str = "core.identity.acceptance.v1";
pub const REVOKE_KIND: &str = "core.identity.revoke.v1";

/// State document kinds.
const INVITE_DOC: &str = "invite";
const MEMBER_DOC: &str = "member";
const GRANT_DOC: &str = "grant";
const CLAIM_DOC: &str = "membership_claim";

/// Members one tenant may hold (the roster is answered whole).
pub const MAX_MEMBERS: u64 = 1_000;
/// Invite documents one tenant may hold; at the bound, those no longer redeemable are dropped.
pub const MAX_INVITES: u64 = 1_000;
/// Uses one invite may allow.
pub const MAX_INVITE_USES: u32 = 1_000;
/// Children one grant may have when its caveats do not say.
pub const DEFAULT_FANOUT: u32 = 100;
/// Grant chains are walked at most this far (protocol.md §10.2).
pub const MAX_CHAIN: usize = 64;
pub const DEFAULT_GRANT_TTL: i64 = 180 * 86_400;
pub const DEFAULT_INVITE_TTL: i64 = 86_400;
/// A plain (non-member) invite's bearer lives this long.
pub const GUEST_BEARER_TTL: i64 = 30 * 86_400;

/// Invite presets (`GET /v1/scope_presets`).
pub const PRESETS: &[(&str, &[&str])] = &[
    ("reader", &["records:read"]),
    ("contributor", &["records:read", "records:write"]),
    ("admin", &["admin"]),
];

pub fn preset_scopes(preset: &str) -> Option<Vec<String>> {
    PRESETS
        .iter()
        .find(|(name, _)| *name == preset)
        .map(|(_, scopes)| scopes.iter().map(|s| s.to_string()).collect())
}

/// A grant: from the tenant to a member (the membership grant), or from a grant to an agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    /// The id of the `core.identity.grant.v1` record that made it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grant_id: String,
    pub parent: Option<String>,
    /// The label of the member whose tree it is in.
    pub member: String,
    pub aud: String,
    pub scopes: Vec<String>,
    pub caveats: Caveats,
    /// Hops below the membership grant (0 for the membership grant itself).
    pub depth: u32,
    /// Which child of its parent it is (its claimed slot).
    pub slot: u32,
    pub sa_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub reason: Option<String>,
}

/// A member: a label bound to a principal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub label: String,
    pub member_did: String,
    pub master_did: String,
    pub grant_id: String,
    pub sa_id: Option<String>,
    pub custody: String,
    /// The tenant signing key (did:key) its custodial key is derived from; none for the
    /// operator, whose master DID is the tenant's own.
    #[serde(default)]
    pub custodian: Option<String>,
    pub preset: Option<String>,
    pub scopes: Vec<String>,
    pub caveats: Caveats,
    pub joined_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Bumped by every renewal: the label's claims are per generation.
    pub generation: u32,
}

impl Member {
    /// The roster row: the document with its status.
    pub fn row(&self) -> Value {
        let status = if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= unix_now() {
            "expired"
        } else {
            "active"
        };
        let mut row = json!(self);
        row["object"] = json!("member");
        row["status"] = json!(status);
        row
    }
}

/// What a membership invite makes its redeemer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Terms {
    pub preset: String,
    pub ttl_seconds: i64,
    pub caveats: Caveats,
    /// Pinned by the issuer; pinning a custodial member's label makes redemption a renewal.
    pub label: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Invite {
    /// SHA-256 of the invite id.
    pub invite_ref: String,
    pub issuer_did: String,
    pub scopes: Vec<String>,
    pub max_uses: u32,
    pub uses: u32,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub membership: Option<Terms>,
}

impl Invite {
    /// Why it cannot be redeemed now, if it cannot.
    fn closed(&self, now: i64) -> Option<Refusal> {
        if self.revoked_at.is_some() {
            Some(Refusal::new(
                ErrorCode::InviteRevoked,
                "this invite was revoked",
            ))
        } else if self.expires_at <= now {
            Some(Refusal::new(
                ErrorCode::InviteExpired,
                "this invite has expired",
            ))
        } else if self.uses >= self.max_uses {
            Some(Refusal::new(
                ErrorCode::InviteExhausted,
                "every use of this invite is taken",
            ))
        } else {
            None
        }
    }
}

/// One tenant's membership, through the identity that signs for it.
pub struct Membership<'a> {
    pub store: &'a dyn RecordStore,
    pub tenant: &'a str,
    pub identity: &'a Identity,
    /// The token environment (`spl_<env>_…`).
    pub env: &'a str,
}

/// Who is asking, for the routes a member may call on itself.
#[derive(Clone, Debug)]
pub struct Asker {
    pub admin: bool,
    pub sa_id: Option<String>,
    pub grant_id: Option<String>,
}

impl Asker {
    fn is(&self, member: &Member) -> bool {
        self.admin
            || (self.grant_id.is_some() && self.grant_id.as_deref() == Some(&member.grant_id))
            || (member.sa_id.is_some() && member.sa_id == self.sa_id)
    }
}

impl Membership<'_> {
    async fn doc<T: for<'de> Deserialize<'de>>(&self, kind: &str, key: &str) -> Result<Option<T>> {
        match self.store.state_get(self.tenant, kind, key).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TenantError::corrupt(format!("{kind} {key}: {e}"))),
        }
    }

    pub async fn member(&self, label: &str) -> Result<Option<Member>> {
        self.doc(MEMBER_DOC, label).await
    }

    async fn existing_member(&self, label: &str) -> Result<Member> {
        self.member(label)
            .await?
            .ok_or_else(|| Refusal::not_found(format!("no member '{label}'")).into())
    }

    pub async fn grant(&self, grant_id: &str) -> Result<Option<Grant>> {
        self.doc(GRANT_DOC, grant_id).await
    }

    /// Takes `key` for this caller if nobody has: a state document written only if absent,
    /// then read back.
    async fn claim(&self, key: &str) -> Result<bool> {
        let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        self.store
            .write(
                self.tenant,
                Vec::new(),
                vec![StateChange::put_if_absent(CLAIM_DOC, key, nonce.clone())],
            )
            .await?;
        Ok(self.store.state_get(self.tenant, CLAIM_DOC, key).await? == Some(nonce))
    }

    /// Gives back a claim taken by an act that then failed (best effort: a claim left behind
    /// only refuses what it stood for, it breaks nothing).
    async fn release(&self, key: &str) {
        let given_back = self
            .store
            .write(
                self.tenant,
                Vec::new(),
                vec![StateChange::delete(CLAIM_DOC, key)],
            )
            .await;
        if let Err(e) = given_back {
            tracing::warn!(error = %e, claim = key, "giving back a membership claim");
        }
    }

    /// A record on the tenant's account.
    fn record(&self, thread: &str, kind: &str, fields: Value) -> NewRecord {
        let mut body = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        body.insert("kind".into(), json!(kind));
        sealed_own(self.identity, Act::Know, thread, body)
    }

    /// The custodial key of `label`, derived from the tenant's signing key `custodian` (a
    /// did:key; the current key if this identity no longer holds that one), so the steward holds
    /// it without storing it. Members keep the custodian they joined under, so a rotation of the
    /// tenant's key changes no member's master DID.
    fn custodial_key(&self, label: &str, custodian: &str) -> Keypair {
        let base = self
            .identity
            .key_for(custodian)
            .unwrap_or(&self.identity.key);
        let mut hasher = Sha256::new();
        hasher.update(b"syncropel member key\0");
        hasher.update(label.as_bytes());
        hasher.update(b"\0");
        hasher.update(base.seed());
        Keypair::from_seed(&hasher.finalize().into())
    }

    /// The custodian a member of `label` is (or stays) under: its own, while this identity holds
    /// that key, else the current one.
    fn custodian(&self, existing: Option<&Member>) -> String {
        existing
            .and_then(|m| m.custodian.clone())
            .filter(|c| self.identity.key_for(c).is_some())
            .unwrap_or_else(|| self.identity.signer.to_string())
    }

    /// The member's acceptance of its grant, signed by its custodial key (or, for the
    /// operator, by the tenant's own).
    fn acceptance(&self, member: &Member) -> NewRecord {
        let mut body = Map::new();
        body.insert("kind".into(), json!(ACCEPTANCE_KIND));
        body.insert("grant_id".into(), json!(member.grant_id));
        body.insert("member_did".into(), json!(member.member_did));
        let thread = identity_thread(&member.label);
        if member.master_did == *self.identity.did {
            return sealed_own(self.identity, Act::Know, &thread, body);
        }
        let custodian = self.custodian(Some(member));
        let key = self.custodial_key(&member.label, &custodian);
        let envelope = server_record(
            Act::Know,
            &thread,
            &member.master_did,
            self.identity.clock.next(),
            body,
        );
        seal(&envelope, &key, &member.master_did)
    }

    /// The grant record for `grant` (its id becomes the grant's id) and the grant as stored.
    fn grant_record(&self, mut grant: Grant) -> (NewRecord, Grant) {
        grant.grant_id = String::new();
        let record = self.record(
            &identity_thread(&grant.member),
            GRANT_KIND,
            json!({ "grant": grant }),
        );
        grant.grant_id = record.id.clone();
        (record, grant)
    }

    /// The revocation record of `grant` and the grant as it is left.
    fn revoke_record(
        &self,
        mut grant: Grant,
        reason: &str,
        note: Option<&str>,
        member: Option<&Member>,
    ) -> (NewRecord, Grant) {
        let now = unix_now();
        grant.revoked_at = Some(now);
        grant.reason = Some(reason.to_string());
        let mut fields = json!({
            "revoked_grant": grant.grant_id,
            "reason": reason,
            "grant": grant,
        });
        if let Some(note) = note {
            fields["note"] = json!(note);
        }
        if let Some(member) = member {
            fields["member"] = json!(member);
        }
        let record = self.record(&identity_thread(&grant.member), REVOKE_KIND, fields);
        (record, grant)
    }

    async fn write(&self, records: Vec<NewRecord>, state: Vec<StateChange>) -> Result<()> {
        for result in self.store.write(self.tenant, records, state).await? {
            result?;
        }
        Ok(())
    }
}

pub fn identity_thread(label: &str) -> String {
    format!("{IDENTITY_THREAD_PREFIX}{label}")
}

fn put<T: Serialize>(kind: &str, key: &str, doc: &T) -> StateChange {
    StateChange::put(kind, key, json!(doc).to_string())
}

/// `^[a-z0-9][a-z0-9-]*$`, at most 63 characters.
pub fn check_label(label: &str) -> std::result::Result<(), Refusal> {
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-');
    if label == "adopt" {
        // `/v1/members/adopt` is a route: a member of that label could not be addressed.
        return Err(Refusal::validation("the member label 'adopt' is reserved"));
    }
    if ok {
        Ok(())
    } else {
        Err(Refusal::validation(format!(
            "member label '{label}' must match ^[a-z0-9][a-z0-9-]*$ and be at most 63 characters"
        )))
    }
}

fn new_id(prefix: &str, len: usize) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), len)
    )
}

/// The state documents a stored membership record leaves behind (import and replay): each
/// record carries its document, so the latest record of a key is its state. `record_id` names
/// a grant record's grant.
pub fn replay(record_id: &str, thread: &str, body: &Value) -> Vec<StateChange> {
    let mut changes = Vec::new();
    let claim = |key: String| StateChange::put(CLAIM_DOC, &key, "replayed");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    if thread == INVITES_AUDIT_THREAD && kind == INVITE_EVENT_KIND {
        if let Ok(invite) = serde_json::from_value::<Invite>(body["invite"].clone()) {
            if let Some(used) = body.get("use").and_then(Value::as_u64) {
                changes.push(claim(format!("invite:{}#{used}", invite.invite_ref)));
            }
            if let (Some("revoked"), Some(at)) = (body["event_kind"].as_str(), invite.revoked_at) {
                let mark = invites::revoked_mark(&invite.invite_ref);
                changes.push(StateChange::put(CLAIM_DOC, &mark, at.to_string()));
            }
            changes.push(put(INVITE_DOC, &invite.invite_ref, &invite));
        }
        return changes;
    }
    if !thread.starts_with(IDENTITY_THREAD_PREFIX) {
        return changes;
    }
    match kind {
        GRANT_KIND => {
            if let Ok(mut grant) = serde_json::from_value::<Grant>(body["grant"].clone()) {
                grant.grant_id = record_id.to_string();
                if let Some(parent) = &grant.parent {
                    changes.push(claim(format!("child:{parent}#{}", grant.slot)));
                }
                changes.push(put(GRANT_DOC, record_id, &grant));
            }
        }
        REVOKE_KIND => {
            if let Ok(grant) = serde_json::from_value::<Grant>(body["grant"].clone()) {
                changes.push(put(GRANT_DOC, &grant.grant_id, &grant));
            }
        }
        BINDING_KIND => {}
        _ => return changes,
    }
    if let Ok(member) = serde_json::from_value::<Member>(body["member"].clone()) {
        changes.push(claim(format!(
            "label:{}#{}",
            member.label, member.generation
        )));
        changes.push(put(MEMBER_DOC, &member.label, &member));
    }
    changes
}

/// Whether a stored record's thread holds membership records [`replay`] reads.
pub fn replays(thread: &str) -> bool {
    thread == INVITES_AUDIT_THREAD || thread.starts_with(IDENTITY_THREAD_PREFIX)
}
