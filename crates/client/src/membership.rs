//! Invites and members (protocol.md §11.11). Their answers are returned as JSON: the shapes
//! are the SDK's, documented there, and the CLI prints them whole.

use reqwest::Method;
use serde_json::Value;

use crate::{encode_segment, with_json, Client, ClientError, Reply};

impl Client {
    /// `POST /v1/invites`: the invite id is in this answer only.
    pub async fn issue_invite(&self, request: &Value) -> Result<Reply<Value>, ClientError> {
        self.post_reply(self.url("/v1/invites", &[]), request).await
    }

    /// `GET /v1/invites/{id}`: what redeeming it would give.
    pub async fn invite(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/v1/invites/{}", encode_segment(id));
        self.get_reply(self.url(&path, &[])).await
    }

    /// `DELETE /v1/invites/{id}`.
    pub async fn revoke_invite(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        let path = format!("/v1/invites/{}", encode_segment(id));
        self.delete_reply(self.url(&path, &[])).await
    }

    /// `POST /v1/invites/{id}/redeem`: needs no credential.
    pub async fn redeem_invite(
        &self,
        id: &str,
        request: &Value,
    ) -> Result<Reply<Value>, ClientError> {
        let path = format!("/v1/invites/{}/redeem", encode_segment(id));
        self.post_reply(self.url(&path, &[]), request).await
    }

    /// `GET /v1/members`.
    pub async fn members(&self) -> Result<Reply<Value>, ClientError> {
        self.get_reply(self.url("/v1/members", &[])).await
    }

    /// `POST /v1/members/adopt`.
    pub async fn adopt_member(&self, request: &Value) -> Result<Reply<Value>, ClientError> {
        self.post_reply(self.url("/v1/members/adopt", &[]), request)
            .await
    }

    /// `DELETE /v1/members/{label}` with its optional `{note}`.
    pub async fn revoke_member(
        &self,
        label: &str,
        note: Option<&str>,
    ) -> Result<Reply<Value>, ClientError> {
        let path = format!("/v1/members/{}", encode_segment(label));
        let request = self.request(Method::DELETE, self.url(&path, &[]));
        let request = match note {
            Some(note) => with_json(request, &serde_json::json!({ "note": note }))?,
            None => request,
        };
        let (status, body) = self.call(request).await?;
        crate::reply(status, &body)
    }

    /// `POST /v1/members/{label}/grants`: the agent's bearer is in this answer only.
    pub async fn mint_agent_grant(
        &self,
        label: &str,
        request: &Value,
    ) -> Result<Reply<Value>, ClientError> {
        let path = format!("/v1/members/{}/grants", encode_segment(label));
        self.post_reply(self.url(&path, &[]), request).await
    }

    /// `DELETE /v1/members/{label}/grants/{grant_id}`.
    pub async fn revoke_agent_grant(
        &self,
        label: &str,
        grant_id: &str,
    ) -> Result<Reply<Value>, ClientError> {
        let path = format!(
            "/v1/members/{}/grants/{}",
            encode_segment(label),
            encode_segment(grant_id)
        );
        self.delete_reply(self.url(&path, &[])).await
    }
}
