//! The relay in this process, served as its binary serves it, on a Postgres database of its
//! own (`DATABASE_URL`'s server).

use std::sync::Arc;

use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_relay::auth::Authenticator;
use syncropel_relay::limits::{CallLimits, Limiters};
use syncropel_relay::routes::{app, AppState};
use syncropel_relay::store::{Limits, RelayStore};
use syncropel_store::testing::TestDb;
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use tokio_util::sync::CancellationToken;

use crate::port::Reserved;

/// A relay on 127.0.0.1.
pub struct Relay {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub store: Arc<RelayStore>,
    stopping: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    addr: std::net::SocketAddr,
    db: TestDb,
}

/// A stopped relay: its database and its port, held for a restart.
pub struct StoppedRelay {
    port: Reserved,
    db: TestDb,
}

impl Relay {
    pub async fn start() -> Relay {
        Relay::start_with(Limits::default()).await
    }

    /// A relay with other bounds (a small queue, say).
    pub async fn start_with(limits: Limits) -> Relay {
        Relay::serve(Reserved::new(), TestDb::create().await, limits).await
    }

    /// Starts a stopped relay again, on its port and over its database.
    pub async fn restart(stopped: StoppedRelay) -> Relay {
        Relay::serve(stopped.port, stopped.db, Limits::default()).await
    }

    async fn serve(port: Reserved, db: TestDb, limits: Limits) -> Relay {
        let store = Arc::new(RelayStore::open(&db.url, limits).await.unwrap());
        let resolver = DidResolver::new(PeerClient::new(PeerClientOptions::default()), Vec::new());
        let stopping = CancellationToken::new();
        let state = AppState {
            store: store.clone(),
            auth: Arc::new(Authenticator::new(resolver, Default::default())),
            cursor_key: "a relay-wide secret for the tests' relays".into(),
            clock: || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            },
            limits: Arc::new(Limiters::new(CallLimits::default())),
            stopping: stopping.clone(),
        };
        let addr = port.addr();
        let listener = port.listen();
        let stop = stopping.clone();
        let server = tokio::spawn(async move {
            syncropel_telemetry::serve::serve(
                listener,
                app(state),
                None,
                stop,
                Drain::default(),
                ConnectionLimits::default(),
            )
            .await
            .unwrap();
        });
        Relay {
            url: format!("http://{addr}"),
            store,
            stopping,
            server,
            addr,
            db,
        }
    }

    /// Whether every record of `ids` is in an envelope queued here (a count of items would
    /// also count a record queued before).
    pub async fn holds(&self, ids: &std::collections::BTreeSet<String>) -> bool {
        let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
        let bodies: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM relay_envelopes")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        let queued: Vec<String> = bodies
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        ids.iter()
            .all(|id| queued.iter().any(|body| body.contains(id.as_str())))
    }

    /// Stops answering; the database stays for a restart at the same address.
    pub async fn stop(self) -> StoppedRelay {
        self.stopping.cancel();
        self.server.await.unwrap();
        self.store.close().await;
        StoppedRelay {
            port: Reserved::at(self.addr),
            db: self.db,
        }
    }

    /// Stops and drops its database.
    pub async fn remove(self) {
        let stopped = self.stop().await;
        stopped.db.drop().await;
    }
}
