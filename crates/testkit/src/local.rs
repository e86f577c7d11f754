//! A local steward in a temporary home, started as `spl serve` starts one.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use syncropel_federation::FederationConfig;
use syncropel_home::{Home, PublishedIdentity};
use syncropel_protocol::did_doc::did_web_for;
use syncropel_protocol::Keypair;
use syncropel_steward::local::{self, ServeOptions, LOCAL_ENV};
use syncropel_steward::rate_limit::RateLimits;
use syncropel_steward::state::Tenancy;
use syncropel_steward::state::{AppState, Limits};
use syncropel_steward::tenant::Tenant;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use syncropel_tenant::{create_service_account, mint};

use crate::port::Reserved;

/// The store key of a local steward's one tenant.
pub const TENANT: &str = local::LOCAL_TENANT;

/// The DID a test steward's home is published under.
#[derive(Clone, Debug, Default)]
pub enum Identity {
    /// The key's own did:key (a home fresh from `spl init`).
    #[default]
    Key,
    /// A did:sync registered elsewhere whose current signing key is the home's key.
    Sync { did: String },
    /// A did:web of the address the steward binds (with an optional path), which the steward
    /// serves itself; `endpoint` is the `syncropel` service its document names, if any.
    Web {
        path: Option<String>,
        endpoint: Option<String>,
    },
}

/// How a [`TestSteward`] is started. The defaults are `spl serve`'s, but for discovery (off)
/// and the address (a port of its own on 127.0.0.1).
pub struct Options {
    pub limits: Limits,
    pub heartbeat: Duration,
    pub search: bool,
    pub rate_limits: RateLimits,
    pub federation: FederationConfig,
    /// The identity key (default: the home's own, or a new one).
    pub keypair: Option<Keypair>,
    pub identity: Identity,
    /// Start again over what a stopped steward left: its home (key, identity, store) and port.
    pub restart: Option<Stopped>,
    /// `--bootstrap-secret` and `--cors-origin`.
    pub bootstrap_secret: Option<String>,
    pub cors_origins: Vec<String>,
    pub connections: ConnectionLimits,
    /// `--directory-enabled`: serve a did:sync directory at `/directory/*`.
    pub directory: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            heartbeat: Duration::from_secs(30),
            search: true,
            rate_limits: RateLimits::default(),
            federation: FederationConfig::default(),
            keypair: None,
            identity: Identity::Key,
            restart: None,
            bootstrap_secret: None,
            cors_origins: Vec::new(),
            connections: ConnectionLimits::default(),
            directory: false,
        }
    }
}

impl Options {
    /// A restart of `stopped`: the same home on the same address.
    pub fn restart(stopped: Stopped) -> Options {
        Options {
            restart: Some(stopped),
            ..Options::default()
        }
    }
}

/// What a stopped steward leaves: its home, and its port held (refusing connections) so that it
/// can start again there.
pub struct Stopped {
    pub home: tempfile::TempDir,
    port: Reserved,
}

impl Stopped {
    /// The URL it served, refusing connections until it starts again.
    pub fn url(&self) -> String {
        self.port.url()
    }
}

/// A local steward serving its home's SQLite store on 127.0.0.1.
pub struct TestSteward {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The state the running steward serves (its store, federation engine, shutdown token).
    pub state: AppState,
    /// The steward's one tenant (its identity signs every record).
    pub tenant: Arc<Tenant>,
    pub http: reqwest::Client,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl TestSteward {
    pub async fn start() -> TestSteward {
        TestSteward::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestSteward {
        let (dir, port) = match options.restart {
            Some(stopped) => (stopped.home, stopped.port),
            None => (tempfile::tempdir().unwrap(), Reserved::new()),
        };
        let addr = port.addr();
        let home = Home::new(dir.path().to_path_buf());
        prepare_home(&home, options.keypair.as_ref(), &options.identity, addr);
        let serve = ServeOptions {
            home,
            host: addr.ip().to_string(),
            port: addr.port(),
            memory: false,
            insecure_localhost: false,
            limits: options.limits,
            heartbeat: options.heartbeat,
            drain: Drain::default(),
            connections: options.connections,
            search: options.search,
            rate_limits: options.rate_limits,
            bootstrap_secret: options.bootstrap_secret,
            cors_origins: options.cors_origins,
            public_metrics: false,
            federation: options.federation,
            directory: options.directory,
        };
        let steward = local::start(serve, port.listen())
            .await
            .unwrap_or_else(|e| panic!("the steward did not start: {e}"));
        let state = steward.state.clone();
        let url = steward.url.clone();
        let tenant = match &state.tenancy {
            Tenancy::Single(tenant) => tenant.clone(),
            Tenancy::Hosted(_) => unreachable!("a local steward has one tenant"),
        };
        let server = tokio::spawn(async move {
            steward.run().await.expect("the steward stops cleanly");
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

    /// Stops the steward as SIGTERM would (it drains, then closes its store) and hands back its
    /// home and port, to start it again there.
    pub async fn stop(self) -> Stopped {
        self.state.shutdown.cancel();
        self.server.await.expect("the steward's task");
        Stopped {
            home: self.dir,
            port: Reserved::at(self.addr),
        }
    }

    /// A typed client sending `token`.
    pub fn client(&self, token: &str) -> syncropel_client::Client {
        syncropel_client::Client::with_http(self.http.clone(), &self.url, Some(token)).unwrap()
    }

    /// Creates a service account with `scopes` (and allowed actors) and returns a token for it.
    pub async fn token(&self, scopes: &[&str], actors: &[&str]) -> String {
        self.token_named("test", scopes, actors).await
    }

    /// [`TestSteward::token`] for an account of the given name.
    pub async fn token_named(&self, name: &str, scopes: &[&str], actors: &[&str]) -> String {
        let store = self.state.store.as_ref();
        let identity = &self.tenant.identity;
        let sa = create_service_account(
            store,
            TENANT,
            identity,
            name,
            scopes.iter().map(|s| s.to_string()).collect(),
            actors.iter().map(|s| s.to_string()).collect(),
        )
        .await
        .unwrap();
        mint(store, TENANT, identity, LOCAL_ENV, &sa.id, None)
            .await
            .unwrap()
            .token
    }

    pub async fn admin(&self) -> String {
        self.token(&["admin"], &[]).await
    }

    /// Sends a request and returns its status and JSON body (`null` when the body is not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        crate::send(request).await
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body);
        self.send(request).await
    }

    /// A POST of bytes as they are, labelled JSON: for bodies no serializer writes.
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

    /// A POST with no credential at all: the handshake routes take none, and anonymous callers
    /// are refused elsewhere.
    pub async fn post_anonymous(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.url)).json(body);
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
    /// audit trail), to prove a refusal wrote nothing. Read raw: the listing answers `200`.
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

/// Makes `home` what `spl init` (and `spl identity upgrade`, for a published identity) leave:
/// the key, `config.toml`, and `identity.json` naming the DID. A given key replaces the home's.
fn prepare_home(home: &Home, key: Option<&Keypair>, identity: &Identity, addr: SocketAddr) {
    if let Some(key) = key {
        write_key(home.root(), key);
    }
    home.init(false).unwrap();
    let key = home.keypair().unwrap();
    let (did, method, endpoint) = match identity {
        Identity::Key => return,
        Identity::Sync { did } => (did.clone(), "sync", None),
        Identity::Web { path, endpoint } => (
            did_web_for(&addr.to_string(), path.as_deref()),
            "web",
            endpoint.clone(),
        ),
    };
    home.publish(&PublishedIdentity::first(did, method, &key, endpoint))
        .unwrap();
}

/// `keys/identity.key` as `spl init` writes it: the seed in hex, readable by its owner only.
fn write_key(root: &Path, key: &Keypair) {
    let keys = root.join("keys");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&keys)
        .unwrap();
    let path = keys.join("identity.key");
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{}", hex::encode(key.seed())).unwrap();
}
