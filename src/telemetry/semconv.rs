//! Attribute, metric and label names: a contract with dashboards, alerts and tests
//! (DESIGN §5). Kept as our own strings rather than the semconv crate's, which marks
//! the MCP names experimental.

/// Live pooled and owned sessions.
pub const SESSIONS_ACTIVE: &str = "mcp_client_sessions_active";
/// Session opens, by outcome.
pub const SESSIONS_OPENED: &str = "mcp_client_sessions_opened_total";
/// Session closes, by reason.
pub const SESSIONS_CLOSED: &str = "mcp_client_sessions_closed_total";
/// Owned sessions dropped without `close()`.
pub const SESSIONS_UNCLOSED: &str = "mcp_client_sessions_unclosed_total";
/// Session lifetimes.
pub const SESSION_DURATION: &str = "mcp_client_session_duration_seconds";
/// Every request's duration, `initialize` and `ping` included.
pub const OPERATION_DURATION: &str = "mcp_client_operation_duration_seconds";
/// Requests in flight.
pub const INFLIGHT_REQUESTS: &str = "mcp_client_inflight_requests";
/// Retries, by the error that caused them.
pub const RETRIES: &str = "mcp_client_retries_total";
/// Sessions re-opened after the server lost them.
pub const SESSION_RECOVERIES: &str = "mcp_client_session_recoveries_total";
/// Circuit state: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_STATE: &str = "mcp_client_circuit_state";
/// A server's `max_sessions`.
pub const POOL_CAPACITY: &str = "mcp_client_pool_capacity";
/// Always 1, labelled with the build.
pub const BUILD_INFO: &str = "mcpwatch_build_info";

/// Label: configured server name.
pub const LABEL_SERVER: &str = "mcp_server";
/// Label: `pipe`, `tcp` or `inproc`.
pub const LABEL_NETWORK_TRANSPORT: &str = "network_transport";
/// Label: `ok` or `error`.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: close reason.
pub const LABEL_REASON: &str = "reason";
/// Label: error kind, empty on success.
pub const LABEL_ERROR_TYPE: &str = "error_type";
/// Label: MCP method.
pub const LABEL_METHOD: &str = "mcp_method_name";
/// Label: tool name (capped per server).
pub const LABEL_TOOL: &str = "gen_ai_tool_name";

/// Tool-name label value beyond the per-server cap.
pub const TOOL_OVERFLOW: &str = "_OTHER";
/// Distinct tool names per server before [`TOOL_OVERFLOW`].
pub const TOOL_LABEL_CAP: usize = 100;
