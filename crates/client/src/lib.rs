//! Typed async HTTP client for the Syncropel steward API.
//!
//! One client serves the `spl` CLI, the integration tests and the benchmarks, so every caller
//! sees the same URL building, authentication and error decoding. Records travel as
//! [`serde_json::Value`]: the protocol crate owns their typed form, and keeping the wire JSON
//! untouched here means a client never drops members a newer steward adds.
//!
//! Non-2xx answers are decoded from the ApiError envelope
//! (`{"object":"error","type","code","message","hint"?}`) into [`ClientError::Api`].

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// The steward's own clients use a 30 s request timeout (PROTOCOL §10.3); so do we.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a non-JSON error body is kept in the message: enough to recognise a proxy's error
/// page, not so much that a terminal fills with HTML.
const RAW_ERROR_PREFIX: usize = 200;

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
}

/// Filters and paging for record listings (PROTOCOL §11.3, §11.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub thread: Option<String>,
    pub actor: Option<String>,
    /// Inclusive lower bound on `clock`.
    pub since: Option<i64>,
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One page of a list answer (`{"object":"list","data","next_cursor","has_more"}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// A steward API client. Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

/// Never prints the token: clients end up in logs and panic messages.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the steward at `base_url` (which may carry a path prefix, for stewards that
    /// select the tenant by path), sending `token` as a bearer when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
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
        if let Some(token) = &token {
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::InvalidToken("it contains characters not allowed in a header")
            })?;
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("syncropel-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { base, token, http })
    }

    /// `POST /v1/records`: emits one envelope and returns the stored record (new or replayed).
    pub async fn emit(&self, envelope: &Value) -> Result<Value, ClientError> {
        self.post_json("/v1/records", envelope).await
    }

    /// `GET /v1/records/{id}`.
    pub async fn get_record(&self, id: &str) -> Result<Value, ClientError> {
        self.get_json(&format!("/v1/records/{}", encode_segment(id)))
            .await
    }

    /// `GET /v1/records`, filtered by `params`.
    pub async fn list_records(&self, params: &ListParams) -> Result<Page, ClientError> {
        let url = self.url("/v1/records", &list_query(params, true));
        page(self.send(Method::GET, url, None).await?)
    }

    /// `GET /v1/threads/{thread}/records`. `params.thread` and `params.actor` are ignored: the
    /// thread is in the path and this route has no actor filter.
    pub async fn thread_records(
        &self,
        thread: &str,
        params: &ListParams,
    ) -> Result<Page, ClientError> {
        let path = format!("/v1/threads/{}/records", encode_segment(thread));
        let url = self.url(&path, &list_query(params, false));
        page(self.send(Method::GET, url, None).await?)
    }

    /// `GET /v1/threads`: threads, most recently written first.
    pub async fn threads(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page, ClientError> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let url = self.url("/v1/threads", &query);
        page(self.send(Method::GET, url, None).await?)
    }

    /// `POST /v1/records/query` (rich filter); returns the whole answer (`data`, `plan`, ...).
    pub async fn query(&self, body: &Value) -> Result<Value, ClientError> {
        self.post_json("/v1/records/query", body).await
    }

    /// `POST /v1/records/search` (lexical search); returns the whole answer.
    pub async fn search(&self, body: &Value) -> Result<Value, ClientError> {
        self.post_json("/v1/records/search", body).await
    }

    /// `GET /health`: open liveness report. Answers whether a steward is there at all.
    pub async fn health(&self) -> Result<Value, ClientError> {
        self.get_json("/health").await
    }

    /// `GET /v1/health`: the authenticated full report.
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.get_json("/v1/health").await
    }

    /// `POST` JSON to any route, for admin routes without a typed method. `path` starts with `/`,
    /// may carry a `?query`, and must already be percent-encoded (see [`encode_segment`]).
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.raw_url(path);
        self.send(Method::POST, url, Some(body)).await
    }

    /// `GET` any route; `path` as for [`Client::post_json`].
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.raw_url(path);
        self.send(Method::GET, url, None).await
    }

    /// `DELETE` any route; `path` as for [`Client::post_json`]. An empty 2xx body yields `null`.
    pub async fn delete_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.raw_url(path);
        self.send(Method::DELETE, url, None).await
    }

    /// Like [`Client::post_json`], but also returns the 2xx status, for routes whose answer
    /// differs by it (e.g. `200` done vs `202` accepted-and-pending).
    pub async fn post_json_with_status(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), ClientError> {
        let url = self.raw_url(path);
        self.send_with_status(Method::POST, url, Some(body)).await
    }

    /// The base URL with `path` appended and `query` pairs form-encoded.
    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Like [`Client::url`] for a caller-supplied `path?query` string.
    fn raw_url(&self, path_and_query: &str) -> Url {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut url = self.url(path, &[]);
        url.set_query(query);
        url
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (_, value) = self.send_with_status(method, url, body).await?;
        Ok(value)
    }

    /// Sends one request; a 2xx answer yields its status and JSON body (`null` when empty).
    async fn send_with_status(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| ClientError::Decode(format!("cannot encode request: {e}")))?;
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status.as_u16(), Value::Null));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode(format!("response is not JSON: {e}")))?;
        Ok((status.as_u16(), value))
    }
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

fn list_query(params: &ListParams, with_filters: bool) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if with_filters {
        if let Some(thread) = &params.thread {
            query.push(("thread", thread.clone()));
        }
        if let Some(actor) = &params.actor {
            query.push(("actor", actor.clone()));
        }
    }
    if let Some(since) = params.since {
        query.push(("since", since.to_string()));
    }
    if let Some(limit) = params.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &params.cursor {
        query.push(("cursor", cursor.clone()));
    }
    query
}

/// Reads a list answer. A bare array is accepted too, as the Python SDK does.
fn page(value: Value) -> Result<Page, ClientError> {
    match value {
        Value::Array(data) => Ok(Page {
            data,
            next_cursor: None,
            has_more: false,
        }),
        Value::Object(mut object) => {
            let data = match object.remove("data") {
                Some(Value::Array(data)) => data,
                _ => {
                    return Err(ClientError::Decode(
                        "list answer has no `data` array".into(),
                    ))
                }
            };
            let next_cursor = match object.remove("next_cursor") {
                Some(Value::String(cursor)) => Some(cursor),
                _ => None,
            };
            let has_more = matches!(object.get("has_more"), Some(Value::Bool(true)));
            Ok(Page {
                data,
                next_cursor,
                has_more,
            })
        }
        other => Err(ClientError::Decode(format!(
            "expected a list answer, got {}",
            syncropel_protocol::json_type_name(&other)
        ))),
    }
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
    }

    #[test]
    fn raw_paths_keep_their_query() {
        let c = client("http://h:1");
        assert_eq!(
            c.raw_url("/v1/service-accounts?limit=5").as_str(),
            "http://h:1/v1/service-accounts?limit=5"
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
    fn list_params_become_query_pairs() {
        let params = ListParams {
            thread: Some("th_x".into()),
            actor: Some("did:key:z6Mk+1".into()),
            since: Some(5),
            limit: Some(10),
            cursor: Some("AAA=".into()),
        };
        let c = client("http://h:1");
        assert_eq!(
            c.url("/v1/records", &list_query(&params, true)).as_str(),
            "http://h:1/v1/records?thread=th_x&actor=did%3Akey%3Az6Mk%2B1&since=5&limit=10&cursor=AAA%3D"
        );
        assert_eq!(
            c.url("/v1/threads/th_x/records", &list_query(&params, false))
                .as_str(),
            "http://h:1/v1/threads/th_x/records?since=5&limit=10&cursor=AAA%3D"
        );
        assert_eq!(
            c.url("/v1/records", &list_query(&ListParams::default(), true))
                .as_str(),
            "http://h:1/v1/records"
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
        let p =
            page(json!({"object":"list","data":[{"id":"a"}],"next_cursor":"Mg","has_more":true}))
                .unwrap();
        assert_eq!(p.data, vec![json!({"id":"a"})]);
        assert_eq!(p.next_cursor.as_deref(), Some("Mg"));
        assert!(p.has_more);

        let p =
            page(json!({"object":"list","data":[],"next_cursor":null,"has_more":false})).unwrap();
        assert_eq!(p, Page::default());

        let p = page(json!([{"id":"b"}])).unwrap();
        assert_eq!(p.data.len(), 1);

        assert!(matches!(
            page(json!({"object":"list"})),
            Err(ClientError::Decode(_))
        ));
        assert!(matches!(page(json!("x")), Err(ClientError::Decode(_))));
    }
}
