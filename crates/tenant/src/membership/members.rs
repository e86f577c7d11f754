//! The roster: listing members, adopting existing principals, revoking members, and the agent
//! sub-grants a member (or an admin) mints below a member's grant.

use serde::Serialize;
use serde_json::{json, Value};
use syncropel_protocol::{unix_now, ErrorCode, Refusal};

use super::grants::{check_chain, check_narrows, Caveats};
use super::invites::strings;
use super::{
    check_label, identity_thread, put, Asker, Grant, Member, Membership, BINDING_KIND,
    DEFAULT_FANOUT, DEFAULT_GRANT_TTL, GRANT_DOC, INVITES_AUDIT_THREAD, INVITE_EVENT_KIND,
    MAX_MEMBERS, MEMBER_DOC,
};
use crate::accounts::{create_service_account, mint_under_grant, parent_tokens};
use crate::{validate_scopes, MintedToken, Result, TenantError};

/// `POST /v1/members/{label}/grants`, checked.
#[derive(Debug)]
pub struct AgentRequest {
    pub aud: String,
    pub scopes: Option<Vec<String>>,
    pub caveats: Caveats,
    pub ttl_seconds: Option<i64>,
}

impl AgentRequest {
    pub fn parse(body: &Value) -> std::result::Result<AgentRequest, Refusal> {
        let aud = body
            .get("aud")
            .and_then(Value::as_str)
            .filter(|aud| aud.starts_with("did:") && aud.len() <= 256)
            .ok_or_else(|| {
                Refusal::validation("'aud' must be the agent's DID (at most 256 characters)")
            })?;
        let ttl_seconds =
            match body.get("ttl_seconds") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|t| *t >= 60).ok_or_else(|| {
                    Refusal::validation("'ttl_seconds' must be an integer >= 60")
                })?),
            };
        Ok(AgentRequest {
            aud: aud.to_string(),
            scopes: strings(body, "scopes")?,
            caveats: Caveats::parse(body.get("caveats"))?,
            ttl_seconds,
        })
    }
}

/// What a revocation did.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub object: &'static str,
    pub grant_id: String,
    pub revoked: bool,
    /// The revocation record (`None` when the grant was revoked before).
    pub revocation_record_id: Option<String>,
    pub already_revoked: bool,
    /// Only this steward's credentials die (protocol.md §11.11).
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_did: Option<String>,
}

fn not_theirs(label: &str) -> TenantError {
    Refusal::new(
        ErrorCode::PermissionDenied,
        format!("only an admin or the member '{label}' itself may do this"),
    )
    .into()
}

impl Membership<'_> {
    /// The roster: every member for an admin, a caller's own row otherwise.
    pub async fn list(&self, asker: &Asker) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        for (key, text) in self.store.state_list(self.tenant, MEMBER_DOC).await? {
            let member: Member = serde_json::from_str(&text)
                .map_err(|e| TenantError::corrupt(format!("member {key}: {e}")))?;
            if asker.is(&member) {
                rows.push(member.row());
            }
        }
        Ok(rows)
    }

    /// The grant of the member whose account `sa_id` is, if it is one's: a token minted for it
    /// later is parented to that grant too, so revoking the member ends it as well.
    pub async fn grant_of_account(&self, sa_id: &str) -> Result<Option<String>> {
        for (_, text) in self.store.state_list(self.tenant, MEMBER_DOC).await? {
            if let Ok(member) = serde_json::from_str::<Member>(&text) {
                if member.sa_id.as_deref() == Some(sa_id) {
                    return Ok(Some(member.grant_id));
                }
            }
        }
        Ok(None)
    }

    /// Makes an existing principal a member: the operator (no `sa_id`: the tenant's own key, an
    /// admin grant) or an existing account, whose live tokens are put under the new grant so
    /// its bearer keeps working. Adopting the same binding again answers it unchanged.
    pub async fn adopt(
        &self,
        label: &str,
        sa_id: Option<&str>,
        ttl_seconds: Option<i64>,
    ) -> Result<(Member, bool)> {
        check_label(label)?;
        if let Some(member) = self.member(label).await? {
            if member.sa_id.as_deref() == sa_id {
                return Ok((member, false));
            }
            return Err(Refusal::new(
                ErrorCode::MemberLabelTaken,
                format!("the label '{label}' is bound to another principal"),
            )
            .into());
        }
        let ttl = ttl_seconds.unwrap_or(DEFAULT_GRANT_TTL);
        if !(3_600..=10 * 365 * 86_400).contains(&ttl) {
            return Err(
                Refusal::validation("'ttl_seconds' must be between 3600 and 315360000").into(),
            );
        }
        let members = self.store.state_list(self.tenant, MEMBER_DOC).await?;
        if members.len() as u64 >= MAX_MEMBERS {
            return Err(Refusal::new(
                ErrorCode::TenantLimitReached,
                format!("this tenant holds {MAX_MEMBERS} members"),
            )
            .into());
        }
        let (scopes, master_did, custodian) = match sa_id {
            None => (
                vec!["admin".to_string()],
                self.identity.did.to_string(),
                None,
            ),
            Some(sa_id) => {
                let sa = self
                    .store
                    .service_account(self.tenant, sa_id)
                    .await?
                    .ok_or_else(|| Refusal::not_found(format!("no service account '{sa_id}'")))?;
                let bound = members.iter().find_map(|(key, text)| {
                    serde_json::from_str::<Member>(text)
                        .ok()
                        .filter(|m| m.sa_id.as_deref() == Some(sa_id))
                        .map(|_| key.clone())
                });
                if let Some(other) = bound {
                    return Err(Refusal::new(
                        ErrorCode::MemberLabelTaken,
                        format!("account '{sa_id}' is already the member '{other}'"),
                    )
                    .into());
                }
                let custodian = self.custodian(None);
                let master_did = self.custodial_key(label, &custodian).did_key();
                (sa.scopes, master_did, Some(custodian))
            }
        };
        if !self.claim(&format!("label:{label}#0")).await? {
            return Err(Refusal::new(
                ErrorCode::MemberLabelTaken,
                format!("the label '{label}' was just taken"),
            )
            .into());
        }
        let now = unix_now();
        let member_did = format!("did:sync:user:{label}");
        let (grant_record, grant) = self.grant_record(Grant {
            grant_id: String::new(),
            parent: None,
            member: label.to_string(),
            aud: member_did.clone(),
            scopes: scopes.clone(),
            caveats: Caveats::default(),
            depth: 0,
            slot: 0,
            sa_id: sa_id.map(str::to_string),
            issued_at: now,
            expires_at: now + ttl,
            revoked_at: None,
            reason: None,
        });
        let member = Member {
            label: label.to_string(),
            member_did,
            master_did,
            grant_id: grant.grant_id.clone(),
            sa_id: sa_id.map(str::to_string),
            custody: "custodial".into(),
            custodian,
            preset: None,
            scopes,
            caveats: Caveats::default(),
            joined_at: now,
            expires_at: grant.expires_at,
            revoked_at: None,
            generation: 0,
        };
        let binding = self.record(
            &identity_thread(label),
            BINDING_KIND,
            json!({ "member": member, "adopted": true }),
        );
        let acceptance = self.acceptance(&member);
        self.write(
            vec![grant_record, binding, acceptance],
            vec![
                put(GRANT_DOC, &grant.grant_id, &grant),
                put(MEMBER_DOC, label, &member),
            ],
        )
        .await?;
        if let Some(sa_id) = sa_id {
            parent_tokens(
                self.store,
                self.tenant,
                self.identity,
                sa_id,
                &grant.grant_id,
            )
            .await?;
        }
        Ok((member, true))
    }

    /// Revokes a member's grant, and with it every credential and sub-grant below it.
    pub async fn revoke_member(
        &self,
        label: &str,
        asker: &Asker,
        note: Option<&str>,
    ) -> Result<Revoked> {
        let mut member = self.existing_member(label).await?;
        if !asker.is(&member) {
            return Err(not_theirs(label));
        }
        let mut answer = Revoked {
            object: "member_revocation",
            grant_id: member.grant_id.clone(),
            revoked: true,
            revocation_record_id: None,
            already_revoked: true,
            scope: "local",
            label: Some(label.to_string()),
            member_did: Some(member.member_did.clone()),
        };
        if member.revoked_at.is_some() {
            return Ok(answer);
        }
        let grant = self
            .grant(&member.grant_id)
            .await?
            .ok_or_else(|| TenantError::corrupt(format!("member {label} has no grant")))?;
        member.revoked_at = Some(unix_now());
        let (revoke, grant) = self.revoke_record(grant, "member-revoked", note, Some(&member));
        let event = self.record(
            INVITES_AUDIT_THREAD,
            INVITE_EVENT_KIND,
            json!({
                "event_kind": "member_revoked",
                "label": label,
                "member_did": member.member_did,
                "grant_id": grant.grant_id,
                "note": note,
            }),
        );
        answer.revocation_record_id = Some(revoke.id.clone());
        answer.already_revoked = false;
        self.write(
            vec![revoke, event],
            vec![
                put(GRANT_DOC, &grant.grant_id, &grant),
                put(MEMBER_DOC, label, &member),
            ],
        )
        .await?;
        Ok(answer)
    }

    /// Mints an agent sub-grant below a member's grant and a bearer under it.
    pub async fn mint_agent(
        &self,
        label: &str,
        asker: &Asker,
        request: AgentRequest,
    ) -> Result<(Grant, MintedToken)> {
        let member = self.existing_member(label).await?;
        if !asker.is(&member) {
            return Err(not_theirs(label));
        }
        if let Err(e) = check_chain(self.store, self.tenant, &member.grant_id).await {
            return Err(match e {
                TenantError::Refused(r) => Refusal::new(
                    ErrorCode::PreconditionFailed,
                    format!("member '{label}' cannot delegate: {}", r.message),
                )
                .into(),
                other => other,
            });
        }
        let parent = self
            .grant(&member.grant_id)
            .await?
            .ok_or_else(|| TenantError::corrupt(format!("member {label} has no grant")))?;
        if !asker.admin {
            self.refuse_borrowed_actor(label, &request.aud).await?;
        }
        let scopes = request.scopes.unwrap_or_else(|| parent.scopes.clone());
        validate_scopes(&scopes)?;
        check_narrows(&scopes, &parent.scopes)?;
        let caveats = parent.caveats.child(&request.caveats)?;
        let now = unix_now();
        let remaining = parent.expires_at - now;
        let ttl = request.ttl_seconds.unwrap_or(remaining);
        if ttl > remaining {
            return Err(Refusal::new(
                ErrorCode::PermissionDenied,
                format!("a sub-grant cannot outlive its parent ({remaining} s left)"),
            )
            .into());
        }
        let fanout = parent.caveats.max_fanout.unwrap_or(DEFAULT_FANOUT);
        let mut slot = None;
        for n in 0..fanout {
            if self
                .claim(&format!("child:{}#{n}", parent.grant_id))
                .await?
            {
                slot = Some(n);
                break;
            }
        }
        let Some(slot) = slot else {
            return Err(Refusal::new(
                ErrorCode::PermissionDenied,
                format!(
                    "grant {} has all {fanout} of its sub-grants",
                    parent.grant_id
                ),
            )
            .with_hint("revoked sub-grants keep their slots: max_fanout counts every child")
            .into());
        };
        let sa = create_service_account(
            self.store,
            self.tenant,
            self.identity,
            &format!("agent:{label}:{slot}"),
            scopes.clone(),
            vec![request.aud.clone()],
        )
        .await?;
        let (record, grant) = self.grant_record(Grant {
            grant_id: String::new(),
            parent: Some(parent.grant_id.clone()),
            member: label.to_string(),
            aud: request.aud,
            scopes,
            caveats,
            depth: parent.depth + 1,
            slot,
            sa_id: Some(sa.id.clone()),
            issued_at: now,
            expires_at: now + ttl,
            revoked_at: None,
            reason: None,
        });
        self.write(vec![record], vec![put(GRANT_DOC, &grant.grant_id, &grant)])
            .await?;
        let token = mint_under_grant(
            self.store,
            self.tenant,
            self.identity,
            self.env,
            &sa.id,
            Some(ttl),
            &grant.grant_id,
        )
        .await?;
        Ok((grant, token))
    }

    /// An agent writes as its `aud`: a member may not name the tenant, a member (`did:sync:user:`
    /// DIDs, or any member's master DID) or anyone another account already writes as (its own
    /// agents aside), since its agent would write as them.
    async fn refuse_borrowed_actor(&self, label: &str, aud: &str) -> Result<()> {
        let taken = || {
            Refusal::new(
                ErrorCode::PermissionDenied,
                format!("an agent may not write as {aud}: that actor is another principal's"),
            )
            .with_hint("name the agent by a DID of its own, e.g. did:sync:agent:<name>")
            .into()
        };
        if aud == &*self.identity.did || aud.starts_with("did:sync:user:") {
            return Err(taken());
        }
        for (_, text) in self.store.state_list(self.tenant, MEMBER_DOC).await? {
            if let Ok(member) = serde_json::from_str::<Member>(&text) {
                if member.master_did == aud || member.member_did == aud {
                    return Err(taken());
                }
            }
        }
        let claimed = self
            .store
            .service_accounts(self.tenant)
            .await?
            .iter()
            .filter(|sa| !sa.name.starts_with(&format!("agent:{label}:")))
            .any(|sa| sa.allowed_actors.iter().any(|a| a == aud));
        if claimed {
            return Err(taken());
        }
        Ok(())
    }

    /// Revokes one sub-grant below a member's grant (the member stays).
    pub async fn revoke_agent(
        &self,
        label: &str,
        grant_id: &str,
        asker: &Asker,
    ) -> Result<Revoked> {
        let member = self.existing_member(label).await?;
        if !asker.is(&member) {
            return Err(not_theirs(label));
        }
        let grant = match self.grant(grant_id).await? {
            Some(grant) if grant.member == label && grant.parent.is_some() => grant,
            Some(grant) if grant.member == label => {
                return Err(Refusal::validation(
                    "that is the membership grant: revoke the member instead",
                )
                .into())
            }
            _ => {
                return Err(Refusal::not_found(format!(
                    "no sub-grant '{grant_id}' of member '{label}'"
                ))
                .into())
            }
        };
        let mut answer = Revoked {
            object: "grant_revocation",
            grant_id: grant_id.to_string(),
            revoked: true,
            revocation_record_id: None,
            already_revoked: true,
            scope: "local",
            label: Some(label.to_string()),
            member_did: None,
        };
        if grant.revoked_at.is_some() {
            return Ok(answer);
        }
        let (revoke, grant) = self.revoke_record(grant, "grant-revoked", None, None);
        answer.revocation_record_id = Some(revoke.id.clone());
        answer.already_revoked = false;
        self.write(vec![revoke], vec![put(GRANT_DOC, &grant.grant_id, &grant)])
            .await?;
        Ok(answer)
    }
}
