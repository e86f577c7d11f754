//! [`PeerClient`]: bounded, deadline-checked HTTP calls to federation peers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::Response;
use serde_json::Value;
use syncropel_api::ChangesPage;
use url::Url;

use super::error::{classify, PeerError};
use super::live::LiveFeed;
use super::target::{check_url, PublicOnlyResolver};

/// Header naming the acting principal on peer calls.
const ACTOR_HEADER: &str = "x-syncropel-actor";
/// Carries the puller's L0 acceptances (federation-protocol.md §6.4).
const ACCEPT_HEADER: &str = "x-syncropel-consent-accept";
/// Marks a request as one steward's to another (a push).
const FEDERATION_HEADER: &str = "x-syncropel-federation";
/// Manifest (federation-protocol.md §2.1) and DID document / operation log fetch deadline.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest manifest or `post_json` answer read (federation-protocol.md §2.1).
const SMALL_BODY_LIMIT: usize = 1024 * 1024;
/// How much of an error body is read to find an ApiError.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an error body may take to arrive before the status alone is reported.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);
/// Redirects followed per call (each hop is re-checked when `allow_private` is false).
const MAX_REDIRECTS: usize = 5;

/// Timeouts, size limits and the target policy of a [`PeerClient`] (federation-protocol.md §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClientOptions {
    /// TCP (+ DNS + TLS) connect deadline; default 5 s.
    pub connect_timeout: Duration,
    /// Deadline for a whole normal request including its body; default 30 s.
    pub request_timeout: Duration,
    /// Deadline for a whole `feed=longpoll` changes request; default 40 s.
    pub longpoll_timeout: Duration,
    /// Largest changes page read; bigger is `PARSE_ERROR`; default 8 MiB.
    pub max_page_bytes: usize,
    /// `true` (local stewards): any target. `false` (hosted): refuse `localhost` and
    /// loopback/private/link-local/unspecified addresses, literal or resolved.
    pub allow_private: bool,
}

impl Default for PeerClientOptions {
    /// 5 s connect, 30 s request, 40 s longpoll, 8 MiB pages, private targets allowed.
    fn default() -> Self {
        PeerClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            longpoll_timeout: Duration::from_secs(40),
            max_page_bytes: 8 * 1024 * 1024,
            allow_private: true,
        }
    }
}

/// An HTTP client for peer stewards; cheap to clone (shares one connection pool).
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    options: Arc<PeerClientOptions>,
}

/// One `GET /v1/sync/changes` call (federation-protocol.md §5.1).
#[derive(Clone, Copy)]
pub struct ChangesRequest<'a> {
    /// Peer base URL; a path prefix (e.g. `http://host/t/alice`) is kept.
    pub base: &'a str,
    /// Outbound pair bearer token.
    pub token: &'a str,
    /// Value of `X-Syncropel-Actor`.
    pub actor: &'a str,
    /// Thread to pull.
    pub thread: &'a str,
    /// Cursor held (empty = from the start).
    pub since: &'a str,
    /// Page size.
    pub limit: u32,
    /// `feed=longpoll` (deadline `longpoll_timeout`) instead of `feed=normal` (`request_timeout`).
    pub longpoll: bool,
    /// `target_namespace` query parameter, when set.
    pub target_namespace: Option<&'a str>,
    /// Our L0 acceptances for this source and target, shown in `x-syncropel-consent-accept`.
    pub consent_accepts: &'a [String],
}

impl std::fmt::Debug for ChangesRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangesRequest")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("actor", &self.actor)
            .field("thread", &self.thread)
            .field("since", &self.since)
            .field("limit", &self.limit)
            .field("longpoll", &self.longpoll)
            .field("target_namespace", &self.target_namespace)
            .field("consent_accepts", &self.consent_accepts.len())
            .finish()
    }
}

impl PeerClient {
    /// A client with the given options (connect timeout, redirect limit, target policy).
    ///
    /// # Panics
    /// Only if the TLS backend cannot be initialised (reqwest's `build` failing).
    pub fn new(options: PeerClientOptions) -> PeerClient {
        let allow_private = options.allow_private;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if allow_private {
                attempt.follow()
            } else {
                match check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(forbidden) => attempt.error(forbidden),
                }
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .redirect(redirect)
            .user_agent(concat!("syncropel-federation/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        // Building fails only when the TLS backend cannot start; rustls with its bundled roots
        // always can, so this is a startup invariant, not a request-time failure.
        #[allow(clippy::expect_used)]
        let http = builder.build().expect("building the peer HTTP client");
        PeerClient {
            http,
            options: Arc::new(options),
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &PeerClientOptions {
        &self.options
    }

    /// GET {base}/v1/sync/changes?thread=&since=&limit=&feed=longpoll|normal&target_namespace=
    /// with `Authorization: Bearer {token}` and `X-Syncropel-Actor: {actor}`; reads the body
    /// streaming and stops with PARSE_ERROR once it exceeds max_page_bytes; a body still
    /// streaming at the timeout is TIMEOUT. Any shape problem (not an object, missing or
    /// mistyped `thread`/`records`/`next_cursor`/`has_more`, a non-object item, another
    /// thread, or the `has_more` loop case of federation-protocol.md §5.5) is PARSE_ERROR with
    /// detail.
    pub async fn changes(&self, req: &ChangesRequest<'_>) -> Result<ChangesPage, PeerError> {
        let mut url = self.endpoint(req.base, "/v1/sync/changes")?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("thread", req.thread)
                .append_pair("since", req.since)
                .append_pair("limit", &req.limit.to_string())
                .append_pair("feed", if req.longpoll { "longpoll" } else { "normal" });
            if let Some(ns) = req.target_namespace {
                query.append_pair("target_namespace", ns);
            }
        }
        let mut headers = auth_headers(Some(req.token), Some(req.actor))?;
        accept_header(&mut headers, req.consent_accepts)?;
        let timeout = if req.longpoll {
            self.options.longpoll_timeout
        } else {
            self.options.request_timeout
        };
        let max = self.options.max_page_bytes;
        let value = self
            .deadline(timeout, "changes", async {
                let resp = self.send(self.http.get(url).headers(headers)).await?;
                let resp = success_or_error(resp).await?;
                parse_json(&read_limited(resp, max).await?)
            })
            .await?;
        parse_page(value, req)
    }

    /// Opens `feed=continuous` (federation-protocol.md §5.1) from `req.since`: its records come
    /// one at a time from the [`LiveFeed`], each event at most `max_page_bytes`, the feed ended
    /// after a `longpoll_timeout` of silence (the source sends a heartbeat every 30 s).
    pub async fn changes_live(&self, req: &ChangesRequest<'_>) -> Result<LiveFeed, PeerError> {
        let mut url = self.endpoint(req.base, "/v1/sync/changes")?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("thread", req.thread)
                .append_pair("since", req.since)
                .append_pair("feed", "continuous");
            if let Some(ns) = req.target_namespace {
                query.append_pair("target_namespace", ns);
            }
        }
        let mut headers = auth_headers(Some(req.token), Some(req.actor))?;
        accept_header(&mut headers, req.consent_accepts)?;
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let resp = self
            .deadline(self.options.request_timeout, "changes", async {
                let resp = self.send(self.http.get(url).headers(headers)).await?;
                success_or_error(resp).await
            })
            .await?;
        Ok(LiveFeed::new(
            resp,
            self.options.longpoll_timeout.max(Duration::from_secs(60)),
            self.options.max_page_bytes,
        ))
    }

    /// GET {base}/.well-known/syncropel, ≤ 1 MiB, 10 s (or `request_timeout` if shorter);
    /// returns the JSON value, which must be an object.
    pub async fn manifest(&self, base: &str) -> Result<Value, PeerError> {
        let url = self.endpoint(base, "/.well-known/syncropel")?;
        let timeout = MANIFEST_TIMEOUT.min(self.options.request_timeout);
        let value = self
            .deadline(timeout, "manifest", async {
                let resp = self
                    .send(self.http.get(url).header(ACCEPT, "application/json"))
                    .await?;
                let resp = success_or_error(resp).await?;
                parse_json(&read_limited(resp, SMALL_BODY_LIMIT).await?)
            })
            .await?;
        if !value.is_object() {
            return Err(PeerError::Parse("manifest is not a JSON object".into()));
        }
        Ok(value)
    }

    /// GET an absolute URL answering a JSON object (a DID document or did:sync operation
    /// log), ≤ `max_bytes`, 10 s (or `request_timeout` if shorter). Returns the object and the
    /// `Cache-Control` max-age, when there is one (`no-cache`/`no-store` count as zero).
    pub async fn get_document(
        &self,
        url: &str,
        max_bytes: usize,
    ) -> Result<(Value, Option<Duration>), PeerError> {
        let url = self.checked_url(url)?;
        let timeout = MANIFEST_TIMEOUT.min(self.options.request_timeout);
        let (value, max_age) = self
            .deadline(timeout, "document", async {
                let resp = self
                    .send(self.http.get(url).header(ACCEPT, "application/json"))
                    .await?;
                let resp = success_or_error(resp).await?;
                let max_age = cache_max_age(resp.headers());
                Ok((parse_json(&read_limited(resp, max_bytes).await?)?, max_age))
            })
            .await?;
        if !value.is_object() {
            return Err(PeerError::Parse("document is not a JSON object".into()));
        }
        Ok((value, max_age))
    }

    /// POST JSON to an absolute URL with optional bearer + actor headers, ≤ 1 MiB answer,
    /// request_timeout. Returns (status, json body). Non-2xx is NOT an error here (the caller
    /// reads the ApiError body), but transport problems are PeerError. An empty body is
    /// `Null`; a non-JSON body is PARSE_ERROR on 2xx and a `Value::String` snippet otherwise.
    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
        bearer: Option<&str>,
        actor: Option<&str>,
    ) -> Result<(u16, Value), PeerError> {
        let url = self.checked_url(url)?;
        let headers = auth_headers(bearer, actor)?;
        self.exchange("post", self.http.post(url).headers(headers).json(body))
            .await
    }

    /// Fetches records by id from a peer's `POST /v1/sync/records` as a puller (`body` is
    /// `{"ids": [...]}`), showing `consent_accepts` as a page request does; answered as
    /// [`PeerClient::post_json`] answers.
    pub async fn fetch_records(
        &self,
        url: &str,
        body: &Value,
        bearer: &str,
        actor: &str,
        consent_accepts: &[String],
    ) -> Result<(u16, Value), PeerError> {
        let url = self.checked_url(url)?;
        let mut headers = auth_headers(Some(bearer), Some(actor))?;
        accept_header(&mut headers, consent_accepts)?;
        self.exchange("post", self.http.post(url).headers(headers).json(body))
            .await
    }

    /// Pushes `body` (`{"records": [...]}`) to a peer's `POST /v1/sync/records` with the pair's
    /// bearer, our DID and `x-syncropel-federation: 1` (federation-protocol.md §5.3); answered
    /// as [`PeerClient::post_json`] answers.
    pub async fn push(
        &self,
        url: &str,
        body: &Value,
        bearer: &str,
        actor: &str,
    ) -> Result<(u16, Value), PeerError> {
        let url = self.checked_url(url)?;
        let mut headers = auth_headers(Some(bearer), Some(actor))?;
        headers.insert(FEDERATION_HEADER, HeaderValue::from_static("1"));
        self.exchange("push", self.http.post(url).headers(headers).json(body))
            .await
    }

    /// GET an absolute URL with optional bearer + actor headers, ≤ 1 MiB answer,
    /// request_timeout. Returns (status, json body) as [`PeerClient::post_json`] does.
    pub async fn get_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        actor: Option<&str>,
    ) -> Result<(u16, Value), PeerError> {
        let url = self.checked_url(url)?;
        let headers = auth_headers(bearer, actor)?;
        self.exchange("get", self.http.get(url).headers(headers))
            .await
    }

    /// A call to a relay (federation-protocol.md §7.3): `method` on an absolute URL with the
    /// given `Authorization` value and body, under `timeout`, reading at most `max` bytes of
    /// answer. Any answer is `(status, Retry-After, JSON)` (a non-JSON error body as a string
    /// snippet); only transport failures and a 2xx that is not JSON are errors.
    pub async fn signed_call(
        &self,
        method: reqwest::Method,
        url: &str,
        authorization: &str,
        body: Vec<u8>,
        (timeout, max): (Duration, usize),
    ) -> Result<(u16, Option<Duration>, Value), PeerError> {
        let url = self.checked_url(url)?;
        let mut headers = auth_headers(None, None)?;
        let mut value = HeaderValue::from_str(authorization).map_err(|_| {
            PeerError::Parse("request: the signature is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        if !body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = self.http.request(method, url).headers(headers).body(body);
        self.deadline(timeout, "relay", async {
            let resp = self.send(request).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .map(Duration::from_secs);
            let bytes = read_limited(resp, max).await?;
            match serde_json::from_slice(&bytes) {
                Ok(value) => Ok((status.as_u16(), retry_after, value)),
                Err(e) if status.is_success() => {
                    Err(PeerError::Parse(format!("malformed JSON: {e}")))
                }
                Err(_) => Ok((status.as_u16(), retry_after, Value::String(snippet(&bytes)))),
            }
        })
        .await
    }

    /// Sends `request` within request_timeout and reads a ≤ 1 MiB answer: `(status, JSON)`, an
    /// empty body as `null`, a non-JSON error body as a string snippet.
    async fn exchange(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), PeerError> {
        self.deadline(self.options.request_timeout, what, async {
            let resp = self.send(request).await?;
            let status = resp.status();
            let bytes = read_limited(resp, SMALL_BODY_LIMIT).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok((status.as_u16(), Value::Null));
            }
            match serde_json::from_slice(&bytes) {
                Ok(value) => Ok((status.as_u16(), value)),
                Err(e) if status.is_success() => {
                    Err(PeerError::Parse(format!("malformed JSON: {e}")))
                }
                Err(_) => Ok((status.as_u16(), Value::String(snippet(&bytes)))),
            }
        })
        .await
    }

    /// Parses an absolute http(s) URL and applies the target policy.
    fn checked_url(&self, raw: &str) -> Result<Url, PeerError> {
        let url = Url::parse(raw)
            .map_err(|e| PeerError::Parse(format!("invalid peer URL '{raw}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(PeerError::Parse(format!("peer URL '{raw}' is not http(s)")));
        }
        if !self.options.allow_private {
            check_url(&url).map_err(|f| PeerError::Forbidden(f.0))?;
        }
        Ok(url)
    }

    /// `base` + `path`, keeping any path prefix of `base` and dropping its query and fragment.
    fn endpoint(&self, base: &str, path: &str) -> Result<Url, PeerError> {
        let mut url = self.checked_url(base)?;
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        url.set_fragment(None);
        Ok(url)
    }

    /// Sends a request with the current trace context, classifying transport failures.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, PeerError> {
        let mut trace = reqwest::header::HeaderMap::new();
        syncropel_telemetry::propagation::inject(&mut trace);
        request
            .headers(trace)
            .send()
            .await
            .map_err(|e| classify(&e))
    }

    /// Runs `work` under `timeout`; running out is TIMEOUT. Failures are logged at debug level.
    async fn deadline<T>(
        &self,
        timeout: Duration,
        what: &str,
        work: impl Future<Output = Result<T, PeerError>>,
    ) -> Result<T, PeerError> {
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout(format!(
                "{what}: no complete answer within {timeout:?}"
            ))),
        };
        if let Err(e) = &result {
            tracing::debug!(call = what, code = e.code(), error = %e, "peer call failed");
        }
        result
    }
}

/// `Authorization: Bearer …` (marked sensitive) and `X-Syncropel-Actor`, when given.
fn auth_headers(bearer: Option<&str>, actor: Option<&str>) -> Result<HeaderMap, PeerError> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(token) = bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            PeerError::Parse("request: bearer token is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    if let Some(actor) = actor {
        let value = HeaderValue::from_str(actor)
            .map_err(|_| PeerError::Parse("request: actor is not a valid header value".into()))?;
        headers.insert(ACTOR_HEADER, value);
    }
    Ok(headers)
}

/// Adds the puller's L0 acceptances, comma-separated, when it has any.
fn accept_header(headers: &mut HeaderMap, accepts: &[String]) -> Result<(), PeerError> {
    if accepts.is_empty() {
        return Ok(());
    }
    let value = HeaderValue::from_str(&accepts.join(",")).map_err(|_| {
        PeerError::Parse("request: an acceptance is not a valid header value".into())
    })?;
    headers.insert(ACCEPT_HEADER, value);
    Ok(())
}

/// Passes 2xx through; 4xx/5xx become HTTP_4XX/HTTP_5XX (with the ApiError code and message
/// when the body is one); anything else is PARSE_ERROR.
async fn success_or_error(resp: Response) -> Result<Response, PeerError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if !status.is_client_error() && !status.is_server_error() {
        return Err(PeerError::Parse(format!("unexpected HTTP status {status}")));
    }
    let body = read_prefix(resp, ERROR_BODY_LIMIT).await;
    if status.as_u16() == 410 {
        if let Some(moved) = moved(&body) {
            return Err(moved);
        }
    }
    let (code, message) = api_error(&body).unwrap_or_else(|| {
        let text = snippet(&body);
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("").to_string()
        } else {
            text
        };
        (None, message)
    });
    Err(if status.is_client_error() {
        PeerError::Http4xx {
            status: status.as_u16(),
            code,
            message,
        }
    } else {
        PeerError::Http5xx {
            status: status.as_u16(),
            message: code.map_or(message.clone(), |c| format!("{c}: {message}")),
        }
    })
}

/// `410 INSTANCE_MOVED` with `moved_to` and the `notice` to check.
fn moved(body: &[u8]) -> Option<PeerError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("code").and_then(Value::as_str) != Some("INSTANCE_MOVED") {
        return None;
    }
    Some(PeerError::Moved {
        moved_to: value.get("moved_to")?.as_str()?.to_string(),
        notice: Box::new(value.get("notice")?.clone()),
    })
}

/// `(code, message)` of an ApiError body `{"object":"error","code","message"}`.
fn api_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("object").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let code = value
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// Reads the whole body, failing with PARSE_ERROR as soon as it exceeds `max` bytes.
async fn read_limited(resp: Response, max: usize) -> Result<Vec<u8>, PeerError> {
    let too_big = || PeerError::Parse(format!("response larger than {max} bytes"));
    if resp.content_length().is_some_and(|len| len > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| classify(&e))?;
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Up to `max` bytes of an error body, whatever arrives within [`ERROR_BODY_WAIT`].
async fn read_prefix(resp: Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    let _ = tokio::time::timeout(ERROR_BODY_WAIT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = max - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= max {
                break;
            }
        }
    })
    .await;
    body
}

/// The `max-age` of the `Cache-Control` headers; `no-cache`/`no-store` win as zero.
fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-cache" || directive == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(secs) = directive.strip_prefix("max-age=") {
                if let Ok(secs) = secs.trim_matches('"').parse::<u64>() {
                    max_age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    max_age
}

/// Parses a JSON body; failure is PARSE_ERROR.
fn parse_json(bytes: &[u8]) -> Result<Value, PeerError> {
    serde_json::from_slice(bytes).map_err(|e| PeerError::Parse(format!("malformed JSON: {e}")))
}

/// The first 300 characters of a body, lossily decoded and trimmed.
fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(300)
        .collect()
}

/// Checks the `sync_changes` shape (federation-protocol.md §5.1) and the page-level protocol rules
/// of §5.5.
fn parse_page(value: Value, req: &ChangesRequest<'_>) -> Result<ChangesPage, PeerError> {
    let bad = |detail: String| PeerError::Parse(format!("changes page: {detail}"));
    let Value::Object(mut map) = value else {
        return Err(bad("not a JSON object".into()));
    };
    if let Some(object) = map.get("object") {
        if object.as_str() != Some("sync_changes") {
            return Err(bad(format!(
                "object is {object}, expected \"sync_changes\""
            )));
        }
    }
    let thread = match map.remove("thread") {
        Some(Value::String(t)) => t,
        other => {
            return Err(bad(format!(
                "thread must be a string, got {}",
                kind(other.as_ref())
            )))
        }
    };
    if thread != req.thread {
        return Err(bad(format!(
            "thread '{thread}' is not the requested '{}'",
            req.thread
        )));
    }
    let records = match map.remove("records") {
        Some(Value::Array(items)) => items,
        other => {
            return Err(bad(format!(
                "records must be an array, got {}",
                kind(other.as_ref())
            )))
        }
    };
    if let Some(index) = records.iter().position(|item| !item.is_object()) {
        return Err(bad(format!(
            "records[{index}] is {}, not an object",
            kind(records.get(index))
        )));
    }
    let next_cursor = match map.remove("next_cursor") {
        Some(Value::String(c)) => c,
        other => {
            return Err(bad(format!(
                "next_cursor must be a string, got {}",
                kind(other.as_ref())
            )))
        }
    };
    let has_more = match map.remove("has_more") {
        Some(Value::Bool(b)) => b,
        other => {
            return Err(bad(format!(
                "has_more must be a boolean, got {}",
                kind(other.as_ref())
            )))
        }
    };
    if has_more && records.is_empty() && next_cursor == req.since {
        return Err(bad(
            "has_more with no records and an unchanged cursor (loop)".into(),
        ));
    }
    Ok(ChangesPage {
        thread,
        records,
        next_cursor,
        has_more,
    })
}

/// A short name for a JSON value's type, for error details.
fn kind(value: Option<&Value>) -> &'static str {
    match value {
        None => "nothing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}
