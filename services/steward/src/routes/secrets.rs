//! `POST /v1/secrets/{set,get,list,delete,promote}` (protocol.md §14): values move only through
//! these routes, never as a record field; records hold handles (`th_credentials`). Every call,
//! refused ones included, writes its `secret.access.v1` on `th_secret_audit` before the answer
//! (`syncropel_tenant::secrets`). `admin` only: the scopes of §10.2 name no narrower one.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use syncropel_tenant::secrets::{Access, Backend, Credential, Secrets};
use syncropel_tenant::Scope;

use super::{json_text, JsonBody, PathParam};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, Tenancy};

/// The operations, by the last segment of their path.
const OPERATIONS: [&str; 5] = ["set", "get", "list", "delete", "promote"];

pub async fn call(
    state: State<AppState>,
    caller: Caller,
    PathParam(operation): PathParam,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let Some(operation) = OPERATIONS.iter().find(|o| **o == operation) else {
        return Err(ApiError::not_found(format!(
            "no secrets operation '{operation}': one of {}",
            OPERATIONS.join(", ")
        )));
    };
    run(state, caller, headers, body, operation).await
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
    operation: &'static str,
) -> ApiResult<Response> {
    let text = |name: &str| -> ApiResult<Option<String>> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::validation(format!("`{name}` must be a string"))),
        }
    };
    if !body.is_object() {
        return Err(ApiError::validation("the request is a JSON object"));
    }
    let access = Access {
        operation,
        handle: text("handle")?,
        purpose: text("purpose")?,
        actor: headers
            .get("x-syncropel-actor")
            .and_then(|v| v.to_str().ok())
            .map(|actor| actor.chars().take(256).collect()),
        sa_id: caller.grant.as_ref().map(|g| g.sa_id.clone()),
    };
    let secrets = Secrets {
        store: state.store.as_ref(),
        tenant: &caller.tenant.id,
        identity: &caller.tenant.identity,
        env_allowed: matches!(state.tenancy, Tenancy::Single(_)),
    };
    if let Err(refused) = caller.require(Scope::Admin) {
        let audit = secrets.denied(&access, "needs admin").await?;
        return Err(refused.with_extra("secret_audit_record", audit));
    }
    let answer = match operation {
        "get" => {
            let done = secrets.get(&access).await?;
            json!({"object": "secret_value", "handle": access.handle, "value": done.answer,
                   "audit_record": done.audit_record})
        }
        "list" => {
            let done = secrets.list(&access).await?;
            let data: Vec<Value> = done.answer.iter().map(described).collect();
            json!({"object": "list", "data": data, "audit_record": done.audit_record})
        }
        _ => {
            caller.tenant.require_writable()?;
            let done = match operation {
                "set" => {
                    let backend = match text("backend_ref")? {
                        Some(uri) => Backend::parse(&uri)?,
                        None => Backend::Store,
                    };
                    secrets
                        .set(&access, backend, text("value")?.as_deref())
                        .await?
                }
                "delete" => secrets.delete(&access).await?,
                _ => secrets.promote(&access).await?,
            };
            let mut answer = described(&done.answer);
            answer["audit_record"] = json!(done.audit_record);
            answer
        }
    };
    Ok(json_text(StatusCode::OK, answer.to_string()))
}

fn described(credential: &Credential) -> Value {
    json!({
        "object": "secret",
        "handle": credential.handle,
        "backend_ref": credential.backend_ref,
        "lifecycle": credential.lifecycle,
        "credential_record": credential.record,
    })
}
