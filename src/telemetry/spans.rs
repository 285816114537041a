//! The spans of DESIGN §5, as `tracing` spans that `tracing-opentelemetry` turns
//! into OpenTelemetry spans: `{mcp.method.name} {target}` (kind CLIENT) for every
//! request and `initialize`, and the internal `mcp.session.close`.
//!
//! The caller's current span is the parent (so an agent request carrying a
//! `traceparent` parents the MCP spans). [`trace_meta`] gives the
//! `traceparent`/`tracestate` to put into the request's `params._meta`.

use opentelemetry::trace::TraceContextExt;
use rmcp::model::RequestMetaObject;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// What every MCP span of one server and scope carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanTarget<'a> {
    pub server: &'a str,
    pub scope: &'a str,
    pub network_transport: &'static str,
    pub address: Option<(&'a str, u16)>,
}

/// The CLIENT span of one request (`tools/call echo`, `tools/list`, `ping`, ...).
pub(crate) fn request(
    target: SpanTarget<'_>,
    method: &str,
    tool: Option<&str>,
    protocol_version: &str,
    session_id: impl FnOnce() -> Option<String>,
) -> Span {
    let span = tracing::info_span!(
        "mcp.request",
        otel.name = Empty,
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        mcp.method.name = method,
        gen_ai.tool.name = Empty,
        gen_ai.operation.name = Empty,
        mcp.protocol.version = protocol_version,
        mcp.session.id = Empty,
        jsonrpc.request.id = Empty,
        network.transport = target.network_transport,
        server.address = Empty,
        server.port = Empty,
        error.type = Empty,
        rpc.response.status_code = Empty,
        mcp.server.name = target.server,
        mcp.scope = target.scope,
        gen_ai.tool.call.arguments = Empty,
        gen_ai.tool.call.result = Empty,
    );
    if span.is_disabled() {
        // Nobody records spans: skip the formatting below (the hot path).
        return span;
    }
    match tool {
        Some(tool) => span.record("otel.name", format!("{method} {tool}")),
        None => span.record("otel.name", method),
    };
    if let Some(tool) = tool {
        span.record("gen_ai.tool.name", tool);
        if method == "tools/call" {
            span.record("gen_ai.operation.name", "execute_tool");
        }
    }
    if let Some(id) = session_id() {
        span.record("mcp.session.id", id);
    }
    record_address(&span, target.address);
    span
}

/// The CLIENT span of a session's `initialize`.
pub(crate) fn initialize(target: SpanTarget<'_>) -> Span {
    let span = tracing::info_span!(
        "mcp.initialize",
        otel.name = "initialize",
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        mcp.method.name = "initialize",
        mcp.protocol.version = Empty,
        mcp.session.id = Empty,
        network.transport = target.network_transport,
        server.address = Empty,
        server.port = Empty,
        error.type = Empty,
        mcp.server.name = target.server,
        mcp.scope = target.scope,
    );
    record_address(&span, target.address);
    span
}

/// The INTERNAL span of a session's close.
pub(crate) fn close(target: SpanTarget<'_>, reason: &str, session_id: Option<&str>) -> Span {
    let span = tracing::info_span!(
        "mcp.session.close",
        otel.name = "mcp.session.close",
        otel.kind = "internal",
        mcp.session.close.reason = reason,
        mcp.session.id = Empty,
        network.transport = target.network_transport,
        mcp.server.name = target.server,
        mcp.scope = target.scope,
        forced_kill = Empty,
    );
    if let Some(id) = session_id {
        span.record("mcp.session.id", id);
    }
    span
}

fn record_address(span: &Span, address: Option<(&str, u16)>) {
    if let Some((host, port)) = address {
        span.record("server.address", host);
        span.record("server.port", port);
    }
}

/// Marks a span failed with `error_type` (and the JSON-RPC code when there is one).
pub(crate) fn record_error(
    span: &Span,
    error_type: &str,
    description: &str,
    rpc_code: Option<i32>,
) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", description);
    if let Some(code) = rpc_code {
        span.record("rpc.response.status_code", code.to_string());
    }
}

/// `params._meta` entries carrying the span's trace context, if it is being traced.
pub(crate) fn trace_meta(span: &Span) -> Option<RequestMetaObject> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let mut meta = RequestMetaObject::new();
    meta.set_traceparent(format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    ));
    let state = span_context.trace_state().header();
    if !state.is_empty() {
        meta.set_tracestate(state);
    }
    Some(meta)
}

/// The span's trace id (32 hex characters), if it is being traced.
pub(crate) fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
