//! Logs, traces and metrics of the Syncropel services, set up the same way in every binary.
//!
//! - Logs go to stderr as text or as JSON lines that carry the trace and span ids.
//! - Traces are exported over OTLP/HTTP when an endpoint is configured (off otherwise); the
//!   W3C `traceparent` is read from requests and written on outgoing ones ([`propagation`]).
//! - Metrics are OpenTelemetry instruments ([`metrics::meter`]), always readable as Prometheus
//!   text ([`metrics::render`], [`http::metrics_router`]) and pushed over OTLP when configured.

pub mod connections;
pub mod http;
pub mod logs;
pub mod metrics;
mod otlp;
pub mod propagation;
pub mod series;
pub mod serve;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How each binary is told where its telemetry goes (flags with environment fallbacks).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TelemetryArgs {
    /// Log lines as `text` or `json` (one object per line, with trace and span ids)
    #[arg(long, env = "SYNCROPEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/HTTP collector to export traces and metrics to (e.g. `http://otel-collector:4318`);
    /// nothing is exported when unset
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(String),
    #[error("the OTLP endpoint '{0}' is not an http:// or https:// URL")]
    Endpoint(String),
}

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the exporters.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered. Call before the process exits.
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            if let Err(e) = tracer.shutdown() {
                eprintln!("flushing traces failed: {e}");
            }
        }
        metrics::shutdown();
    }
}

/// Runs a service binary's `work` with telemetry set up for `service` and shut down after it:
/// the process's exit code, a failure logged (or printed, when telemetry itself cannot start).
pub async fn run_service<E: std::fmt::Display>(
    args: &TelemetryArgs,
    service: &str,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let telemetry = match init(args, service) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = work.await;
    telemetry.shutdown();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{service} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets up logging, tracing and metrics for the process. `service` names it in traces unless
/// `OTEL_SERVICE_NAME` says otherwise. With an OTLP endpoint this must run inside a Tokio
/// runtime: exports are sent from it.
pub fn init(args: &TelemetryArgs, service: &str) -> Result<Telemetry, TelemetryError> {
    let resource = resource(service);
    let tracer = match &args.otlp_endpoint {
        Some(endpoint) => {
            let endpoint = otlp::base(endpoint)?;
            metrics::install(resource.clone(), Some(otlp::metric_exporter(&endpoint)?));
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(otlp::span_exporter(&endpoint)?)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => {
            metrics::install(resource, None);
            None
        }
    };
    install(tracer.clone(), args.log_format);
    Ok(Telemetry { tracer })
}

/// Installs the process's subscriber (see [`subscriber`]), writing log lines to stderr with
/// every credential-shaped string redacted ([`logs::Redacting`]). A second call leaves the first
/// in place (tests start several services in one process).
pub fn install(tracer: Option<SdkTracerProvider>, format: LogFormat) {
    use std::io::IsTerminal;
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    let traced = tracer.is_some();
    if subscriber(tracer, format, ansi, logs::Redacting(std::io::stderr))
        .try_init()
        .is_ok()
    {
        propagation::TRACING.store(traced, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Log lines in `format` filtered by `RUST_LOG` (default `info`), written to `writer`, and
/// spans handed to `tracer` when given.
///
/// The services' spans are at DEBUG and only the tracer takes them: with no tracer they are
/// never even built, so a request pays for tracing only where traces are exported.
pub fn subscriber<W>(
    tracer: Option<SdkTracerProvider>,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let dispatch = logs::DispatchSlot::default();
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(logs::JsonLines {
                dispatch: dispatch.clone(),
            })
            .with_writer(writer)
            .boxed(),
    };
    let spans = tracer.map(|provider| {
        let tracer = provider.tracer("syncropel");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(traced))
    });
    tracing_subscriber::registry()
        .with(dispatch)
        .with(lines.with_filter(filter))
        .with(spans)
}

/// What the tracer takes: the services' own spans, and events at INFO and above (they become
/// span events).
fn traced(meta: &tracing::Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.target().starts_with("syncropel") && *meta.level() <= tracing::Level::DEBUG
    } else {
        *meta.level() <= tracing::Level::INFO
    }
}

fn resource(service: &str) -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service.to_string());
    Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}
