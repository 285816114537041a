//! Every lifecycle event of a session, as a struct whose `emit()` updates the
//! metrics and the log together, so the two can never drift. (Spans and Sentry
//! reports hang off the same `emit()`s.)

use std::panic::Location;
use std::time::Duration;

use super::Telemetry;
use crate::runtime::{CloseReason, ErrorKind};

/// A session finished `initialize`.
pub(crate) struct SessionOpened<'a> {
    pub server: &'a str,
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub protocol_version: &'a str,
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
    pub network_transport: &'static str,
    pub scope: &'a str,
    pub error_type: ErrorKind,
    pub message: &'a str,
    pub duration: Duration,
}

impl OpenFailed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        m.sessions_opened
            .with_label_values(&[self.server, self.network_transport, "error"])
            .inc();
        m.operation_duration
            .with_label_values(&[self.server, "initialize", "", self.error_type.as_str()])
            .observe(self.duration.as_secs_f64());
        tracing::warn!(
            mcp.server.name = self.server,
            mcp.scope = self.scope,
            error.type = self.error_type.as_str(),
            error = self.message,
            "session open failed"
        );
    }
}

/// One request finished (successfully or not).
pub(crate) struct RequestFinished<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    /// `None` on success; `Some(ToolError)` for an `isError` result.
    pub error_type: Option<ErrorKind>,
    pub duration: Duration,
}

impl RequestFinished<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        let tool = self
            .tool
            .map(|t| m.tool_label(self.server, t))
            .unwrap_or("");
        let error = self.error_type.map(ErrorKind::as_str).unwrap_or("");
        m.operation_duration
            .with_label_values(&[self.server, self.method, tool, error])
            .observe(self.duration.as_secs_f64());
        if let Some(kind) = self.error_type {
            tracing::debug!(
                mcp.server.name = self.server,
                mcp.method.name = self.method,
                gen_ai.tool.name = tool,
                error.type = kind.as_str(),
                "request failed"
            );
        }
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
        tracing::debug!(
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
}

impl SessionClosed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        let m = &telemetry.metrics;
        m.sessions_closed
            .with_label_values(&[self.server, self.network_transport, self.reason.as_str()])
            .inc();
        m.sessions_active
            .with_label_values(&[self.server, self.network_transport])
            .dec();
        m.session_duration
            .with_label_values(&[
                self.server,
                self.network_transport,
                self.error_type.map(ErrorKind::as_str).unwrap_or(""),
            ])
            .observe(self.age.as_secs_f64());
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
    pub server: &'a str,
    pub location: &'static Location<'static>,
    pub age: Duration,
    pub calls: u64,
}

impl SessionUnclosed<'_> {
    pub(crate) fn emit(&self, telemetry: &Telemetry) {
        telemetry
            .metrics
            .sessions_unclosed
            .with_label_values(&[self.server])
            .inc();
        tracing::warn!(
            mcp.server.name = self.server,
            opened_at = %self.location,
            age_ms = self.age.as_millis() as u64,
            calls = self.calls,
            "unclosed MCP session: dropped without close(); closing it now"
        );
    }
}
