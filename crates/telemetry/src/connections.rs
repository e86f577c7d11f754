//! Accepting connections within limits, the same on every listener, so that no client can hold
//! a service's connections or tasks: a cap on open connections (overall and per client address;
//! over it a new connection is closed as it arrives), a deadline for a request's headers that
//! also ends idle keep-alive connections, and a deadline between the pieces of a request body.
//!
//! Connections speak HTTP/1.1 only: it is what the SDK and every ingress speak to a backend,
//! and a server that first sniffs the protocol version would wait on a silent connection with
//! no deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// What one listener lets its clients hold (flags with environment fallbacks, shared by every
/// service).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most connections a listener holds open at once; further ones are closed as they arrive
    #[arg(long, env = "SYNCROPEL_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most connections one client address holds open at once (0: no such cap, for a listener
    /// whose only client is a proxy that applies its own)
    #[arg(
        long,
        env = "SYNCROPEL_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,
    /// How long a client gets to send a request's headers; also how long a connection may sit
    /// idle between requests
    #[arg(long, env = "SYNCROPEL_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// Longest silence allowed inside a request body
    #[arg(long, env = "SYNCROPEL_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 4096,
            max_connections_per_address: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each (with the peer address as
/// `ConnectInfo<SocketAddr>`) until `stop` resolves; the connections still open are then
/// watched by the returned handle, whose `shutdown` closes each after its current request.
pub(crate) async fn accept_until(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl std::future::Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let counts = Counts::new(limits);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Some(slot) = counts.admit(address_key(address.ip())) else {
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let body_read = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            // An empty body stays as it is, so that it still says it is at its end.
            let mut request = request.map(|body| match body.is_end_stream() {
                true => axum::body::Body::new(body),
                false => axum::body::Body::new(TimeoutBody::new(body_read, body)),
            });
            request.extensions_mut().insert(ConnectInfo(address));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    graceful
}

/// A failed accept: a connection that went away before it was accepted is nothing; anything
/// else (out of file descriptors, say) is logged and waited out, rather than retried hot.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What counts as one client address, for connection caps and rate limits alike: an IPv6 host
/// usually holds a whole /64, so its addresses count as one; an IPv4-mapped IPv6 address counts
/// as its IPv4 address.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

/// Open connections, overall and per client address.
#[derive(Clone)]
struct Counts {
    limits: ConnectionLimits,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Counts {
    fn new(limits: ConnectionLimits) -> Counts {
        Counts {
            limits,
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `address`, or `None` (counted) when a cap is reached.
    fn admit(&self, address: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            crate::series::connection_refused("total");
            return None;
        }
        let per_address = self.limits.max_connections_per_address;
        let mine = open.by_address.entry(address).or_default();
        if per_address > 0 && *mine >= per_address {
            crate::series::connection_refused("address");
            return None;
        }
        *mine += 1;
        open.total += 1;
        Some(Slot {
            counts: self.clone(),
            address,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
struct Slot {
    counts: Counts,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(mine) = open.by_address.get_mut(&self.address) {
            *mine -= 1;
            if *mine == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_address_and_overall_and_come_back_when_dropped() {
        let counts = Counts::new(ConnectionLimits {
            max_connections: 3,
            max_connections_per_address: 2,
            ..ConnectionLimits::default()
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = counts.admit(a).unwrap();
        let _second = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_none(), "a third from one address");
        let _third = counts.admit(b).unwrap();
        assert!(counts.admit(b).is_none(), "a fourth overall");
        drop(first);
        assert!(
            counts.admit(a).is_some(),
            "a slot comes back when its connection ends"
        );
        assert_eq!(counts.open.lock().unwrap().total, 2);
    }

    #[test]
    fn zero_per_address_means_only_the_overall_cap() {
        let counts = Counts::new(ConnectionLimits {
            max_connections: 2,
            max_connections_per_address: 0,
            ..ConnectionLimits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _slots = [counts.admit(a).unwrap(), counts.admit(a).unwrap()];
        assert!(counts.admit(a).is_none());
    }
}
