//! Hosted stewards for tests: real replicas on 127.0.0.1:0 over a Postgres database of the test's
//! own, in this process ([`Replica`]) or as `steward` processes ([`Process`]).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use syncropel_steward::app::Limits;
use syncropel_steward::federation::FederationConfig;
use syncropel_steward::hosted::jwt::{JwtKey, JwtVerifier};
use syncropel_steward::hosted::kek::Kek;
use syncropel_steward::hosted::{
    build, DirectoryRegistration, Hosted, HostedOptions, Platform, PlatformConfig,
    DEFAULT_RESERVED_LABELS,
};
use syncropel_steward::rate_limit::RateLimits;
use syncropel_steward::tenant::Addressing;

pub const BASE_DOMAIN: &str = "steward.test";
pub const JWT_SECRET: &str = "a-platform-secret-of-at-least-32-bytes!";
pub const ISSUER: &str = "test-platform";
pub const AUDIENCE: &str = "syncropel-steward";
pub const KEK_HEX: &str = "3f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The knobs tests turn.
#[derive(Clone)]
pub struct Config {
    pub path_prefix: Option<String>,
    /// The key-encryption key (hex), and the previous one during a rotation.
    pub kek: String,
    pub previous_kek: Option<String>,
    pub tenant_limit: u32,
    pub deletion_grace: Duration,
    pub federation: FederationConfig,
    /// Register new tenants' did:sync at a directory.
    pub registration: Option<DirectoryRegistration>,
    /// With a path prefix: tenants' public URLs name this replica's own address
    /// (`http://127.0.0.1:PORT/t/<label>`), so that peers can call them.
    pub reachable_urls: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            path_prefix: None,
            kek: KEK_HEX.into(),
            previous_kek: None,
            tenant_limit: 3,
            deletion_grace: Duration::from_secs(30 * 24 * 3600),
            federation: FederationConfig::default(),
            registration: None,
            reachable_urls: false,
        }
    }
}

/// A platform JWT for `account`, valid for `ttl_secs` (negative: already expired).
pub fn jwt(account: &str) -> String {
    jwt_with(account, 600, ISSUER, AUDIENCE, JWT_SECRET)
}

pub fn jwt_with(account: &str, ttl_secs: i64, iss: &str, aud: &str, secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": account, "iss": iss, "aud": aud, "exp": now + ttl_secs, "iat": now});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The admin bearer of a tenant provisioned with `bootstrap_token`.
pub fn bootstrap_bearer(bootstrap_token: &str) -> String {
    format!("spl_prod_sa-bootstrap-env_{bootstrap_token}")
}

/// One hosted replica served from this process.
pub struct Replica {
    pub url: String,
    pub hosted: Hosted,
    pub config: Config,
    pub http: reqwest::Client,
}

impl Replica {
    pub async fn start(database_url: &str, config: Config) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base_domain = match (&config.path_prefix, config.reachable_urls) {
            (Some(_), true) => addr.to_string(),
            _ => BASE_DOMAIN.to_string(),
        };
        let options = HostedOptions {
            database_url: database_url.to_string(),
            platform: PlatformConfig {
                addressing: Addressing {
                    base_domain,
                    path_prefix: config.path_prefix.clone(),
                },
                public_scheme: "http".into(),
                env: "prod".into(),
                tenant_limit: config.tenant_limit,
                deletion_grace: config.deletion_grace,
                reserved_labels: DEFAULT_RESERVED_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                registration: config.registration.clone(),
            },
            kek: match &config.previous_kek {
                Some(previous) => Kek::parse(&config.kek)
                    .unwrap()
                    .with_previous(Kek::parse(previous).unwrap()),
                None => Kek::parse(&config.kek).unwrap(),
            },
            jwt: JwtVerifier::new(
                JwtKey::Hs256(JWT_SECRET.as_bytes().to_vec()),
                ISSUER,
                AUDIENCE,
            )
            .unwrap(),
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            heartbeat: Duration::from_secs(30),
            purge_interval: Duration::from_secs(3600),
            federation: config.federation.clone(),
        };
        let hosted = build(options).await.unwrap();
        let url = format!("http://{addr}");
        let app = hosted.app.clone();
        let shutdown = hosted.state.shutdown.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .unwrap();
        });
        Replica {
            url,
            hosted,
            config,
            http: reqwest::Client::new(),
        }
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.hosted.platform
    }

    /// Stops serving and closes the store (its pool must be gone before the database is dropped).
    pub async fn stop(self) {
        self.hosted.state.shutdown.cancel();
        self.hosted.state.store.close().await;
    }

    /// A request to the platform host.
    pub fn platform_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("host", BASE_DOMAIN)
    }

    /// A request to a tenant, by host or by path prefix as this replica is configured.
    pub fn tenant_request(
        &self,
        label: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        tenant_request(&self.http, &self.url, &self.config, label, method, path)
    }

    pub async fn provision(&self, account: &str, key: &str, body: &Value) -> (u16, Value) {
        send(
            self.platform_request(reqwest::Method::POST, "/provision")
                .bearer_auth(jwt(account))
                .header("idempotency-key", key)
                .json(body),
        )
        .await
    }

    /// Provisions `label` for `account` and returns the tenant's admin bearer.
    pub async fn new_tenant(&self, account: &str, label: &str) -> String {
        let bootstrap = format!("bootstrap-token-for-{label}");
        let (status, body) = self
            .provision(
                account,
                &format!("key-{label}"),
                &json!({"label": label, "bootstrap_token": bootstrap}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["phase"], "ready", "{body}");
        bootstrap_bearer(&bootstrap)
    }

    pub async fn tenant_post(
        &self,
        label: &str,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        send(
            self.tenant_request(label, reqwest::Method::POST, path)
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// Writes one record (`{"n": clock}`) to `thread` of a tenant.
    pub async fn write(&self, label: &str, token: &str, thread: &str, clock: i64) -> (u16, Value) {
        let record = crate::common::envelope(thread, clock, json!({"n": clock}));
        self.tenant_post(label, token, "/v1/records", &record).await
    }

    /// How many records a thread of a tenant holds, as its token reads them.
    pub async fn thread_len(&self, label: &str, token: &str, thread: &str) -> usize {
        let (status, listed) = self
            .tenant_get(label, token, &format!("/v1/records?thread={thread}"))
            .await;
        assert_eq!(status, 200, "{listed}");
        listed["data"].as_array().unwrap().len()
    }

    pub async fn tenant_get(&self, label: &str, token: &str, path: &str) -> (u16, Value) {
        send(
            self.tenant_request(label, reqwest::Method::GET, path)
                .bearer_auth(token),
        )
        .await
    }
}

pub fn tenant_request(
    http: &reqwest::Client,
    url: &str,
    config: &Config,
    label: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    match &config.path_prefix {
        Some(prefix) => http.request(method, format!("{url}{prefix}/{label}{path}")),
        None => http
            .request(method, format!("{url}{path}"))
            .header("host", format!("{label}.{BASE_DOMAIN}")),
    }
}

/// Sends a request; status and JSON body (`null` when not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A `steward` process serving `database_url`; killed when dropped.
pub struct Process {
    pub url: String,
    pub child: Child,
    _log: tempfile::NamedTempFile,
}

impl Process {
    /// Starts a replica on 127.0.0.1:0 and waits (at most 30 s) until it logs the address it bound.
    pub async fn start(database_url: &str) -> Process {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--base-domain",
                BASE_DOMAIN,
                "--public-scheme",
                "http",
                "--rate-limit-per-address",
                "0",
                "--rate-limit-per-token",
                "0",
                "--jwt-issuer",
                ISSUER,
                "--jwt-audience",
                AUDIENCE,
            ])
            .env("DATABASE_URL", database_url)
            .env("STEWARD_KEK", KEK_HEX)
            .env("STEWARD_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the steward binary runs");
        let mut process = Process {
            url: String::new(),
            child,
            _log: log,
        };
        for _ in 0..1500 {
            let text = std::fs::read_to_string(process._log.path()).unwrap();
            if let Some(rest) = text.split("addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                process.url = format!("http://{addr}");
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("the steward exited ({status}) before listening:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the steward did not listen within 30 s:\n{}",
            std::fs::read_to_string(process._log.path()).unwrap()
        );
    }

    /// SIGKILL: no drain, no shutdown hooks.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
