//! A load balancer in front of replicas, as a Kubernetes Service.

use std::sync::Arc;
use std::time::Duration;

use super::probe_ready;

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
    const PROBE_INTERVAL: Duration = Duration::from_millis(100);

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
