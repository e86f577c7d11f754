//! The process's meter: instruments recorded once, read by Prometheus at `/metrics` and pushed
//! over OTLP when a collector is configured.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use prometheus::{Encoder, TextEncoder};

struct Installed {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// How often metrics are pushed to an OTLP collector.
const PUSH_EVERY: Duration = Duration::from_secs(30);

/// Builds the process's meter provider; only the first call counts. Services that never call
/// it (tests, tools) still get one, read by Prometheus only, on first use.
pub fn install(resource: Resource, otlp: Option<MetricExporter>) {
    INSTALLED.get_or_init(|| build(resource, otlp));
}

fn build(resource: Resource, otlp: Option<MetricExporter>) -> Installed {
    let registry = prometheus::Registry::new();
    let mut provider = SdkMeterProvider::builder().with_resource(resource);
    match opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .without_target_info()
        .build()
    {
        Ok(exporter) => provider = provider.with_reader(exporter),
        Err(e) => tracing::error!(error = %e, "the Prometheus exporter could not be built"),
    }
    if let Some(exporter) = otlp {
        provider = provider.with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(PUSH_EVERY)
                .build(),
        );
    }
    Installed {
        provider: provider.build(),
        registry,
    }
}

fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| build(Resource::builder().build(), None))
}

/// The meter every instrument of the services is made from.
pub fn meter() -> Meter {
    installed().provider.meter("syncropel")
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&installed().registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Pushes what is left to the collector, if there is one.
pub(crate) fn shutdown() {
    if let Some(installed) = INSTALLED.get() {
        let _ = installed.provider.force_flush();
    }
}
