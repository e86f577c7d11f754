//! The hosted platform's provisioning API, called on the platform host with a platform JWT as
//! the bearer.

use reqwest::header::HeaderValue;
use reqwest::Method;
use syncropel_api::{Provision, ProvisionAccepted, ProvisionRequest};

use crate::{encode_segment, reply, with_json, Client, ClientError, Reply};

impl Client {
    /// `POST /provision`: makes a tenant once per `idempotency_key` (send the same key when
    /// retrying).
    pub async fn provision(
        &self,
        idempotency_key: &str,
        request: &ProvisionRequest,
    ) -> Result<Reply<ProvisionAccepted>, ClientError> {
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            ClientError::InvalidArgument("the idempotency key is not a valid header value".into())
        })?;
        let request = with_json(
            self.request(Method::POST, self.url("/provision", &[]))
                .header("idempotency-key", key),
            request,
        )?;
        let (status, body) = self.call(request).await?;
        reply(status, &body)
    }

    /// `GET /provision/{id}`: phases, error, and the tenant's status, DID and URL.
    pub async fn provision_status(&self, id: &str) -> Result<Reply<Provision>, ClientError> {
        self.get_reply(self.url(&provision_path(id, None), &[]))
            .await
    }

    /// `POST /provision/{id}/suspend`: the tenant becomes read-only.
    pub async fn suspend_tenant(&self, id: &str) -> Result<Reply<Provision>, ClientError> {
        self.change_tenant(Method::POST, &provision_path(id, Some("suspend")))
            .await
    }

    /// `POST /provision/{id}/resume`: a suspended tenant takes writes again.
    pub async fn resume_tenant(&self, id: &str) -> Result<Reply<Provision>, ClientError> {
        self.change_tenant(Method::POST, &provision_path(id, Some("resume")))
            .await
    }

    /// `DELETE /provision/{id}`: read-only for the grace period, then purged.
    pub async fn delete_tenant(&self, id: &str) -> Result<Reply<Provision>, ClientError> {
        self.change_tenant(Method::DELETE, &provision_path(id, None))
            .await
    }

    async fn change_tenant(
        &self,
        method: Method,
        path: &str,
    ) -> Result<Reply<Provision>, ClientError> {
        let (status, body) = self.call(self.request(method, self.url(path, &[]))).await?;
        reply(status, &body)
    }
}

fn provision_path(id: &str, action: Option<&str>) -> String {
    let mut path = format!("/provision/{}", encode_segment(id));
    if let Some(action) = action {
        path.push('/');
        path.push_str(action);
    }
    path
}
