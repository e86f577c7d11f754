//! Typed async HTTP client for the Syncropel steward API.
//!
//! One method per route, taking and returning the `syncropel-api` types, so `spl`, tests, the
//! bench and tools share one contract with the steward: its paths, bodies and answers. Records
//! travel as a type parameter (`serde_json::Value` unless a caller picks another): the protocol
//! crate owns their typed form, and keeping the wire JSON untouched means a client never drops
//! members a newer steward adds.
//!
//! Administrative answers come as a [`Reply`]: the typed answer, the JSON as it was sent and the
//! HTTP status, for tools that show what the steward said (`spl --json`) and tests that check it.
//! The routes of the hot paths (record writes and listings, batches, pages, health) return the
//! typed answer alone, so a load generator pays for nothing else; a write's answer still tells a
//! new record from a replay ([`Emitted::created`]).
//!
//! Non-2xx answers are decoded from the ApiError envelope
//! (`{"object":"error","type","code","message","hint"?}`) into [`ClientError::Api`].

mod admin;
mod federation;
mod hosted;
mod membership;
mod peer;
mod records;
mod watch;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use federation::Pairing;
pub use records::Emitted;
pub use syncropel_api as api;
pub use syncropel_api::ListParams;
pub use watch::WatchStart;

/// The steward's own clients use a 30 s request timeout (protocol.md §10.3); so do we. Watch
/// streams have none: they stay open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a non-JSON error body is kept in the message: enough to recognise a proxy's error
/// page, not so much that a terminal fills with HTML.
const RAW_ERROR_PREFIX: usize = 200;

/// The header a caller names the actor it acts as in (pair tokens must; others may).
const ACTOR_HEADER: HeaderName = HeaderName::from_static("x-syncropel-actor");

/// Errors from talking to a steward.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The steward answered with a non-2xx status.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
        hint: Option<String>,
    },
    /// The request did not complete: connection refused, timeout, TLS, ...
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// A 2xx answer whose body is not the JSON we expected.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The base URL cannot be used.
    #[error("invalid steward URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The bearer token cannot be sent.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// An argument no request can carry (an actor that is no header value, a namespace id that
    /// would change the route).
    #[error("{0}")]
    InvalidArgument(String),
}

/// A typed answer, the JSON it was read from and the HTTP status it came with (which tells, on
/// some routes, a new resource (`201`) from one that was there already (`200`), or a request
/// still waiting (`202`)).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply<T> {
    value: T,
    json: Value,
    status: u16,
}

impl<T> Reply<T> {
    /// The HTTP status of the answer (always a 2xx: anything else is a [`ClientError`]).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The answer as the steward sent it (`null` for an empty body).
    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn into_value(self) -> T {
        self.value
    }

    pub fn into_json(self) -> Value {
        self.json
    }

    pub fn into_parts(self) -> (T, Value) {
        (self.value, self.json)
    }
}

impl<T> Deref for Reply<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// A steward API client. Cheap to clone: everything, the connection pool included, is shared.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    /// `Bearer <token>`, marked sensitive, built once.
    auth: Option<HeaderValue>,
    actor: Option<HeaderValue>,
    http: reqwest::Client,
    /// The routes of the hot paths, resolved once.
    records_url: Url,
    batch_url: Url,
    health_url: Url,
}

/// Never prints the token: clients end up in logs and panic messages.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("token", &self.inner.auth.as_ref().map(|_| "<redacted>"))
            .field("actor", &self.inner.actor)
            .finish()
    }
}

impl Client {
    /// A client for the steward at `base_url` (which may carry a path prefix, for stewards that
    /// select the tenant by path), sending `token` as a bearer when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("syncropel-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Client::with_http(http, base_url, token.as_deref())
    }

    /// As [`Client::new`] over a given `reqwest` client: clients of many tenants (or stewards)
    /// share its connection pool, and its caller tunes it. Requests other than watch streams
    /// still time out after 30 s; a timeout set on `http` applies to watch streams too.
    pub fn with_http(
        http: reqwest::Client,
        base_url: &str,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a base URL cannot have a query or fragment"));
        }
        // Checked once here so that every later request can send it without failing.
        let auth = token
            .map(|token| {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        ClientError::InvalidToken("it contains characters not allowed in a header")
                    })?;
                value.set_sensitive(true);
                Ok::<_, ClientError>(value)
            })
            .transpose()?;
        let at = |path: &str| join(&base, path);
        Ok(Client {
            inner: Arc::new(Inner {
                records_url: at("/v1/records"),
                batch_url: at("/v1/records/batch"),
                health_url: at("/health"),
                base,
                auth,
                actor: None,
                http,
            }),
        })
    }

    /// This client, naming `actor` in `X-Syncropel-Actor` on every request: a pair token's peer,
    /// or the actor a record claims.
    pub fn acting_as(&self, actor: &str) -> Result<Client, ClientError> {
        let actor = HeaderValue::from_str(actor).map_err(|_| {
            ClientError::InvalidArgument(format!("actor {actor:?} is not a valid header value"))
        })?;
        let inner = &self.inner;
        Ok(Client {
            inner: Arc::new(Inner {
                base: inner.base.clone(),
                auth: inner.auth.clone(),
                actor: Some(actor),
                http: inner.http.clone(),
                records_url: inner.records_url.clone(),
                batch_url: inner.batch_url.clone(),
                health_url: inner.health_url.clone(),
            }),
        })
    }

    /// The base URL with `path` appended and `query` pairs form-encoded.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = join(&self.inner.base, path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// As [`Client::url`], each value percent-encoded as [`encode_segment`] encodes (a space is
    /// `%20`, not `+`): the encoding of the operator routes' parameters.
    fn url_encoded(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = join(&self.inner.base, path);
        if !query.is_empty() {
            let query: Vec<String> = query
                .iter()
                .map(|(name, value)| format!("{name}={}", encode_segment(value)))
                .collect();
            url.set_query(Some(&query.join("&")));
        }
        url
    }

    /// A request with the client's credentials and the normal timeout.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.open(method, url).timeout(REQUEST_TIMEOUT)
    }

    /// A request with the client's credentials and no timeout of its own.
    pub(crate) fn open(&self, method: Method, url: Url) -> RequestBuilder {
        let mut request = self.inner.http.request(method, url);
        if let Some(auth) = &self.inner.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(actor) = &self.inner.actor {
            request = request.header(ACTOR_HEADER, actor.clone());
        }
        request
    }

    /// Sends a request; a 2xx answer yields its status and body, anything else its error.
    pub(crate) async fn exchange(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, reqwest::Response), ClientError> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await?;
            return Err(api_error(status, &body));
        }
        Ok((status, response))
    }

    /// Sends a request and reads its whole 2xx body.
    async fn call(&self, request: RequestBuilder) -> Result<(StatusCode, Bytes), ClientError> {
        let (status, response) = self.exchange(request).await?;
        Ok((status, response.bytes().await?))
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, ClientError> {
        let (_, body) = self.call(self.request(Method::GET, url)).await?;
        decode(&body)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        url: Url,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let (_, body) = self
            .call(with_json(self.request(Method::POST, url), body)?)
            .await?;
        decode(&body)
    }

    async fn get_reply<T: DeserializeOwned>(&self, url: Url) -> Result<Reply<T>, ClientError> {
        let (status, body) = self.call(self.request(Method::GET, url)).await?;
        reply(status, &body)
    }

    async fn post_reply<T: DeserializeOwned>(
        &self,
        url: Url,
        body: &impl Serialize,
    ) -> Result<Reply<T>, ClientError> {
        let (status, body) = self
            .call(with_json(self.request(Method::POST, url), body)?)
            .await?;
        reply(status, &body)
    }

    /// A `POST` to a route that takes no body.
    async fn post_empty_reply<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Reply<T>, ClientError> {
        let (status, body) = self.call(self.request(Method::POST, url)).await?;
        reply(status, &body)
    }

    async fn delete_reply<T: DeserializeOwned>(&self, url: Url) -> Result<Reply<T>, ClientError> {
        let (status, body) = self.call(self.request(Method::DELETE, url)).await?;
        reply(status, &body)
    }
}

/// `request` with `body` as its JSON.
pub(crate) fn with_json(
    request: RequestBuilder,
    body: &impl Serialize,
) -> Result<RequestBuilder, ClientError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ClientError::Decode(format!("cannot encode request: {e}")))?;
    Ok(request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes))
}

/// `base` with `path` appended to its own path.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// A 2xx body as `T`; an empty body reads as `null` (so an `Option` answer is `None`).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ClientError::Decode(format!("cannot read the answer: {e}")))
}

/// A 2xx answer (its status and body) as a [`Reply`].
pub(crate) fn reply<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
) -> Result<Reply<T>, ClientError> {
    let json: Value = decode(body)?;
    let value = T::deserialize(&json)
        .map_err(|e| ClientError::Decode(format!("cannot read the answer: {e}")))?;
    Ok(Reply {
        value,
        json,
        status: status.as_u16(),
    })
}

/// Percent-encodes `segment` for use as one path segment: everything but RFC 3986 unreserved
/// characters is escaped, so a thread named `a/b?c` cannot change the route it is sent to.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a non-2xx answer. Reads `code`/`message` first and falls back to `error`/`detail`
/// (what other Syncropel servers and proxies send); a body that is not JSON at all becomes
/// `HTTP_<status>` with the start of the body as the message.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        names.iter().find_map(|name| {
            json.as_ref()?
                .get(*name)?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    };
    let code = field(&["code", "error"]).unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let message = field(&["message", "detail"]).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text.chars().take(RAW_ERROR_PREFIX).collect()
        }
    });
    ClientError::Api {
        status: status.as_u16(),
        code,
        message,
        hint: field(&["hint"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncropel_api::ListPage;

    fn client(base: &str) -> Client {
        Client::new(base, None).unwrap()
    }

    #[test]
    fn rejects_unusable_base_urls() {
        for bad in [
            "not a url",
            "ftp://host",
            "http://host/?x=1",
            "http://host/#f",
        ] {
            assert!(
                matches!(Client::new(bad, None), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Client::new("http://host", Some("bad\ntoken".into())),
            Err(ClientError::InvalidToken(_))
        ));
        assert!(matches!(
            client("http://host").acting_as("did:key:\n"),
            Err(ClientError::InvalidArgument(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = Client::new("http://h:1", Some("spl_local_sa_x_secret".into())).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("redacted"), "{printed}");
    }

    #[test]
    fn appends_paths_to_the_base_path() {
        let c = client("http://127.0.0.1:9100");
        assert_eq!(
            c.url("/health", &[]).as_str(),
            "http://127.0.0.1:9100/health"
        );
        let c = client("https://example.test/t/acme/");
        assert_eq!(
            c.url("/v1/records", &[]).as_str(),
            "https://example.test/t/acme/v1/records"
        );
        assert_eq!(
            c.inner.batch_url.as_str(),
            "https://example.test/t/acme/v1/records/batch"
        );
    }

    #[test]
    fn query_parameters_are_encoded() {
        let c = client("http://h:1");
        assert_eq!(
            c.url("/v1/threads", &[("cursor", "a b&c=")]).as_str(),
            "http://h:1/v1/threads?cursor=a+b%26c%3D"
        );
        assert_eq!(
            c.url_encoded(
                "/v1/consent/grants",
                &[("namespace", "a b&c"), ("x", "did:web:y")]
            )
            .as_str(),
            "http://h:1/v1/consent/grants?namespace=a%20b%26c&x=did%3Aweb%3Ay"
        );
    }

    #[test]
    fn thread_names_are_one_encoded_segment() {
        assert_eq!(encode_segment("th_abc-1.2~"), "th_abc-1.2~");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_segment("é"), "%C3%A9");
        let c = client("http://h:1");
        let path = format!("/v1/threads/{}/records", encode_segment("music/library"));
        assert_eq!(
            c.url(&path, &[]).as_str(),
            "http://h:1/v1/threads/music%2Flibrary/records"
        );
    }

    #[test]
    fn decodes_the_api_error_envelope() {
        let body = json!({"object":"error","type":"invalid_request_error","code":"INGEST_FAILED",
                          "message":"DuplicateClock: thread=t actor=a clock=1","hint":"bump the clock"});
        let err = api_error(StatusCode::BAD_REQUEST, body.to_string().as_bytes());
        match err {
            ClientError::Api {
                status,
                code,
                message,
                hint,
            } => {
                assert_eq!(status, 400);
                assert_eq!(code, "INGEST_FAILED");
                assert!(message.starts_with("DuplicateClock:"));
                assert_eq!(hint.as_deref(), Some("bump the clock"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn falls_back_to_error_and_detail_members() {
        let body = br#"{"error":"precondition_failed","detail":"version mismatch"}"#;
        let ClientError::Api {
            code,
            message,
            hint,
            ..
        } = api_error(StatusCode::CONFLICT, body)
        else {
            panic!()
        };
        assert_eq!(code, "precondition_failed");
        assert_eq!(message, "version mismatch");
        assert_eq!(hint, None);
    }

    #[test]
    fn non_json_errors_keep_status_and_body_prefix() {
        let body = "x".repeat(500);
        let ClientError::Api {
            status,
            code,
            message,
            ..
        } = api_error(StatusCode::BAD_GATEWAY, body.as_bytes())
        else {
            panic!()
        };
        assert_eq!(status, 502);
        assert_eq!(code, "HTTP_502");
        assert_eq!(message.len(), RAW_ERROR_PREFIX);

        let ClientError::Api { message, .. } = api_error(StatusCode::NOT_FOUND, b"") else {
            panic!()
        };
        assert_eq!(message, "Not Found");
    }

    #[test]
    fn reads_list_pages() {
        let page: ListPage<Value> =
            decode(br#"{"object":"list","data":[{"id":"a"}],"next_cursor":"Mg","has_more":true}"#)
                .unwrap();
        assert_eq!(page.data, vec![json!({"id":"a"})]);
        assert_eq!(page.next_cursor.as_deref(), Some("Mg"));
        assert!(page.has_more);

        let page: ListPage<Value> =
            decode(br#"{"object":"list","data":[],"next_cursor":null,"has_more":false}"#).unwrap();
        assert_eq!(page, ListPage::default());

        let page: ListPage<Value> = decode(br#"[{"id":"b"}]"#).unwrap();
        assert_eq!(page.data.len(), 1);

        assert!(matches!(
            decode::<ListPage<Value>>(br#"{"object":"list"}"#),
            Err(ClientError::Decode(_))
        ));
        assert!(matches!(
            decode::<ListPage<Value>>(br#""x""#),
            Err(ClientError::Decode(_))
        ));
    }

    #[test]
    fn replies_keep_the_json_as_sent_and_empty_bodies_read_as_null() {
        let answer: Reply<syncropel_api::SyncPair> = reply(
            StatusCode::CREATED,
            br#"{"object":"sync_pair","pair_id":"sp_1","state":"running"}"#,
        )
        .unwrap();
        assert_eq!(answer.state, "running");
        assert_eq!(
            answer.json(),
            &json!({"object":"sync_pair","pair_id":"sp_1","state":"running"})
        );
        assert_eq!(answer.status(), 201);
        let empty: Reply<Option<syncropel_api::SyncPair>> = reply(StatusCode::OK, b"").unwrap();
        assert_eq!(*empty, None);
        assert_eq!(empty.json(), &Value::Null);
        assert_eq!(empty.status(), 200);
        assert!(matches!(
            reply::<syncropel_api::SyncPair>(StatusCode::OK, b""),
            Err(ClientError::Decode(_))
        ));
    }
}
