//! The spans of DESIGN §5, built with the OpenTelemetry API: `{mcp.method.name}
//! {target}` (kind CLIENT) for every request and `initialize`, and the internal
//! `mcp.session.close`.
//!
//! Why not `tracing` spans turned into OpenTelemetry by `tracing-opentelemetry`
//! (the first version did that): every field went through the subscriber's
//! registry, its per-layer filters and a visitor on creation, on every `record`
//! and on every poll of the instrumented future. callgrind counted about 38k
//! instructions per call for that on the call path; built directly, a span costs
//! a fraction of it (BENCHMARKS.md, "Telemetry on the call path").
//!
//! The parent is the caller's current OpenTelemetry context, else the caller's
//! current `tracing` span when a `tracing-opentelemetry` layer is installed (so
//! an agent request carrying a `traceparent`, or a caller's own span, parents the
//! MCP spans). [`McpSpan::trace_meta`] gives the `traceparent`/`tracestate` to
//! put into the request's `params._meta`.
//!
//! Spans are recorded only when the runtime's [`Telemetry`](super::Telemetry)
//! has a tracer ([`install`](super::install) sets one when an OTLP endpoint is
//! configured; a library user hands in their own with
//! [`Telemetry::set_tracer`](super::Telemetry::set_tracer)). Without one every
//! method here is a branch on `None`.

use std::borrow::Cow;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::SdkTracer;
use rmcp::model::RequestMetaObject;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::semconv;

/// What every MCP span of one server and scope carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanTarget<'a> {
    pub server: &'a str,
    pub scope: &'a str,
    pub network_transport: &'static str,
    pub address: Option<(&'a str, u16)>,
    /// Where spans go; `None`: spans are not recorded.
    pub tracer: Option<&'a SdkTracer>,
}

impl SpanTarget<'_> {
    /// The attributes every span of this target carries, with room for `extra` more.
    fn attributes(&self, extra: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(5 + extra);
        attributes.push(KeyValue::new(
            semconv::ATTR_NETWORK_TRANSPORT,
            self.network_transport,
        ));
        attributes.push(KeyValue::new(
            semconv::ATTR_SERVER_NAME,
            self.server.to_owned(),
        ));
        attributes.push(KeyValue::new(semconv::ATTR_SCOPE, self.scope.to_owned()));
        if let Some((host, port)) = self.address {
            attributes.push(KeyValue::new(semconv::ATTR_SERVER_ADDRESS, host.to_owned()));
            attributes.push(KeyValue::new(semconv::ATTR_SERVER_PORT, i64::from(port)));
        }
        attributes
    }
}

/// One MCP span being recorded, or nothing. Cloning shares the span; it ends
/// when the last clone is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct McpSpan(Option<Context>);

impl McpSpan {
    /// A span that records nothing.
    pub(crate) fn none() -> McpSpan {
        McpSpan(None)
    }

    fn start(
        tracer: &SdkTracer,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> McpSpan {
        let parent = parent_context();
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        McpSpan(Some(parent.with_span(span)))
    }

    /// Whether this span is recorded (callers skip building values otherwise).
    pub(crate) fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Sets one attribute.
    pub(crate) fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(context) = &self.0 {
            context.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `error_type` (and the JSON-RPC code when there is one).
    pub(crate) fn record_error(&self, error_type: &str, description: &str, rpc_code: Option<i32>) {
        let Some(context) = &self.0 else {
            return;
        };
        let span = context.span();
        span.set_attribute(KeyValue::new(
            semconv::ATTR_ERROR_TYPE,
            error_type.to_owned(),
        ));
        if let Some(code) = rpc_code {
            span.set_attribute(KeyValue::new(semconv::ATTR_RPC_STATUS, code.to_string()));
        }
        span.set_status(Status::error(description.to_owned()));
    }

    /// Adds an event (`mcp.progress`, ...) with `attributes`.
    pub(crate) fn add_event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        if let Some(context) = &self.0 {
            context.span().add_event(name, attributes);
        }
    }

    /// `params._meta` entries carrying the span's trace context, if it is recorded.
    pub(crate) fn trace_meta(&self) -> Option<RequestMetaObject> {
        let context = self.0.as_ref()?;
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return None;
        }
        let mut meta = RequestMetaObject::new();
        meta.set_traceparent(traceparent(
            span_context.trace_id().to_bytes(),
            span_context.span_id().to_bytes(),
            span_context.trace_flags().to_u8(),
        ));
        let state = span_context.trace_state().header();
        if !state.is_empty() {
            meta.set_tracestate(state);
        }
        Some(meta)
    }

    /// The span's context, to make it the parent of the spans under it.
    pub(crate) fn context(&self) -> Option<&Context> {
        self.0.as_ref()
    }

    /// The span's trace id (32 hex characters), if it is recorded.
    pub(crate) fn trace_id(&self) -> Option<String> {
        let context = self.0.as_ref()?;
        let span = context.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    }
}

/// `00-{trace id}-{span id}-{flags}` (W3C Trace Context), in lowercase hex.
/// Written by hand: `format!` through the ids' `Display` cost the call path
/// about 2,500 instructions.
fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> String {
    fn push_hex(out: &mut String, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for byte in bytes {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, &trace_id);
    out.push('-');
    push_hex(&mut out, &span_id);
    out.push('-');
    push_hex(&mut out, &[flags]);
    out
}

/// The caller's context: an OpenTelemetry context attached by the caller, else
/// the current `tracing` span's (empty when neither is traced: a new trace).
fn parent_context() -> Context {
    let current = Context::current();
    if current.span().span_context().is_valid() {
        return current;
    }
    tracing::Span::current().context()
}

/// The CLIENT span of one request (`tools/call echo`, `tools/list`, `ping`, ...).
pub(crate) fn request(
    target: SpanTarget<'_>,
    method: &str,
    tool: Option<&str>,
    protocol_version: &str,
    session_id: impl FnOnce() -> Option<String>,
) -> McpSpan {
    let Some(tracer) = target.tracer else {
        return McpSpan::none();
    };
    let mut attributes = target.attributes(5);
    attributes.push(KeyValue::new(semconv::ATTR_METHOD, method.to_owned()));
    attributes.push(KeyValue::new(
        semconv::ATTR_PROTOCOL_VERSION,
        protocol_version.to_owned(),
    ));
    let name = match tool {
        Some(tool) => {
            attributes.push(KeyValue::new(semconv::ATTR_TOOL, tool.to_owned()));
            if method == "tools/call" {
                attributes.push(KeyValue::new(semconv::ATTR_OPERATION, "execute_tool"));
            }
            format!("{method} {tool}")
        }
        None => method.to_owned(),
    };
    if let Some(id) = session_id() {
        attributes.push(KeyValue::new(semconv::ATTR_SESSION_ID, id));
    }
    McpSpan::start(tracer, name, SpanKind::Client, attributes)
}

/// The SERVER span of one gateway request (`tools/call echo`, `initialize`, ...),
/// a child of the client's `_meta.traceparent` when it sent one.
pub(crate) fn gateway_request(
    tracer: Option<&SdkTracer>,
    server: &str,
    method: &str,
    tool: Option<&str>,
    parent: Option<Context>,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> McpSpan {
    let Some(tracer) = tracer else {
        return McpSpan::none();
    };
    let mut all = attributes();
    all.push(KeyValue::new(semconv::ATTR_SERVER_NAME, server.to_owned()));
    all.push(KeyValue::new(semconv::ATTR_METHOD, method.to_owned()));
    let name = match tool {
        Some(tool) => {
            all.push(KeyValue::new(semconv::ATTR_TOOL, tool.to_owned()));
            format!("{method} {tool}")
        }
        None => format!("{method} {server}"),
    };
    let parent = parent.unwrap_or_else(parent_context);
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes(all)
        .start_with_context(tracer, &parent);
    McpSpan(Some(parent.with_span(span)))
}

/// The trace context a client sent in a request's `_meta` (`traceparent`,
/// `tracestate`), when valid.
pub(crate) fn context_from_meta(meta: &serde_json::Value) -> Option<Context> {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    struct MetaExtractor<'a>(&'a serde_json::Value);
    impl Extractor for MetaExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(serde_json::Value::as_str)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    meta.get("traceparent")?;
    let context =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&MetaExtractor(meta));
    context.span().span_context().is_valid().then_some(context)
}

/// The CLIENT span of a session's `initialize`.
pub(crate) fn initialize(target: SpanTarget<'_>) -> McpSpan {
    let Some(tracer) = target.tracer else {
        return McpSpan::none();
    };
    let mut attributes = target.attributes(1);
    attributes.push(KeyValue::new(semconv::ATTR_METHOD, "initialize"));
    McpSpan::start(tracer, "initialize", SpanKind::Client, attributes)
}

/// The INTERNAL span of a session's close.
pub(crate) fn close(
    target: SpanTarget<'_>,
    reason: &'static str,
    session_id: Option<&str>,
) -> McpSpan {
    let Some(tracer) = target.tracer else {
        return McpSpan::none();
    };
    let mut attributes = target.attributes(2);
    attributes.push(KeyValue::new(semconv::ATTR_CLOSE_REASON, reason));
    if let Some(id) = session_id {
        attributes.push(KeyValue::new(semconv::ATTR_SESSION_ID, id.to_owned()));
    }
    McpSpan::start(
        tracer,
        semconv::SPAN_SESSION_CLOSE,
        SpanKind::Internal,
        attributes,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_is_w3c_lowercase_hex() {
        let trace = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let span = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
        assert_eq!(
            super::traceparent(trace, span, 1),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
