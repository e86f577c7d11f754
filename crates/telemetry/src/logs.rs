//! JSON log lines: one object per event with its fields, the span it happened in, and the
//! trace and span ids when the span is traced, so logs and traces can be joined. Lines of either
//! format pass through [`Redacting`] on their way out.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use std::{fmt, io};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The subscriber [`JsonLines`] formats for, handed over when it is registered: a span's trace
/// ids are read through it, and the usual current-dispatcher lookup answers nothing while an
/// event is being formatted.
#[derive(Clone, Default)]
pub struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

pub struct JsonLines {
    pub dispatch: DispatchSlot,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        line.extend(fields.0);
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope.from_root().map(|s| s.name().into()).collect();
            if let Some(last) = spans.last() {
                line.insert("span".into(), last.clone());
            }
            line.insert("spans".into(), Value::Array(spans));
        }
        // The innermost span of any layer: the traced ones are not this layer's to see.
        let dispatch = self.dispatch.0.get().and_then(WeakDispatch::upgrade);
        if let Some(dispatch) = dispatch {
            let current = dispatch.current_span();
            let traced = current
                .id()
                .and_then(|id| tracing_opentelemetry::get_otel_context(id, &dispatch));
            if let Some(context) = traced {
                let span = context.span();
                let ids = span.span_context();
                if ids.is_valid() {
                    line.insert("trace_id".into(), ids.trace_id().to_string().into());
                    line.insert("span_id".into(), ids.span_id().to_string().into());
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// A log writer that redacts credential-shaped strings (keys, tokens, JWTs, `Bearer …`) from
/// every line before it reaches `W`'s writer, whatever logged them (protocol.md §14).
pub struct Redacting<W>(pub W);

/// One line's writer: the formatter writes each event whole, so each write is redacted whole.
pub struct RedactingWriter<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactingWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        self.0
            .write_all(syncropel_shapes::redact(&text).as_bytes())?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// As installed: a DEBUG span (taken by the tracer only) is not among a line's `spans`, but
    /// the trace it belongs to is on every line logged inside it.
    #[test]
    fn json_lines_carry_fields_spans_and_the_trace_ids() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = crate::subscriber(
            Some(provider.clone()),
            crate::LogFormat::Json,
            false,
            move || writer.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let traced = tracing::debug_span!("work", n = 1);
            traced.in_scope(|| {
                let logged = tracing::info_span!("step");
                logged.in_scope(|| tracing::warn!(answer = 42, ok = true, "inside \"quoted\""))
            });
            tracing::info!("outside");
            tracing::debug!("below the default level");
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let work = spans.iter().find(|s| s.name == "work").unwrap();
        let step = spans.iter().find(|s| s.name == "step").unwrap();
        assert_eq!(step.parent_span_id, work.span_context.span_id());

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let inside = &lines[0];
        assert_eq!(inside["message"], "inside \"quoted\"");
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["answer"], 42);
        assert_eq!(inside["ok"], true);
        assert_eq!(inside["span"], "step");
        assert_eq!(inside["spans"], serde_json::json!(["step"]));
        assert_eq!(inside["trace_id"], work.span_context.trace_id().to_string());
        assert_eq!(inside["span_id"], step.span_context.span_id().to_string());
        assert!(inside["timestamp"].as_str().unwrap().ends_with('Z'));
        let outside = &lines[1];
        assert_eq!(outside["message"], "outside");
        assert!(outside.get("trace_id").is_none() && outside.get("span").is_none());
    }
}
