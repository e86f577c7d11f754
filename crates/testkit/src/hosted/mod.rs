//! Hosted stewards for tests: real replicas on 127.0.0.1 over a Postgres database of the test's
//! own, in this process ([`Replica`]) or as `steward` processes ([`Process`]), and a
//! [`Balancer`] in front of them.

mod balancer;
mod process;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue, HOST};
use serde_json::{json, Value};
use syncropel_client::api::Provision;
use syncropel_client::{encode_segment, Client};
use syncropel_federation::FederationConfig;
use syncropel_steward::hosted::addressing::Addressing;
use syncropel_steward::hosted::jwt::{JwtKey, JwtVerifier};
use syncropel_steward::hosted::kek::Kek;
use syncropel_steward::hosted::leases::Leases;
use syncropel_steward::hosted::{
    build, DirectoryRegistration, HostedOptions, Platform, PlatformConfig, DEFAULT_RESERVED_LABELS,
};
use syncropel_steward::rate_limit::RateLimits;
use syncropel_steward::state::{AppState, Limits};
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;

pub use balancer::Balancer;
pub use process::Process;

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
    pub moved_kept: Duration,
    pub federation: FederationConfig,
    /// Register new tenants' did:sync at a directory.
    pub registration: Option<DirectoryRegistration>,
    /// With a path prefix: tenants' public URLs name this replica's own address
    /// (`http://127.0.0.1:PORT/t/<label>`), so that peers can call them.
    pub reachable_urls: bool,
    pub limits: Limits,
    pub rate_limits: RateLimits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            path_prefix: None,
            kek: KEK_HEX.into(),
            previous_kek: None,
            tenant_limit: 3,
            deletion_grace: Duration::from_secs(30 * 24 * 3600),
            moved_kept: Duration::from_secs(30 * 24 * 3600),
            federation: FederationConfig::default(),
            registration: None,
            reachable_urls: false,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
        }
    }
}

/// A platform JWT for `account`, valid for ten minutes.
pub fn jwt(account: &str) -> String {
    jwt_with(account, 600, ISSUER, AUDIENCE, JWT_SECRET)
}

/// A platform JWT valid for `ttl_secs` (negative: already expired), with the claims and key
/// given.
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
    /// The state the replica serves.
    pub state: AppState,
    /// This replica's leases on pull jobs.
    pub leases: Arc<Leases>,
    pub http: reqwest::Client,
    config: Config,
    platform: Arc<Platform>,
    server: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// Builds a replica over `database_url` (migrating it) and serves it on a port of its own,
    /// as the `steward` binary does.
    pub async fn start(database_url: &str, config: Config) -> Replica {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base_domain = match (&config.path_prefix, config.reachable_urls) {
            (Some(_), true) => addr.to_string(),
            _ => BASE_DOMAIN.to_string(),
        };
        let kek = Kek::parse(&config.kek).unwrap();
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
                moved_kept: config.moved_kept,
                reserved_labels: DEFAULT_RESERVED_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                registration: config.registration.clone(),
            },
            kek: match &config.previous_kek {
                Some(previous) => kek.with_previous(Kek::parse(previous).unwrap()),
                None => kek,
            },
            jwt: JwtVerifier::new(
                JwtKey::Hs256(JWT_SECRET.as_bytes().to_vec()),
                ISSUER,
                AUDIENCE,
            )
            .unwrap(),
            limits: config.limits,
            rate_limits: config.rate_limits,
            cors_origins: Vec::new(),
            heartbeat: Duration::from_secs(30),
            purge_interval: Duration::from_secs(3600),
            federation: config.federation.clone(),
        };
        let hosted = build(options).await.unwrap();
        let (state, platform, leases) = (
            hosted.state.clone(),
            hosted.platform.clone(),
            hosted.leases.clone(),
        );
        let server = tokio::spawn(async move {
            hosted
                .run(
                    listener,
                    None,
                    Drain::default(),
                    ConnectionLimits::default(),
                )
                .await
                .expect("the replica stops cleanly");
        });
        Replica {
            url: format!("http://{addr}"),
            state,
            leases,
            config,
            http: reqwest::Client::new(),
            platform,
            server,
        }
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Stops the replica as SIGTERM would: it hands back its leases, drains and closes its
    /// store (whose pool must be gone before the database is dropped).
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        self.server.await.expect("the replica's task");
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

    /// A typed client of the platform host, with `account`'s platform JWT.
    pub fn platform_client(&self, account: &str) -> Client {
        client_with_host(&self.url, BASE_DOMAIN, &jwt(account))
    }

    /// A typed client of a tenant, sending `token`.
    pub fn tenant_client(&self, label: &str, token: &str) -> Client {
        match &self.config.path_prefix {
            Some(prefix) => Client::with_http(
                self.http.clone(),
                &format!("{}{prefix}/{label}", self.url),
                Some(token),
            )
            .unwrap(),
            None => client_with_host(&self.url, &format!("{label}.{BASE_DOMAIN}"), token),
        }
    }

    /// The provisioning `id` (phases, tenant status, DID and URL) as `account` sees it (`200`).
    pub async fn provision_status(&self, account: &str, id: &str) -> Provision {
        let described = self
            .platform_client(account)
            .provision_status(id)
            .await
            .unwrap_or_else(|e| panic!("provisioning {id}: {e}"));
        assert_eq!(described.status(), 200, "{}", described.json());
        described.into_value()
    }

    /// `POST /provision` as `account` with the idempotency `key`, raw: its status tells a new
    /// tenant from a retry and a refusal.
    pub async fn provision(&self, account: &str, key: &str, body: &Value) -> (u16, Value) {
        crate::send(
            self.platform_request(reqwest::Method::POST, "/provision")
                .bearer_auth(jwt(account))
                .header("idempotency-key", key)
                .json(body),
        )
        .await
    }

    /// Provisions `label` for `account` and returns the tenant's admin bearer.
    pub async fn new_tenant(&self, account: &str, label: &str) -> String {
        new_tenant_at(&self.url, account, label).await
    }

    pub async fn tenant_post(
        &self,
        label: &str,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        crate::send(
            self.tenant_request(label, reqwest::Method::POST, path)
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    pub async fn tenant_get(&self, label: &str, token: &str, path: &str) -> (u16, Value) {
        crate::send(
            self.tenant_request(label, reqwest::Method::GET, path)
                .bearer_auth(token),
        )
        .await
    }

    /// Writes one record (`{"n": clock}`) to `thread` of a tenant, raw: status and answer, for
    /// tests that expect a refusal.
    pub async fn write(&self, label: &str, token: &str, thread: &str, clock: i64) -> (u16, Value) {
        let record = crate::envelope(thread, clock, json!({"n": clock}));
        self.tenant_post(label, token, "/v1/records", &record).await
    }

    /// Writes one record (`{"n": clock}`, which must be new) to `thread` of a tenant through the
    /// typed client; the record as stored.
    pub async fn emit(&self, label: &str, token: &str, thread: &str, clock: i64) -> Value {
        let record = crate::envelope(thread, clock, json!({"n": clock}));
        let emitted = self
            .tenant_client(label, token)
            .emit::<Value>(&record)
            .await
            .unwrap_or_else(|e| panic!("writing to {label}: {e}"));
        assert!(emitted.created, "not new: {}", emitted.record);
        emitted.record
    }

    /// How many records a thread of a tenant holds, as its token reads them (raw: the listing
    /// answers `200`).
    pub async fn thread_len(&self, label: &str, token: &str, thread: &str) -> usize {
        let path = format!("/v1/records?thread={}", encode_segment(thread));
        let (status, listed) = self.tenant_get(label, token, &path).await;
        assert_eq!(status, 200, "{listed}");
        listed["data"].as_array().unwrap().len()
    }
}

/// Provisions `label` for `account` through the steward at `url` (a replica, a process or a
/// balancer in front of them) and returns the tenant's admin bearer.
pub async fn new_tenant_at(url: &str, account: &str, label: &str) -> String {
    let bootstrap = format!("bootstrap-token-for-{label}");
    let (status, body) = crate::send(
        reqwest::Client::new()
            .post(format!("{url}/provision"))
            .header("host", BASE_DOMAIN)
            .bearer_auth(jwt(account))
            .header("idempotency-key", format!("key-{label}"))
            .json(&json!({"label": label, "bootstrap_token": bootstrap})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["phase"], "ready", "{body}");
    bootstrap_bearer(&bootstrap)
}

/// A request to tenant `label` of the replica at `url`, by host or by path prefix as `config`
/// says.
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

/// A typed client of `url` that names `host` in every request: how a tenant (or the platform)
/// is reached by host on a replica known by its address.
pub fn client_with_host(url: &str, host: &str, token: &str) -> Client {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(host).unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    Client::with_http(http, url, Some(token)).unwrap()
}

/// `GET {url}/ready` answers 200 within a second.
async fn probe_ready(http: &reqwest::Client, url: &str) -> bool {
    let probe = http
        .get(format!("{url}/ready"))
        .timeout(Duration::from_secs(1))
        .send();
    matches!(probe.await, Ok(r) if r.status() == 200)
}
