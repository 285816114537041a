//! The call path: one request under a deadline with cancellation, error
//! classification, and the retry policy for pooled calls.
//!
//! Every request has a deadline. On expiry, or when the caller drops the future
//! (an HTTP client hung up), `notifications/cancelled` goes to the server and the
//! caller gets `timeout` (or nothing, having left). A retry happens only where it
//! is safe: the request never reached the server (`connect_failed`,
//! `initialize_failed`, `session_expired`, `rate_limited`), or the tool is listed
//! in `idempotent_tools`. Backoff is exponential with jitter and never outlasts
//! the call's deadline.

use std::sync::Arc;
use std::time::Duration;

use rmcp::Peer;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientNotification, ClientRequest,
    RequestId, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RoleClient, ServiceError};
use rmcp::transport::DynamicTransportError;
use rmcp::transport::streamable_http_client::StreamableHttpError;
use tokio::time::Instant;

use super::breaker::Admission;
use super::error::{Error, ErrorKind};
use super::handler::health_request;
use super::pool::Pool;
use super::progress::ProgressRouter;
use super::server::ServerEntry;
use super::session::{CloseReason, Session};
use super::transport::sse::SseError;
use crate::telemetry::events::{RequestFinished, Retried, SessionRecovered};
use crate::telemetry::semconv;
use crate::telemetry::spans::{self, McpSpan};

/// Deadline of the health ping sent before reusing a session whose last request timed out.
const SUSPECT_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How a pooled call used its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionUse {
    pub(crate) reused: bool,
    pub(crate) age: Duration,
}

/// One pooled request: what to send and how to label it.
pub(crate) struct PooledRequest<'a, F: Fn() -> ClientRequest> {
    pub(crate) entry: &'a Arc<ServerEntry>,
    pub(crate) scope: &'a str,
    pub(crate) method: &'static str,
    pub(crate) tool: Option<&'a str>,
    pub(crate) make: F,
    pub(crate) timeout: Duration,
}

/// Runs a request on the pooled session of `(server, scope)` with the breaker,
/// the retry policy and session recovery.
pub(crate) async fn pooled<F: Fn() -> ClientRequest>(
    pool: &Arc<Pool>,
    request: PooledRequest<'_, F>,
) -> Result<(ServerResult, SessionUse), Error> {
    let entry = request.entry;
    let deadline = Instant::now() + request.timeout;
    let retry = &entry.spec.retry;
    let mut last_error: Option<Error> = None;
    for attempt in 1..=retry.max_attempts.max(1) {
        let (admission, change) = entry.breaker.admit();
        entry.breaker_changed(change);
        if let Admission::Reject(retry_in) = admission {
            return Err(last_error.unwrap_or(Error::BreakerOpen {
                server: entry.name.to_string(),
                retry_in: Duration::from_millis(retry_in.as_millis() as u64),
            }));
        }
        let error = match attempt_once(pool, &request, deadline).await {
            Ok(done) => {
                entry.breaker_changed(entry.breaker.on_success());
                return Ok(done);
            }
            Err(error) => error,
        };
        if counts_against_server(error.kind()) {
            entry.breaker_changed(entry.breaker.on_failure());
        } else if matches!(
            error.kind(),
            ErrorKind::ShuttingDown | ErrorKind::PoolExhausted
        ) {
            if admission == Admission::Probe {
                entry.breaker.on_abandoned_probe();
            }
        } else {
            entry.breaker_changed(entry.breaker.on_success());
        }
        if error.kind() == ErrorKind::SessionExpired {
            SessionRecovered {
                server: &entry.name,
                scope: request.scope,
                error_type: error.kind(),
            }
            .emit(&entry.telemetry);
        }
        let idempotent =
            request.tool.is_some_and(|t| entry.is_idempotent(t)) || request.tool.is_none();
        if attempt >= retry.max_attempts
            || !safe_to_retry(error.kind(), idempotent)
            || pool.is_shutting_down()
        {
            return Err(error);
        }
        let backoff = backoff(&error, attempt, retry);
        if Instant::now() + backoff >= deadline {
            return Err(error);
        }
        Retried {
            server: &entry.name,
            error_type: error.kind(),
            attempt,
            backoff,
        }
        .emit(&entry.telemetry);
        tokio::time::sleep(backoff).await;
        last_error = Some(error);
    }
    Err(last_error.unwrap_or(Error::ShuttingDown))
}

/// One attempt: getting the session is bounded by `deadline` here; the request
/// itself is bounded (and its timeout recorded and cancelled) by `send`. An outer
/// timeout around `send` would race its deadline and drop it unrecorded.
async fn attempt_once<F: Fn() -> ClientRequest>(
    pool: &Arc<Pool>,
    request: &PooledRequest<'_, F>,
    deadline: Instant,
) -> Result<(ServerResult, SessionUse), Error> {
    let acquire = async {
        let (mut session, mut pin) = pool.acquire(request.entry, request.scope).await?;
        if session.take_suspect() && !healthy(pool, &session).await {
            drop(pin);
            pool.retire(&session, CloseReason::Error, Some(ErrorKind::Timeout))
                .await;
            (session, pin) = pool.acquire(request.entry, request.scope).await?;
        }
        Ok::<_, Error>((session, pin))
    };
    let (session, pin) = tokio::time::timeout_at(deadline, acquire)
        .await
        .map_err(|_| Error::Timeout {
            server: request.entry.name.to_string(),
            method: request.method.to_owned(),
            after: request.timeout,
        })??;
    let left = deadline.saturating_duration_since(Instant::now());
    let session_use = SessionUse {
        reused: session.calls() > 0,
        age: session.age(),
    };
    let result = send(
        pool,
        &session,
        (request.make)(),
        request.method,
        request.tool,
        left,
    )
    .await;
    drop(pin);
    match result {
        Ok(result) => Ok((result, session_use)),
        // Report the call's deadline, not what was left of it for this attempt.
        Err(Error::Timeout { server, method, .. }) => Err(Error::Timeout {
            server,
            method,
            after: request.timeout,
        }),
        Err(error) => Err(error),
    }
}

/// Pings a session; false (and the session is left to be retired) if it does not answer.
async fn healthy(pool: &Arc<Pool>, session: &Arc<Session>) -> bool {
    let (probe, method) = health_request(&session.server.spec);
    send(pool, session, probe, method, None, SUSPECT_PING_TIMEOUT)
        .await
        .is_ok()
}

/// Sends one request on `session` under `deadline`, inside its CLIENT span,
/// records it (metrics, span, Sentry), and applies its consequences to the
/// session (a dead transport retires it, an expired session retires it, a
/// timeout makes it suspect).
pub(crate) async fn send(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    request: ClientRequest,
    method: &str,
    tool: Option<&str>,
    deadline: Duration,
) -> Result<ServerResult, Error> {
    let started = Instant::now();
    let telemetry = &session.server.telemetry;
    let span = spans::request(
        session.span_target(),
        method,
        tool,
        &session.protocol_version,
        || session.mcp_session_id(),
    );
    let wants_payload = telemetry.capture_payloads || telemetry.sentry.send_default_pii();
    let arguments = match &request {
        ClientRequest::CallToolRequest(call) if wants_payload => call.params.arguments.clone(),
        _ => None,
    };
    if telemetry.capture_payloads
        && let Some(arguments) = &arguments
    {
        span.set(
            semconv::ATTR_TOOL_ARGUMENTS,
            serde_json::Value::Object(arguments.clone()).to_string(),
        );
    }
    let guard = session.begin_request();
    let exchange = request_once(
        &session.peer,
        &session.progress,
        &session.server.name,
        request,
        method,
        deadline,
        &span,
    );
    let (mut outcome, request_id) = tokio::select! {
        done = exchange => done,
        () = session.ended() => {
            let closed = Error::TransportClosed {
                server: session.server.name.to_string(),
                detail: "the session was closed".to_owned(),
            };
            (Err(closed), None)
        }
    };
    drop(guard);
    if let Err(error) = &outcome {
        match error.kind() {
            ErrorKind::TransportClosed => {
                session.settle_exit().await;
                if pool.is_shutting_down() {
                    outcome = Err(Error::ShuttingDown);
                } else {
                    let detail = session
                        .exit_detail()
                        .unwrap_or_else(|| "the connection closed".to_owned());
                    outcome = Err(Error::TransportClosed {
                        server: session.server.name.to_string(),
                        detail,
                    });
                    pool.retire_in_background(
                        session.clone(),
                        CloseReason::ServerExit,
                        Some(ErrorKind::TransportClosed),
                    );
                }
            }
            ErrorKind::SessionExpired => {
                pool.retire_in_background(
                    session.clone(),
                    CloseReason::Error,
                    Some(ErrorKind::SessionExpired),
                );
            }
            ErrorKind::Timeout => session.mark_suspect(),
            _ => {}
        }
    }
    let (error_type, error_message, rpc_code) = match &outcome {
        Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => {
            let text = result
                .content
                .iter()
                .filter_map(|c| c.as_text())
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            (Some(ErrorKind::ToolError), Some(text), None)
        }
        Ok(_) => (None, None, None),
        Err(error) => (
            Some(error.kind()),
            Some(error.to_string()),
            error.rpc_code(),
        ),
    };
    if let Some(kind) = error_type {
        span.record_error(
            kind.as_str(),
            error_message.as_deref().unwrap_or_default(),
            rpc_code,
        );
    }
    let result_value = match &outcome {
        Ok(ServerResult::CallToolResult(result)) if wants_payload => {
            serde_json::to_value(result).ok()
        }
        _ => None,
    };
    if telemetry.capture_payloads
        && let Some(result) = &result_value
    {
        span.set(semconv::ATTR_TOOL_RESULT, result.to_string());
    }
    RequestFinished {
        session: session.facts(),
        operation: &session.server.metrics.operation(method, tool),
        method,
        tool,
        error_type,
        error_message: error_message.as_deref(),
        rpc_code,
        request_id: request_id.as_ref(),
        span: &span,
        arguments: arguments.as_ref(),
        result: result_value.as_ref(),
        duration: started.elapsed(),
    }
    .emit(telemetry);
    outcome
}

async fn request_once(
    peer: &Peer<RoleClient>,
    progress: &Arc<ProgressRouter>,
    server: &str,
    request: ClientRequest,
    method: &str,
    deadline: Duration,
    span: &McpSpan,
) -> (Result<ServerResult, Error>, Option<RequestId>) {
    let classify = |e| classify_service_error(server, method, deadline, e);
    // No rmcp timeout: on expiry rmcp awaits its `notifications/cancelled` send,
    // which over a stalled connection blocks past the deadline. The deadline is
    // ours (below); the guard sends the cancellation in the background.
    let mut options = PeerRequestOptions::no_options();
    if let Some(meta) = span.trace_meta() {
        options = options.with_meta(meta);
    }
    // Handing the request to rmcp's worker is normally immediate (then this
    // timeout never even arms its timer); it bounds a worker that is stuck.
    let handle =
        match tokio::time::timeout(deadline, peer.send_request_with_option(request, options)).await
        {
            Ok(Ok(handle)) => handle,
            Ok(Err(error)) => return (Err(classify(error)), None),
            Err(_) => {
                let error = Error::Timeout {
                    server: server.to_owned(),
                    method: method.to_owned(),
                    after: deadline,
                };
                return (Err(error), None);
            }
        };
    let id = handle.id.clone();
    if span.is_recording() {
        span.set(semconv::ATTR_REQUEST_ID, id.to_string());
    }
    let _progress = progress.track(&handle.progress_token, span);
    // When the deadline passes (or this future is dropped first) the guard sends
    // `notifications/cancelled` without making the caller wait for it.
    let guard = AbandonGuard {
        peer: peer.clone(),
        id: Some(id.clone()),
    };
    let Ok(result) = tokio::time::timeout(deadline, handle.await_response()).await else {
        drop(guard);
        let error = Error::Timeout {
            server: server.to_owned(),
            method: method.to_owned(),
            after: deadline,
        };
        return (Err(error), Some(id));
    };
    guard.disarm();
    (result.map_err(classify), Some(id))
}

/// Sends `notifications/cancelled` when a request is abandoned: its future
/// dropped before the answer (the caller's deadline, an HTTP client that left).
struct AbandonGuard {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl AbandonGuard {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let peer = self.peer.clone();
        runtime.spawn(async move {
            let notification = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("request abandoned by the caller".to_owned()),
            ));
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                peer.send_notification(ClientNotification::CancelledNotification(notification)),
            )
            .await;
        });
    }
}

/// Failures that say the server is unwell (they feed the circuit breaker).
fn counts_against_server(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectFailed
            | ErrorKind::InitializeFailed
            | ErrorKind::Timeout
            | ErrorKind::TransportClosed
            | ErrorKind::HttpStatus
            | ErrorKind::RateLimited
    )
}

/// Every kind [`safe_to_retry`] may retry (given an idempotent request): the
/// `mcp_client_retries_total` series that exist from the start.
pub(crate) const RETRYABLE_KINDS: [ErrorKind; 7] = [
    ErrorKind::ConnectFailed,
    ErrorKind::InitializeFailed,
    ErrorKind::SessionExpired,
    ErrorKind::RateLimited,
    ErrorKind::TransportClosed,
    ErrorKind::HttpStatus,
    ErrorKind::Timeout,
];

/// Whether a failed attempt may be repeated.
fn safe_to_retry(kind: ErrorKind, idempotent: bool) -> bool {
    match kind {
        // The request never reached a server that could act on it.
        ErrorKind::ConnectFailed
        | ErrorKind::InitializeFailed
        | ErrorKind::SessionExpired
        | ErrorKind::RateLimited => true,
        // It may have run: only a tool that may run twice.
        ErrorKind::TransportClosed | ErrorKind::HttpStatus | ErrorKind::Timeout => idempotent,
        _ => false,
    }
}

fn backoff(error: &Error, attempt: u32, retry: &crate::config::RetryConfig) -> Duration {
    if error.kind() == ErrorKind::SessionExpired {
        return Duration::ZERO; // the fresh session is the fix; no reason to wait
    }
    let exponential = retry
        .initial_backoff
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(retry.max_backoff);
    let jittered = exponential.mul_f64(0.5 + fastrand::f64() * 0.5);
    let asked = error
        .retry_after()
        .and_then(|r| r.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    asked.map_or(jittered, |asked| asked.max(jittered))
}

/// Maps an rmcp request error onto our kinds.
pub(crate) fn classify_service_error(
    server: &str,
    method: &str,
    deadline: Duration,
    error: ServiceError,
) -> Error {
    let server_name = server.to_owned();
    match error {
        ServiceError::McpError(data) => match super::transport::http::too_large_limit(&data) {
            Some(limit) => Error::ResponseTooLarge {
                server: server_name,
                limit,
            },
            None => Error::Rpc {
                server: server_name,
                code: data.code.0,
                message: data.message.to_string(),
            },
        },
        ServiceError::TransportSend(transport) => classify_transport_error(server, &transport),
        ServiceError::TransportClosed => Error::TransportClosed {
            server: server_name,
            detail: "the connection closed".to_owned(),
        },
        ServiceError::Timeout { .. } => Error::Timeout {
            server: server_name,
            method: method.to_owned(),
            after: deadline,
        },
        ServiceError::Cancelled { .. } => Error::Cancelled {
            server: server_name,
        },
        ServiceError::UnexpectedResponse => Error::Protocol {
            server: server_name,
            detail: "unexpected response type".to_owned(),
        },
        other => Error::Protocol {
            server: server_name,
            detail: other.to_string(),
        },
    }
}

/// Maps a transport error (HTTP, legacy SSE, stdio I/O) onto our kinds.
pub(crate) fn classify_transport_error(server: &str, error: &DynamicTransportError) -> Error {
    let server = server.to_owned();
    if let Some(http) = error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return match http {
            StreamableHttpError::SessionExpired => Error::SessionExpired {
                server,
                detail: "the server no longer knows the session".to_owned(),
            },
            StreamableHttpError::HttpStatus(status) if status.status == 429 => Error::RateLimited {
                server,
                retry_after: status.retry_after.clone(),
            },
            StreamableHttpError::HttpStatus(status) => Error::HttpStatus {
                server,
                status: status.status,
                retry_after: status.retry_after.clone(),
            },
            StreamableHttpError::AuthRequired(_) => Error::HttpStatus {
                server,
                status: 401,
                retry_after: None,
            },
            StreamableHttpError::InsufficientScope(_) => Error::HttpStatus {
                server,
                status: 403,
                retry_after: None,
            },
            StreamableHttpError::ResponseBodyTooLarge { max_size } => Error::ResponseTooLarge {
                server,
                limit: *max_size,
            },
            StreamableHttpError::Client(inner) if inner.is_connect() => Error::ConnectFailed {
                server,
                detail: describe_reqwest(inner),
            },
            StreamableHttpError::Client(inner) => Error::TransportClosed {
                server,
                detail: describe_reqwest(inner),
            },
            StreamableHttpError::UnexpectedServerResponse(text) => match http_status_in(text) {
                Some(status) => Error::HttpStatus {
                    server,
                    status,
                    retry_after: None,
                },
                None => Error::Protocol {
                    server,
                    detail: text.to_string(),
                },
            },
            StreamableHttpError::TransportChannelClosed
            | StreamableHttpError::UnexpectedEndOfStream => Error::TransportClosed {
                server,
                detail: http.to_string(),
            },
            other => Error::Protocol {
                server,
                detail: other.to_string(),
            },
        };
    }
    if let Some(sse) = error.error.downcast_ref::<SseError>() {
        return match sse {
            SseError::Connect(_) => Error::ConnectFailed {
                server,
                detail: sse.to_string(),
            },
            SseError::HttpStatus {
                status: 429,
                retry_after,
            } => Error::RateLimited {
                server,
                retry_after: retry_after.clone(),
            },
            SseError::HttpStatus {
                status,
                retry_after,
            } => Error::HttpStatus {
                server,
                status: *status,
                retry_after: retry_after.clone(),
            },
            SseError::EventTooLarge { limit } => Error::ResponseTooLarge {
                server,
                limit: *limit,
            },
            _ => Error::TransportClosed {
                server,
                detail: sse.to_string(),
            },
        };
    }
    Error::TransportClosed {
        server,
        detail: error.error.to_string(),
    }
}

fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads the status out of rmcp's "HTTP 400: body" messages.
fn http_status_in(text: &str) -> Option<u16> {
    let rest = text.strip_prefix("HTTP ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_where_safe() {
        assert!(safe_to_retry(ErrorKind::ConnectFailed, false));
        assert!(safe_to_retry(ErrorKind::SessionExpired, false));
        assert!(!safe_to_retry(ErrorKind::TransportClosed, false));
        assert!(safe_to_retry(ErrorKind::TransportClosed, true));
        assert!(!safe_to_retry(ErrorKind::ToolError, true));
        assert!(!safe_to_retry(ErrorKind::InvalidRequest, true));
    }

    #[test]
    fn retryable_kinds_are_exactly_what_the_policy_retries() {
        for kind in ErrorKind::ALL {
            assert_eq!(
                safe_to_retry(kind, true),
                RETRYABLE_KINDS.contains(&kind),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let retry = crate::config::RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let closed = Error::TransportClosed {
            server: "s".into(),
            detail: String::new(),
        };
        for attempt in 1..=4 {
            let b = backoff(&closed, attempt, &retry);
            let cap =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(300));
            assert!(b <= cap && b >= cap / 2, "attempt {attempt}: {b:?}");
        }
        let limited = Error::RateLimited {
            server: "s".into(),
            retry_after: Some("2".into()),
        };
        assert_eq!(backoff(&limited, 1, &retry), Duration::from_secs(2));
        let expired = Error::SessionExpired {
            server: "s".into(),
            detail: String::new(),
        };
        assert_eq!(backoff(&expired, 1, &retry), Duration::ZERO);
    }

    #[test]
    fn reads_http_status_from_rmcp_messages() {
        assert_eq!(http_status_in("HTTP 400 Bad Request: {}"), Some(400));
        assert_eq!(http_status_in("nope"), None);
    }
}
