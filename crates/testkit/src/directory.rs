//! The did:sync directory in this process, served as its binary serves it.

use std::sync::Arc;

use syncropel_directory::{AppState, Clock, Rules, Store};
use syncropel_telemetry::connections::ConnectionLimits;
use syncropel_telemetry::serve::Drain;
use tokio_util::sync::CancellationToken;

use crate::port::Reserved;

/// A did:sync directory on 127.0.0.1 over a SQLite file of its own.
pub struct Directory {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stopping: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

/// A stopped directory: its store and its port, held for a restart.
pub struct StoppedDirectory {
    port: Reserved,
    dir: tempfile::TempDir,
}

impl Directory {
    pub async fn start() -> Directory {
        Directory::serve(Reserved::new(), tempfile::tempdir().unwrap()).await
    }

    /// Starts a stopped directory again, on its port and over its store.
    pub async fn restart(stopped: StoppedDirectory) -> Directory {
        Directory::serve(stopped.port, stopped.dir).await
    }

    async fn serve(port: Reserved, dir: tempfile::TempDir) -> Directory {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("directory.db").display()
        );
        let store = Store::open(&url).await.unwrap();
        let stopping = CancellationToken::new();
        let state = AppState::new(
            Arc::new(store),
            Rules::default(),
            Clock::system(),
            stopping.clone(),
        );
        let addr = port.addr();
        let listener = port.listen();
        let app = syncropel_directory::app(state);
        let stop = stopping.clone();
        let server = tokio::spawn(async move {
            syncropel_telemetry::serve::serve(
                listener,
                app,
                None,
                stop,
                Drain::default(),
                ConnectionLimits::default(),
            )
            .await
            .unwrap();
        });
        Directory {
            url: format!("http://{addr}"),
            stopping,
            server,
            addr,
            dir,
        }
    }

    /// Stops answering (as after SIGTERM); the store stays for a restart at the same address.
    pub async fn stop(self) -> StoppedDirectory {
        self.stopping.cancel();
        self.server.await.unwrap();
        StoppedDirectory {
            port: Reserved::at(self.addr),
            dir: self.dir,
        }
    }
}
