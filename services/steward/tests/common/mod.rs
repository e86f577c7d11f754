//! A real steward on 127.0.0.1:0 over a real SQLite file, for HTTP tests.

#![allow(dead_code)] // each test binary uses a different part of the kit

pub mod hosted;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use syncropel_federation::{renewal, Federation, FederationConfig, PeerTimeouts, Shared};
use syncropel_protocol::Keypair;
use syncropel_steward::app::{router, AppState, Limits};
use syncropel_steward::rate_limit::{RateLimiters, RateLimits};
use syncropel_steward::tenant::{Tenancy, Tenant, TenantStatus};
use syncropel_store::{RecordStore, SqliteStore};
use syncropel_tenant::{
    create_service_account, mint, Identity, Namespaces, TokenCache, LOCAL_TOKEN_CACHE_TTL,
};
use tokio_util::sync::CancellationToken;

pub const TENANT: &str = "local";

pub struct TestSteward {
    pub url: String,
    pub state: AppState,
    /// The steward's one tenant (its identity signs every record).
    pub tenant: Arc<Tenant>,
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

pub struct Options {
    pub limits: Limits,
    pub auth: bool,
    pub heartbeat: Duration,
    pub search: bool,
    pub rate_limits: RateLimits,
    pub federation: FederationConfig,
    /// The identity key (default: a new one).
    pub keypair: Option<Keypair>,
    /// A whole identity (a did:sync or did:web one); wins over `keypair`.
    pub identity: Option<Identity>,
    /// The address to bind (default: 127.0.0.1:0).
    pub addr: Option<SocketAddr>,
    /// The directory of the store (default: a new temporary one); reusing one reopens its store.
    pub dir: Option<tempfile::TempDir>,
    /// Resume the pull jobs of the store's cursor rows at start, as `spl serve` does.
    pub resume_jobs: bool,
    /// Run the pair token renewal loop (every `federation.renewal_interval`), as `spl serve`
    /// does.
    pub renewal: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            auth: true,
            heartbeat: Duration::from_secs(30),
            search: true,
            rate_limits: RateLimits::default(),
            federation: FederationConfig::default(),
            keypair: None,
            identity: None,
            addr: None,
            dir: None,
            resume_jobs: false,
            renewal: false,
        }
    }
}

/// The path of the store file in a steward's directory.
pub fn store_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("hub.db")
}

impl TestSteward {
    pub async fn start() -> TestSteward {
        TestSteward::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestSteward {
        let dir = match options.dir {
            Some(dir) => dir,
            None => tempfile::tempdir().unwrap(),
        };
        let store: Arc<dyn RecordStore> = Arc::new(
            SqliteStore::open_file(&store_path(dir.path()))
                .await
                .unwrap(),
        );
        let bind = options
            .addr
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let tenant = Arc::new(
            Tenant::new(
                TENANT.to_string(),
                options.identity.unwrap_or_else(|| {
                    Identity::new(options.keypair.unwrap_or_else(Keypair::generate))
                }),
                TenantStatus::Active,
                false,
            )
            .with_url(url.clone()),
        );
        let shutdown = CancellationToken::new();
        let tokens = Arc::new(TokenCache::new(LOCAL_TOKEN_CACHE_TTL));
        let namespaces = Arc::new(Namespaces::default());
        let federation = Arc::new(Federation::new(
            options.federation,
            Shared {
                store: store.clone(),
                namespaces: namespaces.clone(),
                tokens: tokens.clone(),
                env: "test".into(),
                shutdown: shutdown.clone(),
            },
        ));
        let state = AppState {
            store,
            tenancy: Tenancy::Single(tenant.clone()),
            env: "test".into(),
            auth_enforced: options.auth,
            tokens,
            namespaces,
            limits: options.limits,
            rate_limits: Arc::new(RateLimiters::new(options.rate_limits)),
            search_enabled: options.search,
            heartbeat: options.heartbeat,
            shutdown,
            federation,
        };
        if options.resume_jobs {
            state.federation.resume_jobs(tenant.clone()).await.unwrap();
        }
        if options.renewal {
            let every = state.federation.config.renewal_interval;
            renewal::spawn(state.federation.clone(), tenant.clone(), every);
        }
        let app = router(state.clone());
        let shutdown = state.shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .unwrap();
        });
        TestSteward {
            url,
            state,
            tenant,
            http: reqwest::Client::new(),
            addr,
            server,
            dir,
        }
    }

    /// The steward's instance DID.
    pub fn did(&self) -> String {
        self.tenant.identity.did.to_string()
    }

    /// Stops the steward (its server, pull jobs and store) and hands back its directory and
    /// key, to start it again over the same store.
    pub async fn stop(self) -> (tempfile::TempDir, Keypair) {
        self.state.shutdown.cancel();
        let _ = self.server.await;
        self.state.store.close().await;
        (self.dir, (*self.tenant.identity.key).clone())
    }

    /// Creates a service account with `scopes` (and allowed actors) and returns a token for it.
    pub async fn token(&self, scopes: &[&str], actors: &[&str]) -> String {
        self.token_named("test", scopes, actors).await
    }

    /// [`TestSteward::token`] for an account of the given name.
    pub async fn token_named(&self, name: &str, scopes: &[&str], actors: &[&str]) -> String {
        let sa = create_service_account(
            self.state.store.as_ref(),
            TENANT,
            &self.tenant.identity,
            name,
            scopes.iter().map(|s| s.to_string()).collect(),
            actors.iter().map(|s| s.to_string()).collect(),
        )
        .await
        .unwrap();
        mint(
            self.state.store.as_ref(),
            TENANT,
            &self.tenant.identity,
            "test",
            &sa.id,
            None,
        )
        .await
        .unwrap()
        .token
    }

    pub async fn admin(&self) -> String {
        self.token(&["admin"], &[]).await
    }

    /// Sends a request and returns its status and JSON body (`null` when the body is not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body);
        self.send(request).await
    }

    pub async fn post_raw(
        &self,
        token: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let request = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token);
        self.send(request).await
    }

    /// How many client records the tenant holds (through the API, leaving out the steward's own
    /// audit trail), to prove a refusal wrote nothing.
    pub async fn record_count(&self, token: &str) -> usize {
        let (status, body) = self.get(token, "/v1/records?limit=1000").await;
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["thread"].as_str().unwrap().starts_with("th_audit_"))
            .count()
    }
}

/// A minimal valid envelope.
pub fn envelope(thread: &str, clock: i64, body: Value) -> Value {
    json!({
        "act": "DO",
        "actor": "did:example:test",
        "body": body,
        "clock": clock,
        "data_type": "SCALAR",
        "parents": [],
        "thread": thread,
    })
}

/// Asserts the ApiError envelope and returns its code.
pub fn error_code(body: &Value) -> &str {
    assert_eq!(body["object"], "error", "{body}");
    assert!(body["type"].is_string(), "{body}");
    assert!(body["message"].is_string(), "{body}");
    body["code"].as_str().expect("code")
}

/// Short federation intervals for tests: 200 ms polls, 50 ms -> 400 ms backoff, 2 s longpoll
/// holds, peer timeouts of 2 s (connect), 5 s (request) and 6 s (longpoll).
pub fn quick_federation() -> FederationConfig {
    let ms = Duration::from_millis;
    FederationConfig {
        poll_interval: ms(200),
        backoff_base: ms(50),
        backoff_cap: ms(400),
        peer_timeouts: PeerTimeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
            longpoll: Duration::from_secs(6),
        },
        longpoll_hold: Duration::from_secs(2),
        ..FederationConfig::default()
    }
}

/// Polls `check` every 25 ms until it answers; fails the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
