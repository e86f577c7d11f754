//! OTLP/HTTP exporters, sent with the workspace's reqwest client (rustls), so a collector
//! behind HTTPS works without a second TLS stack.

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig};

use crate::TelemetryError;

/// The collector's base URL, without a trailing slash.
pub fn base(endpoint: &str) -> Result<String, TelemetryError> {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TelemetryError::Endpoint(endpoint.to_string()));
    }
    Ok(endpoint.to_string())
}

pub fn span_exporter(base: &str) -> Result<SpanExporter, TelemetryError> {
    SpanExporter::builder()
        .with_http()
        .with_http_client(Sender::new()?)
        .with_endpoint(format!("{base}/v1/traces"))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

pub fn metric_exporter(base: &str) -> Result<MetricExporter, TelemetryError> {
    MetricExporter::builder()
        .with_http()
        .with_http_client(Sender::new()?)
        .with_endpoint(format!("{base}/v1/metrics"))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// Sends export requests on the service's Tokio runtime: the SDK exports from its own threads,
/// where reqwest would find no runtime.
#[derive(Debug, Clone)]
struct Sender {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Sender {
    fn new() -> Result<Sender, TelemetryError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TelemetryError::Exporter("telemetry must be set up inside a Tokio runtime".into())
        })?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(Sender { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for Sender {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_url_is_checked_and_trimmed() {
        assert_eq!(
            base(" http://otel-collector:4318/ ").unwrap(),
            "http://otel-collector:4318"
        );
        assert_eq!(
            base("https://otlp.example").unwrap(),
            "https://otlp.example"
        );
        for bad in ["otel-collector:4318", "grpc://collector:4317", ""] {
            assert!(base(bad).is_err(), "{bad}");
        }
    }
}
