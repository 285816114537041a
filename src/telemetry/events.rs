//! Every lifecycle event of a session, as a struct whose `emit()` updates the
//! metrics, the current span and Sentry together, so the three can never drift.

use std::collections::BTreeMap;
use std::panic::Location;
use std::time::Duration;

use sentry::protocol::Level;
use serde_json::{Value, json};

use super::Telemetry;
use super::operation_attributes;
use super::semconv;
use super::semconv::sentry_tags as tags;
use super::sentry::RecentCalls;
use super::sentry::{RecentCall, Report};
use super::server_metrics::OperationMetrics;
use super::spans::McpSpan;
use crate::runtime::{CloseReason, ErrorKind};
use opentelemetry::KeyValue;

/// What every event of one session says about it.
#[derive(Clone, Copy)]
pub(crate) struct SessionFacts<'a> {
    pub server: &'a str,
    /// `stdio`, `http`, `sse`, `builtin`.
    pub transport: &'static str,
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub protocol_version: &'a str,
    pub age: Duration,
    pub calls: u64,
    pub recent: &'a RecentCalls,
}

impl SessionFacts<'_> {
    fn tags(&self) -> Vec<(&'static str, String)> {
        vec![
            (tags::SERVER, self.server.to_owned()),
            (tags::TRANSPORT, self.transport.to_owned()),
            (tags::NETWORK_TRANSPORT, self.network_transport.to_owned()),
            (tags::PROTOCOL_VERSION, self.protocol_version.to_owned()),
            (tags::SCOPE, self.scope.to_owned()),
        ]
    }
}

/// A session finished `initialize`.
pub(crate) struct SessionOpened<'a> {
    pub server: &'a str,
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub protocol_version: &'a str,
    pub session_id: Option<&'a str>,
    pub span: &'a McpSpan,
    pub duration: Duration,
}

impl SessionOpened<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        m.sessions_opened
            .with_label_values(&[self.server, self.network_transport, "ok"])
            .inc();
        m.sessions_active
            .with_label_values(&[self.server, self.network_transport])
            .inc();
        m.operation_duration
            .with_label_values(&[self.server, "initialize", "", ""])
            .observe(self.duration.as_secs_f64());
        if let Some(otlp) = telemetry.otlp() {
            let attributes = operation_attributes("initialize", None, None, self.network_transport);
            otlp.operation
                .record(self.duration.as_secs_f64(), &attributes);
        }
        if self.span.is_recording() {
            self.span.set(
                semconv::ATTR_PROTOCOL_VERSION,
                self.protocol_version.to_owned(),
            );
            if let Some(id) = self.session_id {
                self.span.set(semconv::ATTR_SESSION_ID, id.to_owned());
            }
        }
        tracing::debug!(
            mcp.server.name = self.server,
            mcp.scope = self.scope,
            mcp.protocol.version = self.protocol_version,
            duration_ms = self.duration.as_millis() as u64,
            "session opened"
        );
    }
}

/// A session could not be opened.
pub(crate) struct OpenFailed<'a> {
    pub server: &'a str,
    pub transport: &'static str,
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub error_type: ErrorKind,
    pub message: &'a str,
    pub span: &'a McpSpan,
    pub duration: Duration,
}

impl OpenFailed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        let error = self.error_type.as_str();
        m.sessions_opened
            .with_label_values(&[self.server, self.network_transport, "error"])
            .inc();
        m.operation_duration
            .with_label_values(&[self.server, "initialize", "", error])
            .observe(self.duration.as_secs_f64());
        if let Some(otlp) = telemetry.otlp() {
            let attributes =
                operation_attributes("initialize", None, Some(error), self.network_transport);
            otlp.operation
                .record(self.duration.as_secs_f64(), &attributes);
        }
        self.span.record_error(error, self.message, None);
        tracing::warn!(mcp.server.name = self.server, mcp.scope = self.scope, error.type = error, error = self.message, "session open failed");
        if telemetry.sentry.enabled() {
            let mut tags = vec![
                (tags::SERVER, self.server.to_owned()),
                (tags::TRANSPORT, self.transport.to_owned()),
                (tags::NETWORK_TRANSPORT, self.network_transport.to_owned()),
                (tags::METHOD, "initialize".to_owned()),
                (tags::ERROR_TYPE, error.to_owned()),
                (tags::SCOPE, self.scope.to_owned()),
            ];
            tags.extend(self.span.trace_id().map(|id| (tags::TRACE_ID, id)));
            telemetry.sentry.report(Report {
                level: Level::Error,
                message: format!(
                    "MCP session to {} could not be opened: {}",
                    self.server, self.message
                ),
                fingerprint: vec![
                    "mcp-open-failed".to_owned(),
                    self.server.to_owned(),
                    error.to_owned(),
                ],
                tags,
                mcp: BTreeMap::from([(
                    "duration_ms".to_owned(),
                    json!(self.duration.as_millis() as u64),
                )]),
                breadcrumbs: Vec::new(),
            });
        }
    }
}

/// One request finished (successfully or not).
pub(crate) struct RequestFinished<'a> {
    pub session: SessionFacts<'a>,
    /// This request's `(server, method, tool)` metric handles, from
    /// `ServerEntry.metrics`
    /// ([`ServerMetrics::operation`](super::server_metrics::ServerMetrics::operation)).
    pub operation: &'a OperationMetrics,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    /// `None` on success; `Some(ToolError)` for an `isError` result.
    pub error_type: Option<ErrorKind>,
    pub error_message: Option<&'a str>,
    pub rpc_code: Option<i32>,
    pub request_id: Option<&'a rmcp::model::RequestId>,
    pub span: &'a McpSpan,
    /// Tool arguments and result, present only when payloads may be recorded.
    pub arguments: Option<&'a rmcp::model::JsonObject>,
    pub result: Option<&'a Value>,
    pub duration: Duration,
}

impl RequestFinished<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let server = self.session.server;
        let tool = self.operation.tool_label();
        let error = self.error_type.map(ErrorKind::as_str);
        self.operation
            .observe(self.error_type, self.duration.as_secs_f64());
        if let Some(otlp) = telemetry.otlp() {
            let attributes = operation_attributes(
                self.method,
                self.tool,
                error,
                self.session.network_transport,
            );
            otlp.operation
                .record(self.duration.as_secs_f64(), &attributes);
        }
        if let Some(kind) = self.error_type {
            tracing::debug!(
                mcp.server.name = server,
                mcp.method.name = self.method,
                gen_ai.tool.name = tool,
                error.type = kind.as_str(),
                "request failed"
            );
        }
        if !telemetry.sentry.enabled() {
            return;
        }
        let call = RecentCall::new(self.method, self.tool, error, self.duration);
        if let (Some(kind), Some(tool)) = (self.error_type, self.tool)
            && self.method == "tools/call"
            && is_reported_tool_failure(kind, self.rpc_code)
        {
            let mut tags = self.session.tags();
            tags.push((tags::METHOD, self.method.to_owned()));
            tags.push((tags::TOOL, tool.to_owned()));
            tags.push((tags::ERROR_TYPE, kind.as_str().to_owned()));
            tags.extend(self.span.trace_id().map(|id| (tags::TRACE_ID, id)));
            let mut mcp = BTreeMap::from([
                (
                    "session.age_ms".to_owned(),
                    json!(self.session.age.as_millis() as u64),
                ),
                ("session.calls".to_owned(), json!(self.session.calls)),
                (
                    "duration_ms".to_owned(),
                    json!(self.duration.as_secs_f64() * 1000.0),
                ),
            ]);
            if let Some(id) = self.request_id {
                mcp.insert("jsonrpc.request.id".to_owned(), json!(id.to_string()));
            }
            if let Some(code) = self.rpc_code {
                mcp.insert("rpc.response.status_code".to_owned(), json!(code));
            }
            // A tool's own error text is part of its result: a payload.
            let message_is_payload = kind == ErrorKind::ToolError;
            if let Some(message) = self.error_message
                && (!message_is_payload || telemetry.sentry.send_default_pii())
            {
                mcp.insert("error.message".to_owned(), json!(message));
            }
            if telemetry.sentry.send_default_pii() {
                if let Some(arguments) = self.arguments {
                    mcp.insert(
                        "tool.arguments".to_owned(),
                        Value::Object(arguments.clone()),
                    );
                }
                if let Some(result) = self.result {
                    mcp.insert("tool.result".to_owned(), result.clone());
                }
            }
            let mut breadcrumbs = self.session.recent.snapshot();
            breadcrumbs.push(call.breadcrumb());
            telemetry.sentry.report(Report {
                level: Level::Error,
                message: format!("MCP tool {tool} on {server} failed: {}", kind.as_str()),
                fingerprint: vec![
                    "mcp-tool-error".to_owned(),
                    server.to_owned(),
                    tool.to_owned(),
                    kind.as_str().to_owned(),
                ],
                tags,
                mcp,
                breadcrumbs,
            });
        }
        self.session.recent.push(call);
    }
}

/// Tool failures worth an error report; caller errors and local refusals are not.
fn is_reported_tool_failure(kind: ErrorKind, rpc_code: Option<i32>) -> bool {
    match kind {
        ErrorKind::ProtocolError => rpc_code != Some(-32700),
        ErrorKind::ToolError
        | ErrorKind::Timeout
        | ErrorKind::TransportClosed
        | ErrorKind::SessionExpired
        | ErrorKind::HttpStatus
        | ErrorKind::ResponseTooLarge => true,
        _ => false,
    }
}

/// A request is tried again.
pub(crate) struct Retried<'a> {
    pub server: &'a str,
    pub error_type: ErrorKind,
    pub attempt: u32,
    pub backoff: Duration,
}

impl Retried<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .retries
            .with_label_values(&[self.server, self.error_type.as_str()])
            .inc();
        // Inside the caller's span: an OpenTelemetry span event.
        tracing::info!(
            mcp.server.name = self.server,
            error.type = self.error_type.as_str(),
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            "retrying request"
        );
    }
}

/// The server lost a session's state; a new session replaces it.
pub(crate) struct SessionRecovered<'a> {
    pub server: &'a str,
    pub scope: &'a str,
    pub error_type: ErrorKind,
}

impl SessionRecovered<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .session_recoveries
            .with_label_values(&[self.server, self.error_type.as_str()])
            .inc();
        tracing::warn!(
            mcp.server.name = self.server,
            mcp.scope = self.scope,
            error.type = self.error_type.as_str(),
            "server lost the session; its state is gone and a new session replaces it"
        );
        if telemetry.sentry.enabled() {
            sentry::Hub::main().add_breadcrumb(sentry::Breadcrumb {
                category: Some("mcp.session".to_owned()),
                level: Level::Warning,
                message: Some(format!(
                    "session to {} in scope {} lost by the server; state gone",
                    self.server, self.scope
                )),
                ..Default::default()
            });
        }
    }
}

/// A circuit breaker changed state.
pub(crate) struct BreakerChanged<'a> {
    pub server: &'a str,
    /// 0 closed, 1 half-open, 2 open.
    pub state: i64,
    pub state_name: &'static str,
}

impl BreakerChanged<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .circuit_state
            .with_label_values(&[self.server])
            .set(self.state);
        if self.state == 2 {
            tracing::warn!(
                mcp.server.name = self.server,
                state = self.state_name,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                mcp.server.name = self.server,
                state = self.state_name,
                "circuit breaker changed"
            );
        }
    }
}

/// A session closed.
pub(crate) struct SessionClosed<'a> {
    pub server: &'a str,
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub reason: CloseReason,
    /// The error that ended it, for `error` and `server_exit` closes.
    pub error_type: Option<ErrorKind>,
    pub age: Duration,
    pub forced_kill: bool,
    pub span: &'a McpSpan,
}

impl SessionClosed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        let error = self.error_type.map(ErrorKind::as_str);
        m.sessions_closed
            .with_label_values(&[self.server, self.network_transport, self.reason.as_str()])
            .inc();
        m.sessions_active
            .with_label_values(&[self.server, self.network_transport])
            .dec();
        m.session_duration
            .with_label_values(&[self.server, self.network_transport, error.unwrap_or("")])
            .observe(self.age.as_secs_f64());
        if let Some(otlp) = telemetry.otlp() {
            let mut attributes = operation_attributes("", None, error, self.network_transport);
            attributes.remove(0);
            otlp.session.record(self.age.as_secs_f64(), &attributes);
        }
        self.span.set("forced_kill", self.forced_kill);
        tracing::debug!(
            mcp.server.name = self.server,
            mcp.scope = self.scope,
            reason = self.reason.as_str(),
            age_ms = self.age.as_millis() as u64,
            forced_kill = self.forced_kill,
            "session closed"
        );
    }
}

/// An owned session was dropped without `close()`.
pub(crate) struct SessionUnclosed<'a> {
    pub session: SessionFacts<'a>,
    pub location: &'static Location<'static>,
}

impl SessionUnclosed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let server = self.session.server;
        telemetry
            .metrics
            .sessions_unclosed
            .with_label_values(&[server])
            .inc();
        tracing::warn!(
            mcp.server.name = server,
            opened_at = %self.location,
            age_ms = self.session.age.as_millis() as u64,
            calls = self.session.calls,
            "unclosed MCP session: dropped without close(); closing it now"
        );
        if telemetry.sentry.enabled() {
            telemetry.sentry.report(Report {
                level: Level::Warning,
                message: format!(
                    "Unclosed MCP session to {server}, opened at {}",
                    self.location
                ),
                fingerprint: vec!["mcp-unclosed-session".to_owned(), server.to_owned()],
                tags: self.session.tags(),
                mcp: BTreeMap::from([
                    ("opened_at.file".to_owned(), json!(self.location.file())),
                    ("opened_at.line".to_owned(), json!(self.location.line())),
                    (
                        "session.age_ms".to_owned(),
                        json!(self.session.age.as_millis() as u64),
                    ),
                    ("session.calls".to_owned(), json!(self.session.calls)),
                ]),
                breadcrumbs: self.session.recent.snapshot(),
            });
        }
    }
}

/// A notification from a server, counted by method.
pub(crate) struct NotificationReceived<'a> {
    pub server: &'a str,
    /// The JSON-RPC method (a bounded set: the notifications rmcp knows).
    pub method: &'static str,
}

impl NotificationReceived<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .notifications
            .with_label_values(&[self.server, self.method])
            .inc();
    }
}

/// A progress notification for a request in flight: an event on the request's span.
pub(crate) struct ProgressReceived<'a> {
    pub span: &'a McpSpan,
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<&'a str>,
}

impl ProgressReceived<'_> {
    pub(crate) fn emit(&self) {
        let mut attributes = vec![KeyValue::new(semconv::ATTR_PROGRESS, self.progress)];
        if let Some(total) = self.total {
            attributes.push(KeyValue::new(semconv::ATTR_PROGRESS_TOTAL, total));
        }
        if let Some(message) = self.message {
            attributes.push(KeyValue::new(
                semconv::ATTR_PROGRESS_MESSAGE,
                message.to_owned(),
            ));
        }
        self.span.add_event("mcp.progress", attributes);
    }
}

/// A request from a server (sampling, elicitation, roots) answered by policy.
pub(crate) struct ServerRequestAnswered<'a> {
    pub server: &'a str,
    /// `sampling/createMessage`, `elicitation/create`, `roots/list`, ...
    pub method: &'static str,
    /// `accept`, `decline` or `unsupported`.
    pub outcome: &'static str,
}

impl ServerRequestAnswered<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .server_requests
            .with_label_values(&[self.server, self.method, self.outcome])
            .inc();
        tracing::info!(
            mcp.server.name = self.server,
            mcp.method.name = self.method,
            outcome = self.outcome,
            "request from the server answered by policy"
        );
    }
}
