//! The record of one request: its span, its in-flight count and its metrics,
//! owned by one guard that records the outcome on every exit.
//!
//! [`RequestRecord::finish`] records the outcome the caller got. A record
//! dropped unfinished (the caller's future was dropped: an HTTP client hung up,
//! an outer timeout fired) records `error_type="cancelled"`, so no request is
//! ever missing from the operation histogram, the span is always ended, and the
//! in-flight gauge always comes back down.

use std::sync::Arc;

use rmcp::model::RequestId;
use serde_json::Value;
use tokio::time::Instant;

use super::error::{Error, ErrorKind};
use super::request::{McpRequest, McpResult};
use super::session::{RequestGuard, Session};
use crate::telemetry::events::RequestFinished;
use crate::telemetry::semconv;
use crate::telemetry::server_metrics::OperationMetrics;
use crate::telemetry::spans::{self, McpSpan};

/// One request's telemetry, from send to outcome.
pub(crate) struct RequestRecord<'a> {
    session: &'a Session,
    request: &'a McpRequest,
    span: McpSpan,
    started: Instant,
    request_id: Option<RequestId>,
    /// The tool's arguments, kept only when payloads may be recorded.
    arguments: Option<Value>,
    in_flight: Option<RequestGuard<'a>>,
    /// The `(method, tool)` metric handles, resolved once per server.
    operation: Arc<OperationMetrics>,
}

/// How a request ended, as its record sees it.
struct Outcome<'a> {
    error_type: Option<ErrorKind>,
    message: Option<String>,
    rpc_code: Option<i32>,
    result: Option<&'a McpResult>,
}

impl<'a> RequestRecord<'a> {
    /// Starts the record: the CLIENT span (parented by the caller's context),
    /// the in-flight count, and payload capture when configured.
    pub(crate) fn start(session: &'a Session, request: &'a McpRequest) -> RequestRecord<'a> {
        let telemetry = &session.server.telemetry;
        let span = spans::request(
            session.span_target(),
            request.method(),
            request.tool(),
            &session.protocol_version,
            || session.mcp_session_id(),
        );
        let wants_payload = telemetry.capture_payloads || telemetry.sentry.send_default_pii();
        let arguments = request
            .tool_arguments()
            .filter(|_| wants_payload)
            .map(|a| Value::Object(a.clone()));
        if telemetry.capture_payloads
            && let Some(arguments) = &arguments
        {
            span.set(semconv::ATTR_TOOL_ARGUMENTS, arguments.to_string());
        }
        RequestRecord {
            session,
            request,
            span,
            started: Instant::now(),
            request_id: None,
            arguments,
            in_flight: Some(session.begin_request()),
            operation: session
                .server
                .metrics
                .operation(request.method(), request.tool()),
        }
    }

    /// The request's span (its context goes into `params._meta`).
    pub(crate) fn span(&self) -> &McpSpan {
        &self.span
    }

    /// The request went out with `id`.
    pub(crate) fn sent(&mut self, id: &RequestId) {
        if self.span.is_recording() {
            self.span.set(semconv::ATTR_REQUEST_ID, id.to_string());
        }
        self.request_id = Some(id.clone());
    }

    /// Records the outcome the caller gets.
    pub(crate) fn finish(mut self, outcome: &Result<McpResult, Error>) {
        let outcome = match outcome {
            Ok(result) => {
                let message = result.tool_error_text();
                Outcome {
                    error_type: message.as_ref().map(|_| ErrorKind::ToolError),
                    message,
                    rpc_code: None,
                    result: Some(result),
                }
            }
            Err(error) => Outcome {
                error_type: Some(error.kind()),
                message: Some(error.to_string()),
                rpc_code: error.rpc_code(),
                result: None,
            },
        };
        self.emit(&outcome);
    }

    fn emit(&mut self, outcome: &Outcome<'_>) {
        // The request is over: the gauge goes down before anything is reported.
        self.in_flight = None;
        let telemetry = &self.session.server.telemetry;
        if let Some(kind) = outcome.error_type {
            let message = outcome.message.as_deref().unwrap_or_default();
            self.span
                .record_error(kind.as_str(), message, outcome.rpc_code);
        }
        let wants_payload = telemetry.capture_payloads || telemetry.sentry.send_default_pii();
        let result = outcome
            .result
            .filter(|_| wants_payload)
            .and_then(McpResult::payload);
        if telemetry.capture_payloads
            && let Some(result) = &result
        {
            self.span.set(semconv::ATTR_TOOL_RESULT, result.to_string());
        }
        let arguments = self.arguments.as_ref().and_then(Value::as_object);
        RequestFinished {
            session: self.session.facts(),
            operation: &self.operation,
            method: self.request.method(),
            tool: self.request.tool(),
            error_type: outcome.error_type,
            error_message: outcome.message.as_deref(),
            rpc_code: outcome.rpc_code,
            request_id: self.request_id.as_ref(),
            span: &self.span,
            arguments,
            result: result.as_ref(),
            duration: self.started.elapsed(),
        }
        .emit(telemetry);
    }
}

impl Drop for RequestRecord<'_> {
    fn drop(&mut self) {
        if self.in_flight.is_none() {
            return; // finished
        }
        let cancelled = Error::Cancelled {
            server: self.session.server.name.to_string(),
        };
        self.emit(&Outcome {
            error_type: Some(ErrorKind::Cancelled),
            message: Some(cancelled.to_string()),
            rpc_code: None,
            result: None,
        });
    }
}
