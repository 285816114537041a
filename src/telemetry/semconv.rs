//! Attribute, metric and label names: a contract with dashboards, alerts and tests
//! (DESIGN §5). Kept as our own strings rather than the semconv crate's, which marks
//! the MCP names experimental.

/// Live pooled and owned sessions.
pub(crate) const SESSIONS_ACTIVE: &str = "mcp_client_sessions_active";
/// Session opens, by outcome.
pub(crate) const SESSIONS_OPENED: &str = "mcp_client_sessions_opened_total";
/// Session closes, by reason.
pub(crate) const SESSIONS_CLOSED: &str = "mcp_client_sessions_closed_total";
/// Owned sessions dropped without `close()`.
pub(crate) const SESSIONS_UNCLOSED: &str = "mcp_client_sessions_unclosed_total";
/// Session lifetimes.
pub(crate) const SESSION_DURATION: &str = "mcp_client_session_duration_seconds";
/// Every request's duration, `initialize` and `ping` included.
pub(crate) const OPERATION_DURATION: &str = "mcp_client_operation_duration_seconds";
/// Requests in flight.
pub(crate) const INFLIGHT_REQUESTS: &str = "mcp_client_inflight_requests";
/// Retries, by the error that caused them.
pub(crate) const RETRIES: &str = "mcp_client_retries_total";
/// Sessions re-opened after the server lost them.
pub(crate) const SESSION_RECOVERIES: &str = "mcp_client_session_recoveries_total";
/// Circuit state: 0 closed, 1 half-open, 2 open.
pub(crate) const CIRCUIT_STATE: &str = "mcp_client_circuit_state";
/// A server's `max_sessions`.
pub(crate) const POOL_CAPACITY: &str = "mcp_client_pool_capacity";
/// Always 1, labelled with the build.
pub(crate) const BUILD_INFO: &str = "mcpwatch_build_info";
/// Notifications received from servers (progress, log messages, list changes, ...).
pub(crate) const NOTIFICATIONS: &str = "mcp_client_notifications_total";
/// Requests from servers (sampling, elicitation, roots) and how the policy answered.
pub(crate) const SERVER_REQUESTS: &str = "mcp_client_server_requests_total";
/// Histogram: gateway requests served to MCP clients (DESIGN §10).
pub(crate) const GATEWAY_OPERATION_DURATION: &str = "mcp_server_operation_duration_seconds";
/// Histogram: lifetime of downstream (gateway) sessions, by close reason.
pub(crate) const GATEWAY_SESSION_DURATION: &str = "mcp_server_session_duration_seconds";
/// Gauge: downstream (gateway) sessions open.
pub(crate) const GATEWAY_SESSIONS_ACTIVE: &str = "mcpwatch_gateway_sessions_active";
/// Counter: downstream (gateway) sessions closed, by reason.
pub(crate) const GATEWAY_SESSIONS_CLOSED: &str = "mcpwatch_gateway_sessions_closed_total";
/// Why a downstream session ends: `DELETE`, idle past `gateway.session_idle_ttl`, or shutdown.
pub(crate) const GATEWAY_CLOSE_REASONS: [&str; 3] = ["deleted", "idle_timeout", "shutdown"];
/// Attribute: the downstream client's address (gateway SERVER spans).
pub(crate) const ATTR_CLIENT_ADDRESS: &str = "client.address";

/// Telemetry items dropped, by signal.
pub(crate) const TELEMETRY_DROPPED: &str = "mcpwatch_telemetry_dropped_total";
/// Failed telemetry exports, by signal.
pub(crate) const TELEMETRY_EXPORT_ERRORS: &str = "mcpwatch_telemetry_export_errors_total";

/// `mcp_method_name` values of [`NOTIFICATIONS`]: every notification counted,
/// progress by the transport (`runtime/transport.rs`), the others by the client
/// handler (`runtime/handler.rs`).
pub(crate) const NOTIFICATION_METHODS: [&str; 7] = [
    "notifications/progress",
    "notifications/cancelled",
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/updated",
    "notifications/message",
];

/// `signal` of [`TELEMETRY_DROPPED`] and [`TELEMETRY_EXPORT_ERRORS`]: OTLP spans.
pub(crate) const SIGNAL_SPANS: &str = "spans";
/// `signal` of [`TELEMETRY_DROPPED`] and [`TELEMETRY_EXPORT_ERRORS`]: Sentry envelopes.
pub(crate) const SIGNAL_SENTRY: &str = "sentry";
/// Every `signal` value.
pub(crate) const TELEMETRY_SIGNALS: [&str; 2] = [SIGNAL_SPANS, SIGNAL_SENTRY];

/// Label: configured server name.
pub(crate) const LABEL_SERVER: &str = "mcp_server";
/// Label: `pipe`, `tcp` or `inproc`.
pub(crate) const LABEL_NETWORK_TRANSPORT: &str = "network_transport";
/// Label: `ok` or `error`.
pub(crate) const LABEL_OUTCOME: &str = "outcome";
/// Label: close reason.
pub(crate) const LABEL_REASON: &str = "reason";
/// Label: error kind, empty on success.
pub(crate) const LABEL_ERROR_TYPE: &str = "error_type";
/// Label: MCP method.
pub(crate) const LABEL_METHOD: &str = "mcp_method_name";
/// Label: the telemetry signal (`spans`, `sentry`).
pub(crate) const LABEL_SIGNAL: &str = "signal";
/// Label: tool name (capped per server).
pub(crate) const LABEL_TOOL: &str = "gen_ai_tool_name";

/// Tool-name label value beyond the per-server cap.
pub(crate) const TOOL_OVERFLOW: &str = "_OTHER";
/// Distinct tool names per server before [`TOOL_OVERFLOW`].
pub(crate) const TOOL_LABEL_CAP: usize = 100;

// Span attributes (OpenTelemetry MCP semantic conventions, plus ours).

/// `mcp.method.name`.
pub(crate) const ATTR_METHOD: &str = "mcp.method.name";
/// `gen_ai.tool.name`.
pub(crate) const ATTR_TOOL: &str = "gen_ai.tool.name";
/// `gen_ai.operation.name` (`execute_tool` for `tools/call`).
pub(crate) const ATTR_OPERATION: &str = "gen_ai.operation.name";
/// `mcp.protocol.version`.
pub(crate) const ATTR_PROTOCOL_VERSION: &str = "mcp.protocol.version";
/// `mcp.session.id` (only when the server issued one).
pub(crate) const ATTR_SESSION_ID: &str = "mcp.session.id";
/// `jsonrpc.request.id`.
pub(crate) const ATTR_REQUEST_ID: &str = "jsonrpc.request.id";
/// `network.transport`: `pipe`, `tcp` or `inproc`.
pub(crate) const ATTR_NETWORK_TRANSPORT: &str = "network.transport";
/// `server.address`.
pub(crate) const ATTR_SERVER_ADDRESS: &str = "server.address";
/// `server.port`.
pub(crate) const ATTR_SERVER_PORT: &str = "server.port";
/// `error.type`.
pub(crate) const ATTR_ERROR_TYPE: &str = "error.type";
/// `rpc.response.status_code` (the JSON-RPC error code).
pub(crate) const ATTR_RPC_STATUS: &str = "rpc.response.status_code";
/// Ours: the configured server name.
pub(crate) const ATTR_SERVER_NAME: &str = "mcp.server.name";
/// Ours: the scope.
pub(crate) const ATTR_SCOPE: &str = "mcp.scope";
/// Ours: the close reason on `mcp.session.close`.
pub(crate) const ATTR_CLOSE_REASON: &str = "mcp.session.close.reason";
/// Ours: on the `mcp.progress` span event of a request, the progress so far.
pub(crate) const ATTR_PROGRESS: &str = "mcp.progress.value";
/// Ours: on the `mcp.progress` span event, the total when the server knows it.
pub(crate) const ATTR_PROGRESS_TOTAL: &str = "mcp.progress.total";
/// Ours: on the `mcp.progress` span event, the server's status message.
pub(crate) const ATTR_PROGRESS_MESSAGE: &str = "mcp.progress.message";
/// Name of the internal span of a session close.
pub(crate) const SPAN_SESSION_CLOSE: &str = "mcp.session.close";
/// `gen_ai.tool.call.arguments` (only with `capture_payloads`).
pub(crate) const ATTR_TOOL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// `gen_ai.tool.call.result` (only with `capture_payloads`).
pub(crate) const ATTR_TOOL_RESULT: &str = "gen_ai.tool.call.result";

/// Sentry tag keys (DESIGN §5).
pub(crate) mod sentry_tags {
    /// Configured server name.
    pub(crate) const SERVER: &str = "mcp.server.name";
    /// `stdio`, `http`, `sse`, `builtin`.
    pub(crate) const TRANSPORT: &str = "mcp.transport";
    /// `pipe`, `tcp`, `inproc`.
    pub(crate) const NETWORK_TRANSPORT: &str = "network.transport";
    /// MCP method.
    pub(crate) const METHOD: &str = "mcp.method.name";
    /// Tool name.
    pub(crate) const TOOL: &str = "mcp.tool.name";
    /// Negotiated protocol version.
    pub(crate) const PROTOCOL_VERSION: &str = "mcp.protocol.version";
    /// Error kind.
    pub(crate) const ERROR_TYPE: &str = "error.type";
    /// Scope.
    pub(crate) const SCOPE: &str = "mcp.scope";
    /// OpenTelemetry trace id of the failing call.
    pub(crate) const TRACE_ID: &str = "otel.trace_id";
}
