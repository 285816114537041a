//! The one request path: [`send`] puts one [`McpRequest`] on one session under
//! its [`Deadline`]; [`pooled`] adds what a pooled call has on top (the pooled
//! session of `(server, scope)`, the breaker, the retry policy, session recovery).
//! Every operation of the runtime, of a lease and of an owned session ends here.
//!
//! On expiry, on the caller's cancel token, or when the caller drops the future
//! (an HTTP client hung up), `notifications/cancelled` goes to the server. The
//! outcome is recorded by guards on every exit: the [`RequestRecord`] (span,
//! in-flight gauge, metrics; a dropped call records `cancelled`) and the
//! [`BreakerPermit`](super::breaker::BreakerPermit) (a dropped probe lets the
//! next call probe).

use std::sync::Arc;
use std::time::Duration;

use rmcp::Peer;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientNotification, RequestId,
};
use rmcp::service::{PeerRequestOptions, RoleClient};

use super::breaker::Verdict;
use super::deadline::Deadline;
use super::error::{Error, ErrorKind};
use super::handler::health_request;
use super::pool::{Checkout, Pool};
use super::record::RequestRecord;
use super::request::{McpRequest, McpResult, RequestHandle};
use super::retry;
use super::server::ServerEntry;
use super::session::{CloseReason, Session};
use super::transport::{classify_service_error, raw_results};
use crate::telemetry::events::{Retried, SessionRecovered};

/// Deadline of the health ping sent before reusing a session whose last request timed out.
const SUSPECT_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How a call used its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionUse {
    pub(crate) reused: bool,
    pub(crate) age: Duration,
    /// The session's first call, on a session that replaced one lost to a
    /// failure: the server's state for the scope is gone.
    pub(crate) recovered: bool,
}

impl SessionUse {
    pub(crate) fn of(session: &Session) -> SessionUse {
        let reused = session.calls() > 0;
        SessionUse {
            reused,
            age: session.age(),
            recovered: session.recovered && !reused,
        }
    }
}

/// Runs `request` on the pooled session of `(entry, scope)` with the breaker,
/// the retry policy and session recovery, all within `deadline`.
pub(crate) async fn pooled(
    pool: &Arc<Pool>,
    entry: &Arc<ServerEntry>,
    scope: &str,
    request: &McpRequest,
    deadline: Deadline,
    handle: &RequestHandle,
) -> Result<(McpResult, SessionUse), Error> {
    let retry = &entry.spec.retry;
    let idempotent = request.tool().is_none_or(|tool| entry.is_idempotent(tool));
    let mut last_error: Option<Error> = None;
    for attempt in 1..=retry.max_attempts.max(1) {
        let permit = match entry.breaker.admit() {
            Ok(permit) => permit,
            Err(retry_in) => {
                return Err(last_error.unwrap_or(Error::BreakerOpen {
                    server: entry.name.to_string(),
                    retry_in: Duration::from_millis(retry_in.as_millis() as u64),
                }));
            }
        };
        let outcome = attempt_once(pool, entry, scope, request, deadline, handle).await;
        permit.settle(Verdict::of(
            outcome.as_ref().map(|_| ()).map_err(Error::kind),
        ));
        let error = match outcome {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        if error.kind() == ErrorKind::SessionExpired {
            SessionRecovered {
                server: &entry.name,
                scope,
                error_type: error.kind(),
            }
            .emit(&entry.telemetry);
        }
        let wait = retry::backoff(&error, attempt, retry);
        if attempt >= retry.max_attempts
            || !retry::safe_to_retry(error.kind(), idempotent)
            || pool.is_shutting_down()
            || deadline.would_pass_after(wait)
        {
            return Err(error);
        }
        Retried {
            server: &entry.name,
            error_type: error.kind(),
            attempt,
            backoff: wait,
        }
        .emit(&entry.telemetry);
        tokio::time::sleep(wait).await;
        last_error = Some(error);
    }
    Err(last_error.unwrap_or(Error::ShuttingDown))
}

/// One attempt: a checked-out session (health-checked first if its last request
/// timed out), then the request, all within `deadline`.
async fn attempt_once(
    pool: &Arc<Pool>,
    entry: &Arc<ServerEntry>,
    scope: &str,
    request: &McpRequest,
    deadline: Deadline,
    handle: &RequestHandle,
) -> Result<(McpResult, SessionUse), Error> {
    let checkout = checkout_healthy(pool, entry, scope);
    let (session, checkout) = deadline
        .bound(&entry.name, request.method(), checkout)
        .await??;
    let session_use = SessionUse::of(&session);
    let result = send(pool, &session, request, deadline, handle).await;
    drop(checkout);
    result.map(|result| (result, session_use))
}

/// The pooled session of `(entry, scope)`; one suspected of hanging (its last
/// request timed out) is pinged first, and replaced if it does not answer.
async fn checkout_healthy(
    pool: &Arc<Pool>,
    entry: &Arc<ServerEntry>,
    scope: &str,
) -> Result<(Arc<Session>, Checkout), Error> {
    let (session, checkout) = pool.acquire(entry, scope).await?;
    if !session.take_suspect() {
        return Ok((session, checkout));
    }
    // The rare path is boxed: inline, its futures (a whole health-check request)
    // would make every call's future twice as large, and it is moved on every call.
    Box::pin(replace_if_unhealthy(pool, entry, scope, session, checkout)).await
}

/// Pings a suspect session; one that does not answer is retired and replaced.
async fn replace_if_unhealthy(
    pool: &Arc<Pool>,
    entry: &Arc<ServerEntry>,
    scope: &str,
    session: Arc<Session>,
    checkout: Checkout,
) -> Result<(Arc<Session>, Checkout), Error> {
    if healthy(pool, &session).await {
        return Ok((session, checkout));
    }
    drop(checkout);
    pool.retire(&session, CloseReason::Error, Some(ErrorKind::Timeout))
        .await;
    pool.acquire(entry, scope).await
}

/// Pings a session; false (and the session is left to be retired) if it does not answer.
async fn healthy(pool: &Arc<Pool>, session: &Arc<Session>) -> bool {
    let probe = health_request(&session.server.spec);
    let deadline = Deadline::after(SUSPECT_PING_TIMEOUT);
    send(pool, session, &probe, deadline, &RequestHandle::default())
        .await
        .is_ok()
}

/// Sends `request` on `session` under `deadline`, records it, and applies its
/// consequences to the session (a dead transport or an expired session retires
/// it, a timeout makes it suspect).
pub(crate) async fn send(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    request: &McpRequest,
    deadline: Deadline,
    handle: &RequestHandle,
) -> Result<McpResult, Error> {
    let mut record = RequestRecord::start(session, request);
    let exchange = exchange(session, request, deadline, handle, &mut record);
    let outcome = tokio::select! {
        done = exchange => done,
        () = session.ended() => Err(Error::TransportClosed {
            server: session.server.name.to_string(),
            detail: "the session was closed".to_owned(),
        }),
    };
    let outcome = match outcome {
        Ok(result) => Ok(result),
        // Boxed for the same reason: the common path carries no failure handling.
        Err(error) => Box::pin(settle_session(pool, session, error)).await,
    };
    record.finish(&outcome);
    outcome
}

/// What a failed request does to its session.
async fn settle_session(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    error: Error,
) -> Result<McpResult, Error> {
    match error.kind() {
        ErrorKind::TransportClosed => {
            session.settle_exit().await;
            if pool.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let detail = session
                .exit_detail()
                .unwrap_or_else(|| "the connection closed".to_owned());
            pool.retire_in_background(
                session.clone(),
                CloseReason::ServerExit,
                Some(ErrorKind::TransportClosed),
            );
            Err(Error::TransportClosed {
                server: session.server.name.to_string(),
                detail,
            })
        }
        ErrorKind::SessionExpired => {
            let kind = Some(ErrorKind::SessionExpired);
            pool.retire_in_background(session.clone(), CloseReason::Error, kind);
            Err(error)
        }
        ErrorKind::Timeout => {
            session.mark_suspect();
            Err(error)
        }
        _ => Err(error),
    }
}

/// The exchange itself: hand the request to rmcp, route its progress and the
/// server's requests, and wait for the answer, the deadline or a cancel.
async fn exchange(
    session: &Arc<Session>,
    request: &McpRequest,
    deadline: Deadline,
    handle: &RequestHandle,
    record: &mut RequestRecord<'_>,
) -> Result<McpResult, Error> {
    let (server, method) = (&*session.server.name, request.method());
    let classify = |e| classify_service_error(server, method, deadline, e);
    let (rmcp_request, meta) = request.to_rmcp();
    let mut options = PeerRequestOptions::no_options();
    let trace = record.span().trace_meta();
    if let Some(meta) = merge_meta(meta, trace) {
        options = options.with_meta(meta);
    }
    // No rmcp timeout: on expiry rmcp awaits its `notifications/cancelled` send,
    // which over a stalled connection blocks past the deadline. Handing the
    // request to rmcp's worker is normally immediate; the bound covers a stuck one.
    let sending = session.peer.send_request_with_option(rmcp_request, options);
    let sent = deadline
        .bound(server, method, sending)
        .await?
        .map_err(classify)?;
    record.sent(&sent.id);
    let _progress = session.progress.track(
        &sent.progress_token,
        record.span(),
        handle.progress.as_ref(),
    );
    let _routed = session
        .server_requests
        .register(handle.server_requests.as_ref());
    // Dropped before the answer (deadline, cancel, the caller gone), it sends
    // `notifications/cancelled` without making anyone wait for it.
    let abandon = AbandonGuard {
        peer: session.peer.clone(),
        id: Some(sent.id.clone()),
    };
    let answer = deadline.bound(server, method, sent.await_response());
    let cancelled = async {
        match &handle.cancel {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let answer = tokio::select! {
        answer = answer => answer?,
        () = cancelled => return Err(Error::Cancelled { server: server.to_owned() }),
    };
    abandon.disarm();
    answer
        .map(|result| McpResult(raw_results::unwrap(result)))
        .map_err(classify)
}

/// The params' own `_meta` with the span's trace context written over it.
fn merge_meta(
    own: Option<rmcp::model::RequestMetaObject>,
    trace: Option<rmcp::model::RequestMetaObject>,
) -> Option<rmcp::model::RequestMetaObject> {
    match (own, trace) {
        (Some(mut own), Some(trace)) => {
            own.extend(trace);
            Some(own)
        }
        (own, trace) => own.or(trace),
    }
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
