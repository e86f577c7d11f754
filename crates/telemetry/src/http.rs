//! HTTP servers: a span and a latency sample per request, and the `/metrics` route.

use std::sync::OnceLock;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry::metrics::Histogram;
use opentelemetry::KeyValue;
use tracing::Instrument;

/// Latency buckets in seconds: from a cached read to a held longpoll.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

fn latency() -> &'static Histogram<f64> {
    static LATENCY: OnceLock<Histogram<f64>> = OnceLock::new();
    LATENCY.get_or_init(|| {
        crate::metrics::meter()
            .f64_histogram("syncropel_http_request_duration")
            .with_unit("s")
            .with_description("Time from a request's arrival to its response headers")
            .with_boundaries(BUCKETS.to_vec())
            .build()
    })
}

/// Layer (add with `Router::layer`, so the matched route is known): opens each request's
/// server span, a child of the caller's `traceparent` if it sent one, and records its latency
/// by method, route and status. Routes are the templates (`/v1/records/{id}`), never raw paths,
/// so the series stay few. A plain tower layer rather than `from_fn`: it is on every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTelemetry;

impl<S> tower::Layer<S> for RequestTelemetry {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured { inner }
    }
}

/// A service wrapped by [`RequestTelemetry`].
#[derive(Clone, Debug)]
pub struct Measured<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Measured<S>
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
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = method_label(request.method());
        let span = tracing::debug_span!(
            "http.request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(parent) = crate::propagation::extract(request.headers()) {
            crate::propagation::adopt(&span, parent);
        }
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let response = response.instrument(span.clone()).await?;
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            latency().record(
                started.elapsed().as_secs_f64(),
                &[
                    KeyValue::new("method", method),
                    KeyValue::new("route", route),
                    KeyValue::new("status", i64::from(status)),
                ],
            );
            Ok(response)
        })
    }
}

/// The method as a label: the standard ones by name, any other as `_OTHER`, so that a client
/// inventing methods cannot grow the series without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// `GET /metrics`: Prometheus text. Serve it on an internal listener where the service is
/// public (a tenant host must not expose it).
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// `GET /metrics` handler, for routers that serve it beside their own routes.
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(),
    )
        .into_response()
}

/// Serves [`metrics_router`] on `listener`, within `limits`, until `stop` resolves.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    limits: crate::connections::ConnectionLimits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    crate::connections::accept_until(listener, metrics_router(), limits, stop)
        .await
        .shutdown()
        .await;
}
