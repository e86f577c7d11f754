//! Calls to a relay (federation-protocol.md §7.3), each signed with the steward's identity key in
//! an `Authorization: DIDSig` header: the relay keeps no accounts or tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};
use syncropel_protocol::didsig::{self, Signed};
use syncropel_protocol::relay::Queue;
use syncropel_tenant::Identity;
use url::Url;

use crate::peer::{PeerClient, PeerError};

/// Deadline of a call that does not wait for deposits.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read other than a page of envelopes.
const SMALL_ANSWER: usize = 1 << 20;
/// Largest page of envelopes read: the relay's page bound (8 MiB) and its wrapping.
const PAGE_ANSWER: usize = 9 << 20;

/// A failed relay call: the classified failure, the relay's answer, and the `Retry-After` it
/// asked for.
#[derive(Debug)]
pub struct RelayFailure {
    pub error: PeerError,
    /// The error body (`QUEUE_FULL` names its `limit`, `queued` and `max`); `null` after a
    /// transport failure.
    pub answer: Value,
    pub retry_after: Option<Duration>,
}

impl RelayFailure {
    fn transport(error: PeerError) -> RelayFailure {
        RelayFailure {
            error,
            answer: Value::Null,
            retry_after: None,
        }
    }

    /// The relay's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        self.answer["code"].as_str()
    }

    pub fn status(&self) -> Option<u16> {
        self.error.http_status()
    }
}

impl std::fmt::Display for RelayFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// A relay's answer: its JSON when 2xx, else the failure it names.
fn answered(
    status: u16,
    retry_after: Option<Duration>,
    answer: Value,
) -> Result<Value, RelayFailure> {
    if (200..300).contains(&status) {
        return Ok(answer);
    }
    let code: Option<String> = answer["code"].as_str().map(str::to_string);
    let message = match (&answer["message"], &answer) {
        (Value::String(message), _) => message.clone(),
        (_, Value::String(snippet)) => snippet.clone(),
        _ => format!("HTTP {status}"),
    };
    let error = if (400..500).contains(&status) {
        PeerError::Http4xx {
            status,
            code,
            message,
        }
    } else if status >= 500 {
        PeerError::Http5xx {
            status,
            message: code
                .as_ref()
                .map_or(message.clone(), |c| format!("{c}: {message}")),
        }
    } else {
        PeerError::Parse(format!("unexpected HTTP status {status}"))
    };
    Err(RelayFailure {
        error,
        answer,
        retry_after,
    })
}

/// One relay, called as one steward identity.
pub struct RelayClient<'a> {
    pub client: &'a PeerClient,
    pub identity: &'a Identity,
    /// The relay's base URL.
    pub base: &'a str,
}

impl RelayClient<'_> {
    /// `PUT /v1/relay/queues/{id}`: opens (or reopens) `queue`; a destination passes the source
    /// cursor it holds as `since`.
    pub async fn open(&self, queue: &Queue, since: Option<&str>) -> Result<Value, RelayFailure> {
        let mut body = json!({ "queue": queue });
        if let Some(since) = since.filter(|s| !s.is_empty()) {
            body["since"] = json!(since);
        }
        self.call(
            Method::PUT,
            &queue_path(&queue.id(), ""),
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `POST …/deposit`: queues a signed envelope.
    pub async fn deposit(&self, queue_id: &str, envelope: &Value) -> Result<Value, RelayFailure> {
        let path = queue_path(queue_id, "/deposit");
        self.call(Method::POST, &path, Some(envelope), CALL_TIMEOUT)
            .await
    }

    /// `GET …/changes`: the envelopes after `since` (about `limit` items), waiting up to `wait`
    /// for a deposit.
    pub async fn changes(
        &self,
        queue_id: &str,
        since: &str,
        limit: u32,
        wait: Duration,
    ) -> Result<Value, RelayFailure> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("since", since)
            .append_pair("limit", &limit.to_string())
            .append_pair("wait", &wait.as_secs().to_string())
            .finish();
        let path = format!("{}?{query}", queue_path(queue_id, "/changes"));
        self.call_reading(Method::GET, &path, None, CALL_TIMEOUT + wait, PAGE_ANSWER)
            .await
    }

    /// `POST …/ack` as the destination: everything up to its relay cursor may go.
    pub async fn ack(&self, queue_id: &str, through: &str) -> Result<Value, RelayFailure> {
        let body = json!({ "through": through });
        self.call(
            Method::POST,
            &queue_path(queue_id, "/ack"),
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `POST …/ack` as the source (a trim): envelopes of `epoch` up to `through` may go, their
    /// destination has pulled them directly.
    pub async fn trim(
        &self,
        queue_id: &str,
        epoch: &str,
        through: i64,
    ) -> Result<Value, RelayFailure> {
        let body = json!({ "source_epoch": epoch, "through_sseq": through });
        self.call(
            Method::POST,
            &queue_path(queue_id, "/ack"),
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/relay/queues/{id}`: the queue's status.
    pub async fn status(&self, queue_id: &str) -> Result<Value, RelayFailure> {
        self.call(Method::GET, &queue_path(queue_id, ""), None, CALL_TIMEOUT)
            .await
    }

    /// `DELETE /v1/relay/queues/{id}`.
    pub async fn delete(&self, queue_id: &str) -> Result<Value, RelayFailure> {
        self.call(
            Method::DELETE,
            &queue_path(queue_id, ""),
            None,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/relay/queues?role=`: the statuses of this steward's queues in that role.
    pub async fn list(&self, role: &str) -> Result<Value, RelayFailure> {
        let path = format!("/v1/relay/queues?role={role}");
        self.call(Method::GET, &path, None, CALL_TIMEOUT).await
    }

    /// `GET /health`, unsigned.
    pub async fn health(&self) -> Result<Value, RelayFailure> {
        let url = format!("{}/health", self.base.trim_end_matches('/'));
        let (status, body) = self
            .client
            .get_json(&url, None, None)
            .await
            .map_err(RelayFailure::transport)?;
        answered(status, None, body)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, RelayFailure> {
        self.call_reading(method, path, body, timeout, SMALL_ANSWER)
            .await
    }

    async fn call_reading(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
        max: usize,
    ) -> Result<Value, RelayFailure> {
        let parse = |why: String| RelayFailure::transport(PeerError::Parse(why));
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let parsed = Url::parse(&url).map_err(|e| parse(format!("relay URL '{url}': {e}")))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return Err(parse(format!("relay URL '{url}' has no host"))),
        };
        let target = match parsed.query() {
            Some(query) => format!("{host}{}?{query}", parsed.path()),
            None => format!("{host}{}", parsed.path()),
        };
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let did = &self.identity.did;
        let authorization = didsig::sign(
            &self.identity.key,
            did,
            &format!("{did}#key-1"),
            Signed {
                method: method.as_str(),
                target: &target,
                body: &bytes,
            },
            now_ms(),
            &didsig::nonce(),
        );
        let (status, retry_after, answer) = self
            .client
            .signed_call(method, &url, &authorization, bytes, (timeout, max))
            .await
            .map_err(RelayFailure::transport)?;
        answered(status, retry_after, answer)
    }
}

fn queue_path(queue_id: &str, rest: &str) -> String {
    format!("/v1/relay/queues/{queue_id}{rest}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
