//! Hosted stewards for tests: real replicas on 127.0.0.1:0 over a Postgres database of the test's
//! own, in this process ([`Replica`]) or as `steward` processes ([`Process`]).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use syncropel_federation::FederationConfig;
use syncropel_steward::app::Limits;
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
        Process::start_with(database_url, &[], &[]).await
    }

    /// [`Process::start`] with more flags and environment variables (e.g. the drain timing:
    /// `&["--shutdown-delay", "1s", "--shutdown-grace", "10s"]`).
    pub async fn start_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
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
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
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

    /// SIGTERM: the graceful stop a Kubernetes pod gets (not ready, drain, exit).
    pub fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .expect("the steward takes a signal");
        }
    }

    /// Waits (polling) until the process exits; its status, or `None` if it still runs after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `GET /ready` answers 200.
    pub async fn ready(&self) -> bool {
        probe_ready(&reqwest::Client::new(), &self.url).await
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log.path()).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET {url}/ready` answers 200 within a second.
async fn probe_ready(http: &reqwest::Client, url: &str) -> bool {
    let probe = http
        .get(format!("{url}/ready"))
        .timeout(Duration::from_secs(1))
        .send();
    matches!(probe.await, Ok(r) if r.status() == 200)
}

/// A backend of a [`Balancer`]: its URL and what its last readiness probe said.
struct Backend {
    url: String,
    ready: bool,
    connections: usize,
}

/// A TCP load balancer in front of replicas, as a Kubernetes Service: each new connection goes to
/// the next backend (round-robin) whose `GET /ready` answered 200 on the last probe (every
/// 100 ms); a connection stays with its backend until either side closes it. With no ready
/// backend, a new connection is closed at once.
pub struct Balancer {
    pub url: String,
    backends: Arc<std::sync::Mutex<Vec<Backend>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Balancer {
    /// How often backends are probed.
    pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);

    /// Listens on 127.0.0.1:0 in front of `backends` (URLs `http://host:port`), once it has
    /// probed them.
    pub async fn start(backends: &[&str]) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let backends = Arc::new(std::sync::Mutex::new(
            backends
                .iter()
                .map(|url| Backend {
                    url: url.to_string(),
                    ready: false,
                    connections: 0,
                })
                .collect::<Vec<_>>(),
        ));
        // Probes without keep-alive, as a kubelet's: every probe is a new connection.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        probe_all(&http, &backends).await;
        let prober = tokio::spawn({
            let backends = backends.clone();
            async move {
                loop {
                    tokio::time::sleep(Balancer::PROBE_INTERVAL).await;
                    probe_all(&http, &backends).await;
                }
            }
        });
        let proxy = tokio::spawn(accept(listener, backends.clone()));
        Balancer {
            url,
            backends,
            tasks: vec![prober, proxy],
        }
    }

    /// Routes to these backends from now on (each one not ready until it has been probed).
    pub fn set_backends(&self, urls: &[&str]) {
        let mut backends = self.backends.lock().unwrap();
        *backends = urls
            .iter()
            .map(|url| Backend {
                url: url.to_string(),
                ready: false,
                connections: 0,
            })
            .collect();
    }

    /// Swaps backend `old` for `new` (not ready until it has been probed); connections already
    /// made to `old` stay open.
    pub fn replace(&self, old: &str, new: &str) {
        let mut backends = self.backends.lock().unwrap();
        let backend = backends
            .iter_mut()
            .find(|b| b.url == old)
            .unwrap_or_else(|| panic!("{old} is not a backend"));
        *backend = Backend {
            url: new.to_string(),
            ready: false,
            connections: 0,
        };
    }

    /// Whether the last probe of backend `url` answered 200.
    pub fn is_ready(&self, url: &str) -> bool {
        self.backends
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.url == url && b.ready)
    }

    /// How many connections each backend was given, in order.
    pub fn connections(&self) -> Vec<(String, usize)> {
        self.backends
            .lock()
            .unwrap()
            .iter()
            .map(|b| (b.url.clone(), b.connections))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn probe_all(http: &reqwest::Client, backends: &std::sync::Mutex<Vec<Backend>>) {
    let urls: Vec<String> = backends
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.url.clone())
        .collect();
    let probes = urls.iter().map(|url| probe_ready(http, url));
    let results = futures_util::future::join_all(probes).await;
    let mut backends = backends.lock().unwrap();
    for (url, ready) in urls.iter().zip(results) {
        // The set may have changed during the probe: only backends still there are updated.
        if let Some(backend) = backends.iter_mut().find(|b| &b.url == url) {
            backend.ready = ready;
        }
    }
}

/// Accepts connections and proxies each to the next ready backend. The connections live in the
/// accept task's set, so stopping it closes them all.
async fn accept(listener: tokio::net::TcpListener, backends: Arc<std::sync::Mutex<Vec<Backend>>>) {
    let mut next = 0usize;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let chosen = {
            let mut backends = backends.lock().unwrap();
            let ready: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].ready).collect();
            if ready.is_empty() {
                None
            } else {
                let i = ready[next % ready.len()];
                next = next.wrapping_add(1);
                backends[i].connections += 1;
                Some(backends[i].url.clone())
            }
        };
        let Some(url) = chosen else {
            continue; // dropping the client's socket closes it
        };
        connections.spawn(async move {
            let addr = url.trim_start_matches("http://");
            if let Ok(mut server) = tokio::net::TcpStream::connect(addr).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}
