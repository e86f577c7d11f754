//! W3C trace context across stewards: read from incoming requests, written on outgoing ones,
//! and carried with records a peer pulls, so an emit and its ingest elsewhere are one trace.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the process exports traces: without, no span has a context to hand on, and the
/// helpers below return at once instead of looking.
pub(crate) static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (set by [`crate::install`]).
pub fn tracing_on() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Writes the current span's `traceparent` (and `tracestate`) into outgoing headers; nothing
/// when the span is not traced.
pub fn inject(headers: &mut http::HeaderMap) {
    if !tracing_on() {
        return;
    }
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The remote parent named by a request's `traceparent`, if any.
pub fn extract(headers: &http::HeaderMap) -> Option<Context> {
    if !tracing_on() {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    context.span().span_context().is_valid().then_some(context)
}

/// The current span as a `traceparent` value, when it is traced.
pub fn current_traceparent() -> Option<String> {
    traceparent(&tracing::Span::current())
}

/// `span` as a `traceparent` value, when it is traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !tracing_on() {
        return None;
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    ids.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the span a `traceparent` value names; a malformed value changes
/// nothing (it comes from a peer).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of `parent` (from [`extract`]).
pub fn adopt(span: &tracing::Span, parent: Context) {
    let _ = span.set_parent(parent);
}

/// Links `span` to the span that is current now (a pull to the emit it carries, say).
pub fn link_current(span: &tracing::Span) {
    let context = tracing::Span::current().context();
    span.add_link(context.span().span_context().clone());
}
