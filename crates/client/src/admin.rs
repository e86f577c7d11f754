//! Service accounts and tokens, the bootstrap, namespaces and the tenant's identity.

use syncropel_api::{
    BootstrapServiceAccount, Bootstrapped, CreateNamespace, CreateServiceAccount, Identity,
    IdentityUpgraded, ListPage, MintToken, MintedToken, Namespace, ServiceAccount, TokenRevoked,
    UpgradeIdentity,
};

use crate::{encode_segment, with_json, Client, ClientError, Reply};

impl Client {
    /// `POST /v1/service-accounts`.
    pub async fn create_service_account(
        &self,
        account: &CreateServiceAccount,
    ) -> Result<Reply<ServiceAccount>, ClientError> {
        self.post_reply(self.url("/v1/service-accounts", &[]), account)
            .await
    }

    /// `GET /v1/service-accounts`.
    pub async fn service_accounts(&self) -> Result<Reply<ListPage<ServiceAccount>>, ClientError> {
        self.get_reply(self.url("/v1/service-accounts", &[])).await
    }

    /// `POST /v1/service-accounts/{id}/tokens`: the plaintext is in this answer only.
    pub async fn mint_token(
        &self,
        sa_id: &str,
        request: &MintToken,
    ) -> Result<Reply<MintedToken>, ClientError> {
        let path = format!("/v1/service-accounts/{}/tokens", encode_segment(sa_id));
        self.post_reply(self.url(&path, &[]), request).await
    }

    /// `DELETE /v1/tokens/{token_id}`; `None` for an empty answer.
    pub async fn revoke_token(
        &self,
        token_id: &str,
    ) -> Result<Reply<Option<TokenRevoked>>, ClientError> {
        let path = format!("/v1/tokens/{}", encode_segment(token_id));
        self.delete_reply(self.url(&path, &[])).await
    }

    /// `POST /v1/bootstrap/service-account`: the first account and its token, needing no
    /// credential; closed once an account exists.
    pub async fn bootstrap_service_account(
        &self,
        request: &BootstrapServiceAccount,
    ) -> Result<Reply<Bootstrapped>, ClientError> {
        self.post_reply(self.url("/v1/bootstrap/service-account", &[]), request)
            .await
    }

    /// `GET /v1/namespaces`.
    pub async fn namespaces(&self) -> Result<Reply<ListPage<Namespace>>, ClientError> {
        self.get_reply(self.url("/v1/namespaces", &[])).await
    }

    /// `POST /v1/namespaces`: creates (or re-activates) a namespace.
    pub async fn create_namespace(
        &self,
        namespace: &CreateNamespace,
    ) -> Result<Reply<Namespace>, ClientError> {
        self.post_reply(self.url("/v1/namespaces", &[]), namespace)
            .await
    }

    /// `GET /v1/namespaces/{id}`.
    pub async fn namespace(&self, id: &str) -> Result<Reply<Namespace>, ClientError> {
        self.get_reply(self.url(&namespace_path(id)?, &[])).await
    }

    /// `DELETE /v1/namespaces/{id}`: archives it (no new writes; its records stay readable).
    pub async fn archive_namespace(&self, id: &str) -> Result<Reply<Namespace>, ClientError> {
        self.delete_reply(self.url(&namespace_path(id)?, &[])).await
    }

    /// `GET /v1/identity`.
    pub async fn identity(&self) -> Result<Reply<Identity>, ClientError> {
        self.get_reply(self.url("/v1/identity", &[])).await
    }

    /// `POST /v1/portability/export`: the answer, whose body is the bundle, to be streamed (no
    /// timeout: a large store takes its time).
    pub async fn export_bundle(
        &self,
        request: &serde_json::Value,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url("/v1/portability/export", &[]);
        let (_, response) = self
            .exchange(with_json(self.open(reqwest::Method::POST, url), request)?)
            .await?;
        Ok(response)
    }

    /// `POST /v1/portability/fence` at the steward this identity moved away from, with the
    /// notice its new home signed (federation-protocol.md §8.5).
    pub async fn fence(
        &self,
        notice: &serde_json::Value,
    ) -> Result<Reply<serde_json::Value>, ClientError> {
        self.post_reply(self.url("/v1/portability/fence", &[]), notice)
            .await
    }

    /// `POST /v1/identity/upgrade` (hosted): registers the tenant's did:sync.
    pub async fn upgrade_identity(
        &self,
        request: &UpgradeIdentity,
    ) -> Result<Reply<IdentityUpgraded>, ClientError> {
        self.post_reply(self.url("/v1/identity/upgrade", &[]), request)
            .await
    }
}

/// `/v1/namespaces/{id}`, slashes kept and every segment percent-encoded. Empty, `.` and `..`
/// segments are refused here: no namespace id has them, and URL normalisation would turn the
/// latter two into a different route.
fn namespace_path(id: &str) -> Result<String, ClientError> {
    let mut path = String::from("/v1/namespaces");
    for segment in id.split('/') {
        if matches!(segment, "" | "." | "..") {
            return Err(ClientError::InvalidArgument(format!(
                "invalid namespace id {id:?}: segments cannot be empty, `.` or `..`"
            )));
        }
        path.push('/');
        path.push_str(&encode_segment(segment));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_slashes_and_encode_each_segment() {
        assert_eq!(
            namespace_path("acme/payments").unwrap(),
            "/v1/namespaces/acme/payments"
        );
        assert_eq!(
            namespace_path("a b/c?d#e%").unwrap(),
            "/v1/namespaces/a%20b/c%3Fd%23e%25"
        );
    }

    #[test]
    fn paths_refuse_segments_that_would_change_the_route() {
        for id in ["", "acme/", "/acme", "a//b", ".", "acme/..", "../tokens"] {
            assert!(namespace_path(id).is_err(), "{id:?}");
        }
    }
}
