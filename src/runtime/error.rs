//! Typed errors of the runtime and their bounded classification.
//!
//! [`Error`] carries the details a person needs (which server, which limit,
//! what the server said); [`ErrorKind`] is the bounded label that metrics,
//! spans (`error.type`) and the agent's HTTP mapping use. A new failure mode
//! gets a new `Error` variant, and maps onto an existing kind where one fits.

use std::time::Duration;

/// The bounded classification of every failure: the `error_type` metric label,
/// the span attribute `error.type` and the agent's `{"error": {"type": ..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input from the caller (bad scope, bad body, JSON-RPC -32600/-32601/-32602).
    InvalidRequest,
    /// Missing or wrong bearer token (agent only).
    Unauthorized,
    /// The server name is not configured.
    UnknownServer,
    /// The request body exceeded the configured limit (agent only).
    PayloadTooLarge,
    /// The upstream server answered HTTP 429.
    RateLimited,
    /// The caller went away before the call finished.
    Cancelled,
    /// The tool ran and reported failure (`isError: true`).
    ToolError,
    /// The call's deadline passed.
    Timeout,
    /// The transport died under the call (child exited, stream closed).
    TransportClosed,
    /// The server no longer knows the session.
    SessionExpired,
    /// The transport could not be established (spawn failed, connection refused).
    ConnectFailed,
    /// The transport came up but `initialize` failed.
    InitializeFailed,
    /// The upstream answered an HTTP error status.
    HttpStatus,
    /// A response exceeded `max_response_bytes`.
    ResponseTooLarge,
    /// Any other JSON-RPC error, or a malformed response.
    ProtocolError,
    /// The server's circuit breaker is open.
    BreakerOpen,
    /// No session slot became free within `pool.queue_timeout`.
    PoolExhausted,
    /// The runtime is shutting down.
    ShuttingDown,
}

impl ErrorKind {
    /// Every kind, in declaration order (for tests and documentation).
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidRequest,
        ErrorKind::Unauthorized,
        ErrorKind::UnknownServer,
        ErrorKind::PayloadTooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Cancelled,
        ErrorKind::ToolError,
        ErrorKind::Timeout,
        ErrorKind::TransportClosed,
        ErrorKind::SessionExpired,
        ErrorKind::ConnectFailed,
        ErrorKind::InitializeFailed,
        ErrorKind::HttpStatus,
        ErrorKind::ResponseTooLarge,
        ErrorKind::ProtocolError,
        ErrorKind::BreakerOpen,
        ErrorKind::PoolExhausted,
        ErrorKind::ShuttingDown,
    ];

    /// The label value, e.g. `"transport_closed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::UnknownServer => "unknown_server",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ToolError => "tool_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::TransportClosed => "transport_closed",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::InitializeFailed => "initialize_failed",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::ResponseTooLarge => "response_too_large",
            ErrorKind::ProtocolError => "protocol_error",
            ErrorKind::BreakerOpen => "breaker_open",
            ErrorKind::PoolExhausted => "pool_exhausted",
            ErrorKind::ShuttingDown => "shutting_down",
        }
    }

    /// Whether the tool (or the request) may have run at the server when a call
    /// ends with this kind. The one rule behind the retry policy, the agent's
    /// idempotency store (answers that may have run are kept and replayed; the
    /// others are forgotten, so a retry runs the call) and the `/v1` error
    /// body's `may_have_run`.
    ///
    /// Never ran: the call was refused before it reached the server
    /// (`breaker_open`, `pool_exhausted`, `shutting_down`, `unknown_server`,
    /// `invalid_request`, `unauthorized`, `payload_too_large`), or the server
    /// refused it before processing (`connect_failed`, `initialize_failed`,
    /// `rate_limited`, `session_expired`). Every other answer may have run.
    pub const fn tool_may_have_run(self) -> bool {
        !matches!(
            self,
            ErrorKind::BreakerOpen
                | ErrorKind::PoolExhausted
                | ErrorKind::ShuttingDown
                | ErrorKind::UnknownServer
                | ErrorKind::InvalidRequest
                | ErrorKind::Unauthorized
                | ErrorKind::PayloadTooLarge
                | ErrorKind::ConnectFailed
                | ErrorKind::InitializeFailed
                | ErrorKind::RateLimited
                | ErrorKind::SessionExpired
        )
    }

    /// The HTTP status the agent answers with (DESIGN §4).
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::UnknownServer => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Cancelled => 499,
            ErrorKind::ToolError => 200,
            ErrorKind::Timeout => 504,
            ErrorKind::TransportClosed
            | ErrorKind::SessionExpired
            | ErrorKind::ConnectFailed
            | ErrorKind::InitializeFailed
            | ErrorKind::HttpStatus
            | ErrorKind::ResponseTooLarge
            | ErrorKind::ProtocolError => 502,
            ErrorKind::BreakerOpen | ErrorKind::PoolExhausted | ErrorKind::ShuttingDown => 503,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the runtime. Match on [`Error::kind`] for handling; the
/// `Display` text is for people (it never contains secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server name is not in the configuration.
    #[error("unknown server `{server}`")]
    UnknownServer {
        /// The name asked for.
        server: String,
    },
    /// The caller's input was rejected before anything was sent.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// What is wrong with it.
        message: String,
    },
    /// The request's deadline passed; the request was cancelled at the server.
    #[error("{server}: `{method}` timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// Server name.
        server: String,
        /// The MCP method, e.g. `tools/call`.
        method: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The caller went away (or cancelled) before the call finished.
    #[error("{server}: call cancelled by the caller")]
    Cancelled {
        /// Server name.
        server: String,
    },
    /// The transport died under the request.
    #[error("{server}: transport closed ({detail})")]
    TransportClosed {
        /// Server name.
        server: String,
        /// What was observed, e.g. "child exited with signal 9".
        detail: String,
    },
    /// The server no longer knows the session.
    #[error("{server}: session expired ({detail})")]
    SessionExpired {
        /// Server name.
        server: String,
        /// What was observed.
        detail: String,
    },
    /// The transport could not be established.
    #[error("{server}: connect failed: {detail}")]
    ConnectFailed {
        /// Server name.
        server: String,
        /// Why.
        detail: String,
    },
    /// The transport came up but the MCP handshake failed.
    #[error("{server}: initialize failed: {detail}")]
    InitializeFailed {
        /// Server name.
        server: String,
        /// Why.
        detail: String,
    },
    /// The upstream answered an HTTP error status.
    #[error("{server}: upstream answered HTTP {status}{}", retry_after.as_ref().map(|r| format!(" (Retry-After: {r})")).unwrap_or_default())]
    HttpStatus {
        /// Server name.
        server: String,
        /// The HTTP status code.
        status: u16,
        /// The upstream's `Retry-After` (sent with 503 and other 5xx), passed on as is.
        retry_after: Option<String>,
    },
    /// The upstream answered HTTP 429.
    #[error("{server}: rate limited by the upstream{}", retry_after.as_ref().map(|r| format!(" (Retry-After: {r})")).unwrap_or_default())]
    RateLimited {
        /// Server name.
        server: String,
        /// The upstream's `Retry-After` value, passed on as is.
        retry_after: Option<String>,
    },
    /// A response exceeded `max_response_bytes`.
    #[error("{server}: response larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// Server name.
        server: String,
        /// The configured limit.
        limit: usize,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{server}: JSON-RPC error {code}: {message}")]
    Rpc {
        /// Server name.
        server: String,
        /// JSON-RPC error code.
        code: i32,
        /// The server's message.
        message: String,
        /// The error's `data`, as the server sent it.
        data: Option<serde_json::Value>,
    },
    /// The server broke the protocol (unexpected or malformed response).
    #[error("{server}: protocol error: {detail}")]
    Protocol {
        /// Server name.
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// The server's circuit breaker is open; no request was sent.
    #[error("{server}: circuit breaker open, retry in {}", humantime::format_duration(*retry_in))]
    BreakerOpen {
        /// Server name.
        server: String,
        /// Time left in the cool-down (rounded to milliseconds).
        retry_in: Duration,
    },
    /// Every session slot stayed busy for the whole queue timeout.
    #[error("{server}: no session slot free after {}", humantime::format_duration(*waited))]
    PoolExhausted {
        /// Server name.
        server: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// The runtime is shutting down and accepts no new work.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

impl Error {
    /// The bounded classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownServer { .. } => ErrorKind::UnknownServer,
            Error::InvalidRequest { .. } => ErrorKind::InvalidRequest,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::TransportClosed { .. } => ErrorKind::TransportClosed,
            Error::SessionExpired { .. } => ErrorKind::SessionExpired,
            Error::ConnectFailed { .. } => ErrorKind::ConnectFailed,
            Error::InitializeFailed { .. } => ErrorKind::InitializeFailed,
            Error::HttpStatus { .. } => ErrorKind::HttpStatus,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::ResponseTooLarge { .. } => ErrorKind::ResponseTooLarge,
            Error::Rpc { code, .. } => match *code {
                -32602..=-32600 => ErrorKind::InvalidRequest,
                _ => ErrorKind::ProtocolError,
            },
            Error::Protocol { .. } => ErrorKind::ProtocolError,
            Error::BreakerOpen { .. } => ErrorKind::BreakerOpen,
            Error::PoolExhausted { .. } => ErrorKind::PoolExhausted,
            Error::ShuttingDown => ErrorKind::ShuttingDown,
        }
    }

    /// The upstream's `Retry-After`, when it gave one (with a 429, a 503 or another 5xx).
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::HttpStatus { retry_after, .. } => {
                retry_after.as_deref()
            }
            _ => None,
        }
    }

    /// The JSON-RPC error code, when the server answered with one.
    pub fn rpc_code(&self) -> Option<i32> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Shorthand for results of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label() {
        let mut labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn caller_rpc_errors_are_invalid_requests() {
        for (code, kind) in [
            (-32600, ErrorKind::InvalidRequest),
            (-32601, ErrorKind::InvalidRequest),
            (-32602, ErrorKind::InvalidRequest),
            (-32603, ErrorKind::ProtocolError),
            (-32000, ErrorKind::ProtocolError),
        ] {
            let error = Error::Rpc {
                server: "s".into(),
                code,
                message: "m".into(),
                data: None,
            };
            assert_eq!(error.kind(), kind, "code {code}");
        }
    }

    #[test]
    fn statuses_follow_the_design_table() {
        assert_eq!(ErrorKind::ToolError.http_status(), 200);
        assert_eq!(ErrorKind::Timeout.http_status(), 504);
        assert_eq!(ErrorKind::Cancelled.http_status(), 499);
        assert_eq!(ErrorKind::ShuttingDown.http_status(), 503);
        assert_eq!(ErrorKind::SessionExpired.http_status(), 502);
    }
}
