//! PeerClient against real tiny axum servers on 127.0.0.1, plus Backoff.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use syncropel_federation::{
    Backoff, ChangesPage, ChangesRequest, PeerClient, PeerClientOptions, PeerError,
};
use tokio::net::TcpSocket;

/// Serves `app` on 127.0.0.1 port 0 and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A port on 127.0.0.1 that refuses connections: bound but never listening, and held by the
/// returned socket so no other test can take it meanwhile.
fn refusing_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Awaits a request that must fail, and fail within `limit`; its error.
async fn fails_within<T: std::fmt::Debug>(
    limit: Duration,
    request: impl Future<Output = Result<T, PeerError>>,
) -> PeerError {
    let started = Instant::now();
    let err = request.await.unwrap_err();
    assert!(
        started.elapsed() < limit,
        "took {:?}: {err}",
        started.elapsed()
    );
    err
}

fn client(options: PeerClientOptions) -> PeerClient {
    PeerClient::new(options)
}

fn short(request_ms: u64) -> PeerClientOptions {
    PeerClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(request_ms),
        longpoll_timeout: Duration::from_millis(request_ms),
        ..PeerClientOptions::default()
    }
}

fn req<'a>(base: &'a str) -> ChangesRequest<'a> {
    ChangesRequest {
        base,
        token: "tok_secret",
        actor: "did:key:z6MkAlice",
        thread: "th_music",
        since: "",
        limit: 100,
        longpoll: false,
        target_namespace: None,
        consent_accepts: &[],
    }
}

/// A handler that answers only after every test deadline has passed.
async fn stall() -> &'static str {
    tokio::time::sleep(Duration::from_secs(10)).await;
    "{}"
}

/// A server answering the changes route with a fixed status and JSON text.
async fn changes_server(status: StatusCode, body: &'static str) -> String {
    let app = Router::new().route(
        "/v1/sync/changes",
        get(move || async move { (status, [("content-type", "application/json")], body) }),
    );
    serve(app).await
}

#[test]
fn defaults_match_the_spec() {
    let o = PeerClientOptions::default();
    assert_eq!(o.connect_timeout, Duration::from_secs(5));
    assert_eq!(o.request_timeout, Duration::from_secs(30));
    assert_eq!(o.longpoll_timeout, Duration::from_secs(40));
    assert_eq!(o.max_page_bytes, 8 * 1024 * 1024);
    assert!(o.allow_private);
}

#[test]
fn error_codes_and_statuses() {
    let cases = [
        (
            PeerError::ConnectRefused("x".into()),
            "CONNECT_REFUSED",
            None,
        ),
        (PeerError::Timeout("x".into()), "TIMEOUT", None),
        (PeerError::DnsFailure("x".into()), "DNS_FAILURE", None),
        (
            PeerError::Http4xx {
                status: 403,
                code: Some("CONSENT_DENIED".into()),
                message: "m".into(),
            },
            "HTTP_4XX",
            Some(403),
        ),
        (
            PeerError::Http5xx {
                status: 502,
                message: "m".into(),
            },
            "HTTP_5XX",
            Some(502),
        ),
        (PeerError::Parse("x".into()), "PARSE_ERROR", None),
        (PeerError::Forbidden("x".into()), "TARGET_FORBIDDEN", None),
    ];
    for (err, code, status) in cases {
        assert_eq!(err.code(), code);
        assert_eq!(err.http_status(), status);
    }
}

#[tokio::test]
async fn connection_refused() {
    let (_held, port) = refusing_port();
    let base = format!("http://127.0.0.1:{port}");
    let c = client(short(2000));
    let err = c.changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "CONNECT_REFUSED", "{err}");
    let err = c.manifest(&base).await.unwrap_err();
    assert_eq!(err.code(), "CONNECT_REFUSED", "{err}");
    let err = c
        .post_json(
            &format!("{base}/v1/federation/pair"),
            &json!({}),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "CONNECT_REFUSED", "{err}");
}

#[tokio::test]
async fn slow_handler_times_out() {
    let base = serve(Router::new().route("/v1/sync/changes", get(stall))).await;
    let client = client(short(300));
    let err = fails_within(Duration::from_secs(3), client.changes(&req(&base))).await;
    assert_eq!(err.code(), "TIMEOUT", "{err}");
}

#[tokio::test]
async fn longpoll_uses_the_longpoll_deadline() {
    let app = Router::new().route(
        "/v1/sync/changes",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            assert_eq!(q.get("feed").map(String::as_str), Some("longpoll"));
            stall().await
        }),
    );
    let base = serve(app).await;
    let options = PeerClientOptions {
        request_timeout: Duration::from_secs(20),
        longpoll_timeout: Duration::from_millis(300),
        ..PeerClientOptions::default()
    };
    let client = client(options);
    let request = ChangesRequest {
        longpoll: true,
        ..req(&base)
    };
    let err = fails_within(Duration::from_secs(3), client.changes(&request)).await;
    assert_eq!(err.code(), "TIMEOUT", "{err}");
}

#[tokio::test]
async fn endless_body_stops_at_the_page_limit() {
    let app = Router::new().route(
        "/v1/sync/changes",
        get(|| async {
            let chunks =
                futures_util::stream::repeat_with(|| Ok::<_, Infallible>(vec![b' '; 4096]));
            Body::from_stream(chunks)
        }),
    );
    let base = serve(app).await;
    let options = PeerClientOptions {
        max_page_bytes: 64 * 1024,
        ..short(5000)
    };
    let client = client(options);
    let err = fails_within(Duration::from_secs(4), client.changes(&req(&base))).await;
    assert_eq!(err.code(), "PARSE_ERROR", "{err}");
    assert!(err.to_string().contains("larger than 65536"), "{err}");
}

#[tokio::test]
async fn declared_oversize_body_is_refused() {
    let app = Router::new().route("/v1/sync/changes", get(|| async { vec![b' '; 100_000] }));
    let base = serve(app).await;
    let options = PeerClientOptions {
        max_page_bytes: 1000,
        ..short(5000)
    };
    let err = client(options).changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "PARSE_ERROR", "{err}");
    assert!(err.to_string().contains("larger than 1000"), "{err}");
}

#[tokio::test]
async fn body_still_streaming_at_the_deadline_is_timeout() {
    let app = Router::new().route(
        "/v1/sync/changes",
        get(|| async {
            let chunks = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, Infallible>(b"          ".to_vec()), ()))
            });
            Body::from_stream(chunks)
        }),
    );
    let base = serve(app).await;
    let err = client(short(500)).changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "TIMEOUT", "{err}");
}

#[tokio::test]
async fn malformed_json_is_parse_error() {
    let base = changes_server(StatusCode::OK, "{\"object\":\"sync_changes\",").await;
    let err = client(short(5000)).changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "PARSE_ERROR", "{err}");
    assert!(err.to_string().contains("malformed JSON"), "{err}");
}

#[tokio::test]
async fn wrong_shapes_are_parse_errors() {
    let bodies: [(&'static str, &str); 9] = [
        ("[]", "not a JSON object"),
        (
            r#"{"object":"error","thread":"th_music","records":[],"next_cursor":"","has_more":false}"#,
            "object is",
        ),
        (
            r#"{"records":[],"next_cursor":"","has_more":false}"#,
            "thread must be a string",
        ),
        (
            r#"{"thread":"th_other","records":[],"next_cursor":"","has_more":false}"#,
            "not the requested",
        ),
        (
            r#"{"thread":"th_music","records":{},"next_cursor":"","has_more":false}"#,
            "records must be an array",
        ),
        (
            r#"{"thread":"th_music","records":[1],"next_cursor":"","has_more":false}"#,
            "records[0]",
        ),
        (
            r#"{"thread":"th_music","records":[],"has_more":false}"#,
            "next_cursor must be a string",
        ),
        (
            r#"{"thread":"th_music","records":[],"next_cursor":"c","has_more":"no"}"#,
            "has_more must be a boolean",
        ),
        (
            r#"{"thread":"th_music","records":[],"next_cursor":"","has_more":true}"#,
            "loop",
        ),
    ];
    let c = client(short(5000));
    for (body, detail) in bodies {
        let base = changes_server(StatusCode::OK, body).await;
        let err = c.changes(&req(&base)).await.unwrap_err();
        assert_eq!(err.code(), "PARSE_ERROR", "{body}: {err}");
        assert!(err.to_string().contains(detail), "{body}: {err}");
    }
}

#[tokio::test]
async fn api_error_404_is_http_4xx_with_code() {
    let base = changes_server(
        StatusCode::NOT_FOUND,
        r#"{"object":"error","type":"not_found","code":"THREAD_NOT_ALLOWED","message":"thread is never served"}"#,
    )
    .await;
    let err = client(short(5000)).changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "HTTP_4XX", "{err}");
    assert_eq!(err.http_status(), Some(404));
    assert_eq!(
        err,
        PeerError::Http4xx {
            status: 404,
            code: Some("THREAD_NOT_ALLOWED".into()),
            message: "thread is never served".into(),
        }
    );
}

#[tokio::test]
async fn plain_4xx_keeps_the_body_text() {
    let base = changes_server(StatusCode::UNAUTHORIZED, "go away").await;
    let err = client(short(5000)).changes(&req(&base)).await.unwrap_err();
    assert_eq!(
        err,
        PeerError::Http4xx {
            status: 401,
            code: None,
            message: "go away".into()
        }
    );
}

#[tokio::test]
async fn status_503_is_http_5xx() {
    let base = changes_server(StatusCode::SERVICE_UNAVAILABLE, "").await;
    let err = client(short(5000)).changes(&req(&base)).await.unwrap_err();
    assert_eq!(err.code(), "HTTP_5XX", "{err}");
    assert_eq!(err.http_status(), Some(503));
    assert!(matches!(err, PeerError::Http5xx { status: 503, .. }));
}

type Seen = Arc<Mutex<Option<(String, HashMap<String, String>, HeaderMap)>>>;

#[tokio::test]
async fn good_page_parses_with_prefix_encoding_and_headers() {
    let seen: Seen = Arc::default();
    let record = json!({"id": "ab12", "record": {"thread": "th a&b=c", "body": {"n": 1}}});
    let page = json!({
        "object": "sync_changes", "thread": "th a&b=c", "records": [record.clone()],
        "next_cursor": "eyJ2IjoxfQ+/=", "has_more": true,
    });
    let app = Router::new().route(
        "/t/alice/v1/sync/changes",
        get({
            let seen = seen.clone();
            let page = page.clone();
            move |RawQuery(raw): RawQuery,
                  Query(q): Query<HashMap<String, String>>,
                  headers: HeaderMap| async move {
                *seen.lock().unwrap() = Some((raw.unwrap_or_default(), q, headers));
                Json(page)
            }
        }),
    );
    let base = format!("{}/t/alice/", serve(app).await);
    let accepts = ["eyJhIjox".to_string(), "eyJiIjoy".to_string()];
    let request = ChangesRequest {
        thread: "th a&b=c",
        since: "cur+/=&x",
        limit: 250,
        longpoll: true,
        target_namespace: Some("alice music"),
        consent_accepts: &accepts,
        ..req(&base)
    };
    let got = client(short(5000)).changes(&request).await.unwrap();
    assert_eq!(
        got,
        ChangesPage {
            thread: "th a&b=c".into(),
            records: vec![record],
            next_cursor: "eyJ2IjoxfQ+/=".into(),
            has_more: true,
        }
    );
    let (raw, q, headers) = seen.lock().unwrap().take().expect("handler was hit");
    assert!(!raw.contains("a&b"), "query not encoded: {raw}");
    assert_eq!(q["thread"], "th a&b=c");
    assert_eq!(q["since"], "cur+/=&x");
    assert_eq!(q["limit"], "250");
    assert_eq!(q["feed"], "longpoll");
    assert_eq!(q["target_namespace"], "alice music");
    assert_eq!(headers["authorization"], "Bearer tok_secret");
    assert_eq!(headers["x-syncropel-actor"], "did:key:z6MkAlice");
    assert_eq!(headers["x-syncropel-consent-accept"], "eyJhIjox,eyJiIjoy");
}

#[tokio::test]
async fn normal_feed_without_namespace() {
    let seen: Seen = Arc::default();
    let app = Router::new().route(
        "/v1/sync/changes",
        get({
            let seen = seen.clone();
            move |RawQuery(raw): RawQuery, Query(q): Query<HashMap<String, String>>, headers: HeaderMap| async move {
                *seen.lock().unwrap() = Some((raw.unwrap_or_default(), q, headers));
                Json(json!({"thread": "th_music", "records": [], "next_cursor": "", "has_more": false}))
            }
        }),
    );
    let base = serve(app).await;
    let page = client(short(5000)).changes(&req(&base)).await.unwrap();
    assert!(page.records.is_empty() && !page.has_more);
    let (_, q, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(q["feed"], "normal");
    assert_eq!(q["since"], "");
    assert!(!q.contains_key("target_namespace"));
}

#[tokio::test]
async fn unknown_host_is_dns_failure() {
    for allow_private in [true, false] {
        let c = client(PeerClientOptions {
            allow_private,
            ..short(8000)
        });
        for err in [
            c.changes(&req("http://no-such-host.invalid"))
                .await
                .unwrap_err(),
            c.manifest("http://no-such-host.invalid/")
                .await
                .unwrap_err(),
        ] {
            assert_eq!(
                err.code(),
                "DNS_FAILURE",
                "allow_private={allow_private}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn hosted_policy_refuses_private_targets() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = |hits: Arc<AtomicUsize>| {
        move || async move {
            hits.fetch_add(1, Ordering::SeqCst);
            Json(json!({"thread": "th_music", "records": [], "next_cursor": "", "has_more": false}))
        }
    };
    let app = Router::new()
        .route("/v1/sync/changes", get(counted(hits.clone())))
        .route("/.well-known/syncropel", get(counted(hits.clone())))
        .route("/p", post(counted(hits.clone())));
    let base = serve(app).await;
    let port = base.rsplit(':').next().unwrap().to_string();

    // The same server is reachable when private targets are allowed …
    let local = client(short(5000));
    local.changes(&req(&base)).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // … and refused, without a request, when they are not.
    let hosted = client(PeerClientOptions {
        allow_private: false,
        ..short(5000)
    });
    for target in [
        base.clone(),
        format!("http://localhost:{port}"),
        format!("http://LocalHost.:{port}/t/x"),
        format!("http://[::1]:{port}"),
        format!("http://0.0.0.0:{port}"),
        format!("http://10.0.0.1:{port}"),
        format!("http://169.254.169.254:{port}"),
    ] {
        let err = hosted.changes(&req(&target)).await.unwrap_err();
        assert_eq!(err.code(), "TARGET_FORBIDDEN", "{target}: {err}");
    }
    let err = hosted.manifest(&base).await.unwrap_err();
    assert_eq!(err.code(), "TARGET_FORBIDDEN", "{err}");
    let err = hosted
        .post_json(&format!("{base}/p"), &json!({}), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "TARGET_FORBIDDEN", "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn manifest_fetch() {
    let seen_path = Arc::new(Mutex::new(String::new()));
    let app = Router::new()
        .route(
            "/t/bob/.well-known/syncropel",
            get({
                let seen_path = seen_path.clone();
                move |uri: axum::http::Uri| async move {
                    *seen_path.lock().unwrap() = uri.to_string();
                    Json(json!({"object": "federation_manifest", "daemon": {"did": "did:web:bob"}}))
                }
            }),
        )
        .route(
            "/array/.well-known/syncropel",
            get(|| async { Json(json!([1, 2])) }),
        )
        .route(
            "/huge/.well-known/syncropel",
            get(|| async { vec![b' '; 1024 * 1024 + 1] }),
        )
        .route(
            "/html/.well-known/syncropel",
            get(|| async { "<html>hi</html>" }),
        );
    let base = serve(app).await;
    let c = client(short(5000));
    let m = c.manifest(&format!("{base}/t/bob?x=1")).await.unwrap();
    assert_eq!(m["daemon"]["did"], "did:web:bob");
    assert_eq!(*seen_path.lock().unwrap(), "/t/bob/.well-known/syncropel");
    for (path, detail) in [
        ("/array", "not a JSON object"),
        ("/huge", "larger than 1048576"),
        ("/html", "malformed JSON"),
    ] {
        let err = c.manifest(&format!("{base}{path}")).await.unwrap_err();
        assert_eq!(err.code(), "PARSE_ERROR", "{path}: {err}");
        assert!(err.to_string().contains(detail), "{path}: {err}");
    }
    let err = c.manifest(&format!("{base}/missing")).await.unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
}

#[tokio::test]
async fn post_json_returns_status_and_body() {
    let app = Router::new()
        .route(
            "/ok",
            post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                Json(json!({
                    "echo": body,
                    "auth": headers.get("authorization").map(|v| v.to_str().unwrap().to_string()),
                    "actor": headers.get("x-syncropel-actor").map(|v| v.to_str().unwrap().to_string()),
                }))
            }),
        )
        .route(
            "/conflict",
            post(|| async {
                (
                    StatusCode::CONFLICT,
                    Json(json!({"object": "error", "code": "PAIR_EXISTS", "message": "already paired"})),
                )
            }),
        )
        .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
        .route("/bad", post(|| async { "not json" }))
        .route("/bad502", post(|| async { (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response() }))
        .route("/slow", post(stall));
    let base = serve(app).await;
    let c = client(short(500));

    let (status, body) = c
        .post_json(
            &format!("{base}/ok"),
            &json!({"n": 1}),
            Some("tok"),
            Some("did:key:z6MkA"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"echo": {"n": 1}, "auth": "Bearer tok", "actor": "did:key:z6MkA"})
    );

    let (status, body) = c
        .post_json(&format!("{base}/ok"), &json!(null), None, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!({"echo": null, "auth": null, "actor": null}));

    // An empty object to one path of the server, no token or actor.
    let post = |path: &str| {
        let (c, url) = (&c, format!("{base}{path}"));
        async move { c.post_json(&url, &json!({}), None, None).await }
    };
    let (status, body) = post("/conflict").await.unwrap();
    assert_eq!(status, 409);
    assert_eq!(body["code"], "PAIR_EXISTS");
    assert_eq!(post("/empty").await.unwrap(), (204, Value::Null));
    assert_eq!(
        post("/bad502").await.unwrap(),
        (502, json!("<html>bad gateway</html>"))
    );
    let err = post("/bad").await.unwrap_err();
    assert_eq!(err.code(), "PARSE_ERROR", "{err}");
    let err = post("/slow").await.unwrap_err();
    assert_eq!(err.code(), "TIMEOUT", "{err}");

    let err = c
        .post_json("not a url", &json!({}), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "PARSE_ERROR", "{err}");
}

#[test]
fn backoff_grows_caps_and_resets() {
    let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
    assert_eq!(b.failures(), 0);
    assert_eq!(b.ceiling(), Duration::ZERO);
    let expected = [2u64, 4, 8, 16, 32, 64, 128, 256, 300, 300];
    for (i, secs) in expected.into_iter().enumerate() {
        let delay = b.failed();
        assert_eq!(b.failures(), i as u32 + 1);
        assert_eq!(
            b.ceiling(),
            Duration::from_secs(secs),
            "after {} failures",
            i + 1
        );
        assert!(delay <= b.ceiling());
    }
    for _ in 0..100 {
        b.failed();
    }
    assert_eq!(b.failures(), 110);
    assert_eq!(
        b.ceiling(),
        Duration::from_secs(300),
        "no overflow past the cap"
    );
    b.reset();
    assert_eq!(b.failures(), 0);
    b.failed();
    assert_eq!(b.ceiling(), Duration::from_secs(2));
    assert_eq!(
        Backoff::default(),
        Backoff::new(Duration::from_secs(2), Duration::from_secs(300))
    );
}

#[test]
fn backoff_delays_are_jittered_within_the_ceiling() {
    for failures in 1..=12u32 {
        let mut samples = Vec::new();
        for _ in 0..500 {
            let mut b = Backoff::default();
            let mut delay = Duration::ZERO;
            for _ in 0..failures {
                delay = b.failed();
            }
            assert!(delay <= b.ceiling(), "{delay:?} > {:?}", b.ceiling());
            samples.push(delay);
        }
        let ceiling = Backoff::default().ceiling_after(failures);
        let max = samples.iter().max().unwrap();
        let min = samples.iter().min().unwrap();
        // Full jitter: spread over the whole range, not pinned to the ceiling.
        assert!(*max > ceiling / 2, "failures={failures}: max {max:?}");
        assert!(*min < ceiling / 2, "failures={failures}: min {min:?}");
    }
}

trait CeilingAfter {
    fn ceiling_after(self, failures: u32) -> Duration;
}

impl CeilingAfter for Backoff {
    fn ceiling_after(mut self, failures: u32) -> Duration {
        for _ in 0..failures {
            self.failed();
        }
        self.ceiling()
    }
}
