//! Invites: issued by an admin, shown once, redeemed by anyone holding the id (a guest key) into
//! a bearer, or, for a membership invite, into a member.

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use syncropel_protocol::{did_key_from_public, public_key_from_did_key, sha256_hex, unix_now};
use syncropel_protocol::{ErrorCode, Refusal};
use syncropel_store::StateChange;

use super::grants::Caveats;
use super::{
    check_label, identity_thread, new_id, preset_scopes, put, Grant, Invite, Member, Membership,
    Terms, BINDING_KIND, CLAIM_DOC, DEFAULT_GRANT_TTL, DEFAULT_INVITE_TTL, GUEST_BEARER_TTL,
    INVITES_AUDIT_THREAD, INVITES_THREAD, INVITE_DOC, INVITE_EVENT_KIND, INVITE_KIND, MAX_INVITES,
    MAX_INVITE_USES, MAX_MEMBERS, MEMBER_DOC,
};
use crate::accounts::{create_service_account, mint, mint_under_grant};
use crate::{validate_scopes, Result};

/// `POST /v1/invites`, checked.
#[derive(Debug)]
pub struct InviteRequest {
    pub max_uses: u32,
    pub scopes: Vec<String>,
    pub ttl_seconds: i64,
    pub membership: Option<Terms>,
}

fn int(body: &Value, name: &str) -> std::result::Result<Option<i64>, Refusal> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Refusal::validation(format!("'{name}' must be an integer"))),
    }
}

fn within(name: &str, value: i64, low: i64, high: i64) -> std::result::Result<i64, Refusal> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(Refusal::validation(format!(
            "'{name}' must be between {low} and {high}"
        )))
    }
}

pub(super) fn strings(
    body: &Value,
    name: &str,
) -> std::result::Result<Option<Vec<String>>, Refusal> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Refusal::validation(format!("'{name}' must be strings")))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(Refusal::validation(format!(
            "'{name}' must be an array of strings"
        ))),
    }
}

/// A member label, if the field is there.
fn optional_label(
    value: Option<&Value>,
    name: &str,
) -> std::result::Result<Option<String>, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(label)) => {
            check_label(label)?;
            Ok(Some(label.clone()))
        }
        Some(_) => Err(Refusal::validation(format!("'{name}' must be a string"))),
    }
}

impl InviteRequest {
    pub fn parse(body: &Value) -> std::result::Result<InviteRequest, Refusal> {
        if !body.is_object() {
            return Err(Refusal::validation("the body must be a JSON object"));
        }
        let max_uses = int(body, "max_uses")?.unwrap_or(1);
        let max_uses = within("max_uses", max_uses, 1, MAX_INVITE_USES.into())? as u32;
        let ttl_seconds = int(body, "ttl_seconds")?.unwrap_or(DEFAULT_INVITE_TTL);
        let ttl_seconds = within("ttl_seconds", ttl_seconds, 60, 30 * 86_400)?;
        let scopes = strings(body, "scopes")?;
        let membership = match body.get("membership") {
            None | Some(Value::Null) => None,
            Some(terms @ Value::Object(_)) => Some(terms),
            Some(_) => return Err(Refusal::validation("'membership' must be an object")),
        };
        let Some(terms) = membership else {
            let scopes = scopes.ok_or_else(|| {
                Refusal::validation("an invite needs 'scopes', or 'membership' for a member")
            })?;
            validate_scopes(&scopes)?;
            return Ok(InviteRequest {
                max_uses,
                scopes,
                ttl_seconds,
                membership: None,
            });
        };
        if scopes.is_some() {
            return Err(Refusal::validation(
                "a membership invite takes its scopes from 'membership.preset'",
            ));
        }
        let preset = match terms.get("preset") {
            None | Some(Value::Null) => "reader".to_string(),
            Some(Value::String(p)) => p.clone(),
            Some(_) => return Err(Refusal::validation("'membership.preset' must be a string")),
        };
        let scopes = preset_scopes(&preset).ok_or_else(|| {
            Refusal::validation(format!(
                "unknown preset '{preset}' (presets: reader, contributor, admin)"
            ))
        })?;
        let grant_ttl = int(terms, "ttl_seconds")?.unwrap_or(DEFAULT_GRANT_TTL);
        let grant_ttl = within(
            "membership.ttl_seconds",
            grant_ttl,
            3_600,
            10 * 365 * 86_400,
        )?;
        let label = optional_label(terms.get("label"), "membership.label")?;
        Ok(InviteRequest {
            max_uses,
            scopes,
            ttl_seconds,
            membership: Some(Terms {
                preset,
                ttl_seconds: grant_ttl,
                caveats: Caveats::parse(terms.get("caveats"))?,
                label,
            }),
        })
    }
}

/// `POST /v1/invites/{id}/redeem`, checked.
#[derive(Debug)]
pub struct Redemption {
    /// The holder's key as a did:key.
    pub holder_did: String,
    pub holder_pubkey: String,
    pub member_label: Option<String>,
}

impl Redemption {
    pub fn parse(body: &Value) -> std::result::Result<Redemption, Refusal> {
        if !body.is_object() {
            return Err(Refusal::validation("the body must be a JSON object"));
        }
        match body.get("holder_type").and_then(Value::as_str) {
            Some("guest") => {}
            Some("federated") => {
                return Err(Refusal::new(
                    ErrorCode::NotImplemented,
                    "this steward redeems invites for guest holders only",
                ))
            }
            _ => {
                return Err(Refusal::validation(
                    "'holder_type' must be \"guest\" (the holder's own key in 'holder_pubkey')",
                ))
            }
        }
        let holder_pubkey = body
            .get("holder_pubkey")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::validation("'holder_pubkey' must be a string"))?;
        let holder_did = holder_did(holder_pubkey)?;
        let member_label = optional_label(body.get("member_label"), "member_label")?;
        match body.get("custody").and_then(Value::as_str) {
            None | Some("custodial") => {}
            Some("device") => {
                return Err(Refusal::new(
                    ErrorCode::NotImplemented,
                    "device custody is not implemented: the steward holds members' keys",
                ))
            }
            Some(other) => {
                return Err(Refusal::validation(format!(
                    "unknown custody '{other}' (custodial)"
                )))
            }
        }
        Ok(Redemption {
            holder_did,
            holder_pubkey: holder_pubkey.to_string(),
            member_label,
        })
    }
}

/// The key of an invite's revocation mark.
pub(super) fn revoked_mark(invite_ref: &str) -> String {
    format!("invite:{invite_ref}#revoked")
}

/// An Ed25519 public key (did:key, 64 hex characters or base64 of 32 bytes) as a did:key.
fn holder_did(key: &str) -> std::result::Result<String, Refusal> {
    let bytes: Option<[u8; 32]> = if key.starts_with("did:key:") {
        public_key_from_did_key(key).ok()
    } else if key.len() == 64 {
        hex::decode(key).ok().and_then(|b| b.try_into().ok())
    } else {
        let text = key.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .ok()
            .and_then(|b| b.try_into().ok())
    };
    bytes.map(|b| did_key_from_public(&b)).ok_or_else(|| {
        Refusal::validation(
            "'holder_pubkey' must be an Ed25519 public key: a did:key, 64 hex characters or \
             base64 of 32 bytes",
        )
    })
}

/// What a redemption made.
#[derive(Debug, Serialize)]
pub struct Redeemed {
    pub object: &'static str,
    pub invite_id: String,
    pub bearer: String,
    pub token_id: String,
    pub sa_id: String,
    pub actor_did: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub membership: Option<Value>,
}

impl Membership<'_> {
    /// Issues an invite: returns its id (shown once) and the invite as stored.
    pub async fn issue(&self, request: InviteRequest) -> Result<(String, Invite, String)> {
        if self.store.state_count(self.tenant, INVITE_DOC).await? >= MAX_INVITES {
            self.prune_invites().await?;
        }
        let id = new_id("inv_", 32);
        let now = unix_now();
        let invite = Invite {
            invite_ref: sha256_hex(id.as_bytes()),
            issuer_did: self.identity.did.to_string(),
            scopes: request.scopes,
            max_uses: request.max_uses,
            uses: 0,
            issued_at: now,
            expires_at: now + request.ttl_seconds,
            revoked_at: None,
            membership: request.membership,
        };
        let issued = self.record(
            INVITES_THREAD,
            INVITE_KIND,
            json!({
                "invite_ref": invite.invite_ref,
                "issuer_did": invite.issuer_did,
                "scopes": invite.scopes,
                "max_uses": invite.max_uses,
                "expires_at": invite.expires_at,
                "membership": invite.membership,
            }),
        );
        let record_id = issued.id.clone();
        let audit = self.invite_event("issued", &invite, json!({}));
        self.write(
            vec![issued, audit],
            vec![put(INVITE_DOC, &invite.invite_ref, &invite)],
        )
        .await?;
        Ok((id, invite, record_id))
    }

    /// Drops the invite documents that can no longer be redeemed (their records stay), so a
    /// tenant at [`MAX_INVITES`] can issue again; refuses when every one is still open.
    async fn prune_invites(&self) -> Result<()> {
        let now = unix_now();
        let mut closed = Vec::new();
        for (key, text) in self.store.state_list(self.tenant, INVITE_DOC).await? {
            let open = serde_json::from_str::<Invite>(&text).is_ok_and(|i| i.closed(now).is_none());
            if !open {
                closed.push(StateChange::delete(INVITE_DOC, &key));
            }
        }
        if closed.is_empty() {
            return Err(Refusal::new(
                ErrorCode::TenantLimitReached,
                format!("this tenant holds {MAX_INVITES} open invites"),
            )
            .with_hint("revoke invites no longer needed")
            .into());
        }
        self.write(Vec::new(), closed).await
    }

    fn invite_event(
        &self,
        event: &str,
        invite: &Invite,
        extra: Value,
    ) -> syncropel_store::NewRecord {
        let mut fields =
            json!({"event_kind": event, "invite_ref": invite.invite_ref, "invite": invite});
        if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        self.record(INVITES_AUDIT_THREAD, INVITE_EVENT_KIND, fields)
    }

    /// The `redeemed` event of use `used` of `invite`, with what the redemption made.
    fn redeemed(
        &self,
        invite: &Invite,
        used: u32,
        redemption: &Redemption,
        made: Value,
    ) -> syncropel_store::NewRecord {
        let mut fields = json!({
            "use": used,
            "holder_type": "guest",
            "holder_did": redemption.holder_did,
            "holder_pubkey": redemption.holder_pubkey,
        });
        if let (Some(fields), Value::Object(made)) = (fields.as_object_mut(), made) {
            fields.extend(made);
        }
        self.invite_event("redeemed", invite, fields)
    }

    /// The invite an id names, revoked if its revocation mark says so.
    pub async fn invite(&self, id: &str) -> Result<Invite> {
        let invite_ref = sha256_hex(id.as_bytes());
        let mut invite: Invite = self
            .doc(INVITE_DOC, &invite_ref)
            .await?
            .ok_or_else(|| Refusal::new(ErrorCode::InviteNotFound, "no such invite"))?;
        if invite.revoked_at.is_none() {
            invite.revoked_at = self.revoked_at(&invite_ref).await?;
        }
        Ok(invite)
    }

    /// When the invite was revoked, from its revocation mark: a document of its own that a
    /// redemption in flight never writes, so a revocation cannot be undone by one.
    async fn revoked_at(&self, invite_ref: &str) -> Result<Option<i64>> {
        let key = revoked_mark(invite_ref);
        let mark = self.store.state_get(self.tenant, CLAIM_DOC, &key).await?;
        Ok(mark.and_then(|at| at.parse().ok()))
    }

    /// What anyone holding the id may see before redeeming it.
    pub async fn preview(&self, id: &str) -> Result<Value> {
        let invite = self.invite(id).await?;
        let status = match invite.closed(unix_now()) {
            None => "open",
            Some(refusal) => match refusal.code {
                ErrorCode::InviteRevoked => "revoked",
                ErrorCode::InviteExpired => "expired",
                _ => "exhausted",
            },
        };
        Ok(json!({
            "object": "invite",
            "invite_id": id,
            "issuer_did": invite.issuer_did,
            "expires_at": invite.expires_at,
            "uses_remaining": invite.max_uses.saturating_sub(invite.uses),
            "scopes": invite.scopes,
            "membership": invite.membership.as_ref().map(|t| json!({"preset": t.preset, "label": t.label})),
            "status": status,
        }))
    }

    /// Revokes an invite; revoking one already revoked changes nothing.
    pub async fn revoke_invite(&self, id: &str) -> Result<Invite> {
        let mut invite = self.invite(id).await?;
        if invite.revoked_at.is_some() {
            return Ok(invite);
        }
        let at = unix_now();
        invite.revoked_at = Some(at);
        let audit = self.invite_event("revoked", &invite, json!({}));
        let mark = StateChange::put(CLAIM_DOC, &revoked_mark(&invite.invite_ref), at.to_string());
        self.write(
            vec![audit],
            vec![put(INVITE_DOC, &invite.invite_ref, &invite), mark],
        )
        .await?;
        Ok(invite)
    }

    /// Redeems an invite: a bearer for its scopes, or, for a membership invite, a member.
    pub async fn redeem(&self, id: &str, redemption: Redemption) -> Result<Redeemed> {
        let mut invite = self.invite(id).await?;
        if let Some(refusal) = invite.closed(unix_now()) {
            return Err(refusal.into());
        }
        let label = match (&invite.membership, &redemption.member_label) {
            (Some(_), None) => {
                return Err(Refusal::validation(
                    "a membership invite needs 'member_label' (^[a-z0-9][a-z0-9-]*$)",
                )
                .into())
            }
            (None, Some(_)) => {
                return Err(Refusal::validation(
                    "'member_label' is for membership invites; this one is not",
                )
                .into())
            }
            (
                Some(Terms {
                    label: Some(pinned),
                    ..
                }),
                Some(label),
            ) if pinned != label => {
                return Err(Refusal::validation(format!(
                    "this invite is pinned to the label '{pinned}'"
                ))
                .into())
            }
            (_, label) => label.clone(),
        };
        let existing = match &label {
            Some(label) => self.member(label).await?,
            None => None,
        };
        let pinned = invite.membership.as_ref().and_then(|t| t.label.as_ref());
        if existing.is_some() && pinned.is_none() {
            return Err(Refusal::new(
                ErrorCode::MemberLabelTaken,
                format!("the label '{}' is taken", label.unwrap_or_default()),
            )
            .with_hint("an admin renews a member with an invite pinned to its label")
            .into());
        }
        if existing.is_none()
            && label.is_some()
            && self.store.state_count(self.tenant, MEMBER_DOC).await? >= super::MAX_MEMBERS
        {
            return Err(Refusal::new(
                ErrorCode::TenantLimitReached,
                format!("this tenant holds {MAX_MEMBERS} members"),
            )
            .into());
        }
        let used = self.claim_use(&invite).await?;
        // Revoked while this redemption got its use: refused.
        if let Some(at) = self.revoked_at(&invite.invite_ref).await? {
            invite.revoked_at = Some(at);
            return Err(Refusal::new(ErrorCode::InviteRevoked, "this invite was revoked").into());
        }
        invite.uses = invite.uses.max(used + 1);
        let redeemed = match (label, invite.membership.clone()) {
            (Some(label), Some(terms)) => {
                self.join(id, &invite, used, &redemption, &label, &terms, existing)
                    .await
            }
            _ => self.guest(id, &invite, used, &redemption).await,
        };
        // A redemption that failed gives its use back.
        if redeemed.is_err() {
            self.release(&format!("invite:{}#{used}", invite.invite_ref))
                .await;
        }
        redeemed
    }

    /// Takes the first free use of `invite`; `410 INVITE_EXHAUSTED` when none is left.
    async fn claim_use(&self, invite: &Invite) -> Result<u32> {
        for n in invite.uses..invite.max_uses {
            if self
                .claim(&format!("invite:{}#{n}", invite.invite_ref))
                .await?
            {
                return Ok(n);
            }
        }
        Err(Refusal::new(
            ErrorCode::InviteExhausted,
            "every use of this invite is taken",
        )
        .into())
    }

    /// A plain invite: an account with the invite's scopes, writing as the holder's key.
    async fn guest(
        &self,
        id: &str,
        invite: &Invite,
        used: u32,
        redemption: &Redemption,
    ) -> Result<Redeemed> {
        let name = format!("guest:{}", &invite.invite_ref[..12]);
        let sa = create_service_account(
            self.store,
            self.tenant,
            self.identity,
            &name,
            invite.scopes.clone(),
            vec![redemption.holder_did.clone()],
        )
        .await?;
        let token = mint(
            self.store,
            self.tenant,
            self.identity,
            self.env,
            &sa.id,
            Some(GUEST_BEARER_TTL),
        )
        .await?;
        let audit = self.redeemed(
            invite,
            used,
            redemption,
            json!({"bearer_token_id": token.token_id, "bearer_sa_id": sa.id}),
        );
        self.write(
            vec![audit],
            vec![put(INVITE_DOC, &invite.invite_ref, invite)],
        )
        .await?;
        Ok(Redeemed {
            object: "invite_redemption",
            invite_id: id.to_string(),
            bearer: token.token,
            token_id: token.token_id,
            sa_id: sa.id,
            actor_did: redemption.holder_did.clone(),
            scopes: invite.scopes.clone(),
            expires_at: token.expires_at,
            membership: None,
        })
    }

    /// A membership invite: a new member under `label`, or, pinned to an existing custodial
    /// member's label, that member renewed (same DIDs, a fresh grant, the old one closed).
    #[allow(clippy::too_many_arguments)]
    async fn join(
        &self,
        id: &str,
        invite: &Invite,
        used: u32,
        redemption: &Redemption,
        label: &str,
        terms: &Terms,
        existing: Option<Member>,
    ) -> Result<Redeemed> {
        let generation = existing.as_ref().map_or(0, |m| m.generation + 1);
        let label_claim = format!("label:{label}#{generation}");
        if !self.claim(&label_claim).await? {
            return Err(Refusal::new(
                ErrorCode::MemberLabelTaken,
                format!("the label '{label}' was just taken"),
            )
            .into());
        }
        let joined = self
            .bind(
                id, invite, used, redemption, label, terms, existing, generation,
            )
            .await;
        if joined.is_err() {
            self.release(&label_claim).await;
        }
        joined
    }

    /// [`Membership::join`] once the label is claimed.
    #[allow(clippy::too_many_arguments)]
    async fn bind(
        &self,
        id: &str,
        invite: &Invite,
        used: u32,
        redemption: &Redemption,
        label: &str,
        terms: &Terms,
        existing: Option<Member>,
        generation: u32,
    ) -> Result<Redeemed> {
        let scopes = preset_scopes(&terms.preset).unwrap_or_default();
        let member_did = format!("did:sync:user:{label}");
        let custodian = self.custodian(existing.as_ref());
        let master_did = self.custodial_key(label, &custodian).did_key();
        let now = unix_now();
        let sa = create_service_account(
            self.store,
            self.tenant,
            self.identity,
            &format!("member:{label}"),
            scopes.clone(),
            vec![member_did.clone()],
        )
        .await?;
        let (grant_record, grant) = self.grant_record(Grant {
            grant_id: String::new(),
            parent: None,
            member: label.to_string(),
            aud: member_did.clone(),
            scopes: scopes.clone(),
            caveats: terms.caveats.clone(),
            depth: 0,
            slot: 0,
            sa_id: Some(sa.id.clone()),
            issued_at: now,
            expires_at: now + terms.ttl_seconds,
            revoked_at: None,
            reason: None,
        });
        let member = Member {
            label: label.to_string(),
            member_did: member_did.clone(),
            master_did: master_did.clone(),
            grant_id: grant.grant_id.clone(),
            sa_id: Some(sa.id.clone()),
            custody: "custodial".into(),
            custodian: Some(custodian),
            preset: Some(terms.preset.clone()),
            scopes: scopes.clone(),
            caveats: terms.caveats.clone(),
            joined_at: existing.as_ref().map_or(now, |m| m.joined_at),
            expires_at: grant.expires_at,
            revoked_at: None,
            generation,
        };
        let mut records = vec![grant_record];
        let mut state = vec![put(super::GRANT_DOC, &grant.grant_id, &grant)];
        if let Some(old) = existing.as_ref() {
            if let Some(old_grant) = self.grant(&old.grant_id).await? {
                if old_grant.revoked_at.is_none() {
                    let (revoke, closed) =
                        self.revoke_record(old_grant, "membership-renewed", None, None);
                    state.push(put(super::GRANT_DOC, &closed.grant_id, &closed));
                    records.push(revoke);
                }
            }
        }
        records.push(self.record(
            &identity_thread(label),
            BINDING_KIND,
            json!({ "member": member }),
        ));
        records.push(self.acceptance(&member));
        records.push(self.redeemed(
            invite,
            used,
            redemption,
            json!({
                "member_label": label,
                "bearer_sa_id": sa.id,
                "grant_id": grant.grant_id,
                "renewal": existing.is_some(),
            }),
        ));
        state.push(put(MEMBER_DOC, label, &member));
        state.push(put(INVITE_DOC, &invite.invite_ref, invite));
        self.write(records, state).await?;
        let token = mint_under_grant(
            self.store,
            self.tenant,
            self.identity,
            self.env,
            &sa.id,
            Some(terms.ttl_seconds),
            &grant.grant_id,
        )
        .await?;
        Ok(Redeemed {
            object: "invite_redemption",
            invite_id: id.to_string(),
            bearer: token.token,
            token_id: token.token_id,
            sa_id: sa.id,
            actor_did: member_did.clone(),
            scopes,
            expires_at: token.expires_at,
            membership: Some(json!({
                "label": label,
                "member_did": member_did,
                "master_did": master_did,
                "grant_id": grant.grant_id,
                "renewed": existing.is_some(),
            })),
        })
    }
}
