//! Serving a router and stopping it gracefully, the same in every service.
//!
//! On SIGTERM (or SIGINT, or when `stop` is cancelled) a service:
//! 1. cancels `stop`: it answers `/ready` with 503, tells open streams to reconnect elsewhere
//!    and hands back its leases, but goes on serving requests, each answer closing its
//!    connection so that the client's next request goes through the load balancer;
//! 2. after `delay` (the time load balancers need to notice), stops accepting connections;
//! 3. gives in-flight requests `grace` to finish, then returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use http_body::Body as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connections::{accept_until, ConnectionLimits};

/// The timing of a graceful stop.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    /// How long the service keeps serving, not ready, after the signal.
    pub delay: Duration,
    /// How long in-flight requests then get to finish.
    pub grace: Duration,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            delay: Duration::ZERO,
            grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` (with the peer address as `ConnectInfo<SocketAddr>`) and, when `metrics` is
/// given, `/metrics` on that second listener, both within `limits`, until the drain above is
/// done.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    metrics: Option<TcpListener>,
    stop: CancellationToken,
    drain: Drain,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let metrics = metrics.map(|listener| {
        let done = stop.clone();
        tokio::spawn(crate::http::serve_metrics(listener, limits, async move {
            done.cancelled().await;
            tokio::time::sleep(drain.delay + drain.grace).await;
        }))
    });
    let app = app.layer(CloseWhenDraining(stop.clone()));
    let signal = stop.clone();
    let server = async move {
        let stopped_accepting = async move {
            tokio::select! {
                _ = terminated() => {}
                _ = signal.cancelled() => {}
            }
            signal.cancel();
            tracing::info!(
                delay_ms = drain.delay.as_millis() as u64,
                "shutting down: not ready, still serving"
            );
            tokio::time::sleep(drain.delay).await;
            tracing::info!("shutting down: no new connections, draining requests");
        };
        accept_until(listener, app, limits, stopped_accepting)
            .await
            .shutdown()
            .await;
    };
    let stopped = stop.clone();
    tokio::select! {
        _ = server => {}
        _ = async move {
            stopped.cancelled().await;
            tokio::time::sleep(drain.delay + drain.grace).await;
        } => {
            tracing::warn!("requests still open after the grace period; closing them");
        }
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(())
}

/// Says `Connection: close` on the answers whose connection cannot be reused, so that a
/// keep-alive client does not send its next request on a connection about to close:
/// - once the drain has begun, every answer: the client then reconnects through the load
///   balancer (to a ready replica) instead of coming back on a connection the balancer cannot
///   move, and no idle connection is left to race the close at the end of the delay;
/// - an answer given before the request's body was read to its end (a refusal for a bad token,
///   say): the server closes that connection rather than read what is left of the body.
#[derive(Clone)]
struct CloseWhenDraining(CancellationToken);

impl<S> tower::Layer<S> for CloseWhenDraining {
    type Service = Closing<S>;

    fn layer(&self, inner: S) -> Closing<S> {
        Closing {
            inner,
            stop: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Closing<S> {
    inner: S,
    stop: CancellationToken,
}

impl<S> tower::Service<Request> for Closing<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (request, read) = track_body(request);
        let response = self.inner.call(request);
        let stop = self.stop.clone();
        Box::pin(async move {
            let mut response = response.await?;
            let unread = read.is_some_and(|read| !read.load(Ordering::Acquire));
            if stop.is_cancelled() || unread {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// A request that declares a body gets it wrapped so that its end is noticed; the flag says
/// whether the body was read to its end.
fn track_body(request: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if request.body().is_end_stream() {
        return (request, None);
    }
    let read = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        axum::body::Body::new(Tracked {
            inner,
            read: read.clone(),
        })
    });
    (request, Some(read))
}

/// A request body that records when it has been read to its end.
struct Tracked {
    inner: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn terminated() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    #[tokio::test]
    async fn an_answer_before_the_body_is_read_closes_the_connection() {
        let app = Router::new()
            .route("/refuse", post(|| async { "refused unread" }))
            .route("/read", post(|body: String| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            app,
            None,
            stop.clone(),
            Drain::default(),
            ConnectionLimits::default(),
        ));
        let http = reqwest::Client::new();
        let connection = |path: &'static str, body: &'static str| {
            let request = http.post(format!("{url}{path}")).body(body);
            async move {
                let response = request.send().await.unwrap();
                assert!(response.status().is_success());
                response
                    .headers()
                    .get(header::CONNECTION)
                    .map(|v| v.to_str().unwrap().to_string())
            }
        };
        assert_eq!(
            connection("/refuse", "a body").await.as_deref(),
            Some("close")
        );
        assert_eq!(connection("/read", "a body").await, None);
        assert_eq!(
            connection("/refuse", "").await,
            None,
            "nothing was left unread"
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
