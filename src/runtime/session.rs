//! One live session: its connection, its counters, and the one close path that
//! every close reason ends in.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::Peer;
use rmcp::service::RoleClient;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ErrorKind;
use super::progress::ProgressRouter;
use super::server::ServerEntry;
use super::server_requests::ServerRequestRoutes;
use super::transport::http::SessionIdCell;
use super::transport::stdio::ChildProcess;
use super::transport::{Connection, McpService};
use crate::telemetry::events::{SessionClosed, SessionFacts};
use crate::telemetry::sentry::RecentCalls;
use crate::telemetry::spans::{self, McpSpan, SpanTarget};

/// Why a session closed: the bounded `reason` label (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// `close()`, `close_session` or `close_server` by the caller.
    Explicit,
    /// The scope ended (`close_scope`).
    ScopeClosed,
    /// The least recently used idle session made room at a cap.
    Evicted,
    /// Idle longer than its TTL.
    IdleTimeout,
    /// Older than `pool.max_lifetime`.
    MaxLifetime,
    /// The server went away (child exited, stream closed).
    ServerExit,
    /// The session broke (expired, failed health check).
    Error,
    /// The runtime shut down.
    Shutdown,
    /// An owned session was dropped without `close()`.
    Unclosed,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Explicit,
        CloseReason::ScopeClosed,
        CloseReason::Evicted,
        CloseReason::IdleTimeout,
        CloseReason::MaxLifetime,
        CloseReason::ServerExit,
        CloseReason::Error,
        CloseReason::Shutdown,
        CloseReason::Unclosed,
    ];

    /// The label value, e.g. `"scope_closed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Explicit => "explicit",
            CloseReason::ScopeClosed => "scope_closed",
            CloseReason::Evicted => "evicted",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::ServerExit => "server_exit",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Unclosed => "unclosed",
        }
    }
}

/// A snapshot of one live session (`GET /v1/sessions`).
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Server name.
    pub server: String,
    /// Scope (`default` when none was given; the owner's scope for owned sessions).
    pub scope: String,
    /// `stdio`, `http`, `sse` or `builtin`.
    pub transport: &'static str,
    /// Milliseconds since it opened.
    pub age_ms: u64,
    /// Milliseconds since its last request finished (or it opened).
    pub idle_ms: u64,
    /// Requests made on it.
    pub calls: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// True for a session from `Runtime::open` (owned by the caller, not pooled).
    pub owned: bool,
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// The server's `Mcp-Session-Id`, when it issued one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_session_id: Option<String>,
    /// The stdio server's process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// What closing a session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CloseOutcome {
    /// The stdio server was still running when its group was killed.
    pub(crate) forced_kill: bool,
}

/// One live MCP session.
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) server: Arc<ServerEntry>,
    pub(crate) scope: Arc<str>,
    pub(crate) owned: bool,
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) protocol_version: String,
    /// Opened to replace a session of its scope lost to a failure.
    pub(crate) recovered: bool,
    /// Routes progress notifications to this session's requests.
    pub(crate) progress: Arc<ProgressRouter>,
    /// Routes the server's own requests to the caller in flight.
    pub(crate) server_requests: Arc<ServerRequestRoutes>,
    service: Mutex<Option<McpService>>,
    process: Option<ChildProcess>,
    session_id: Option<SessionIdCell>,
    opened_at: Instant,
    /// Nanoseconds after `opened_at` when the last request finished.
    last_used_ns: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
    /// A request timed out: check the session with a ping before its next use.
    suspect: AtomicBool,
    closed: OnceCell<CloseOutcome>,
    /// Cancelled when the close has finished: requests still waiting end then.
    ended: CancellationToken,
    /// Recent calls, for Sentry breadcrumbs.
    recent: RecentCalls,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("server", &self.server.name)
            .field("scope", &self.scope)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        id: u64,
        server: Arc<ServerEntry>,
        scope: Arc<str>,
        owned: bool,
        connection: Connection,
    ) -> Session {
        let peer = connection.service.peer().clone();
        let recovered = !owned && server.lost.take(&scope);
        Session {
            id,
            server,
            scope,
            owned,
            peer,
            protocol_version: connection.protocol_version,
            recovered,
            progress: connection.progress,
            server_requests: connection.server_requests,
            service: Mutex::new(Some(connection.service)),
            process: connection.process,
            session_id: connection.session_id,
            opened_at: Instant::now(),
            last_used_ns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            suspect: AtomicBool::new(false),
            closed: OnceCell::new(),
            ended: CancellationToken::new(),
            recent: RecentCalls::default(),
        }
    }

    /// The server's `Mcp-Session-Id`, when it issued one.
    pub(crate) fn mcp_session_id(&self) -> Option<String> {
        self.session_id.as_ref().and_then(SessionIdCell::get)
    }

    /// What every span of this session carries.
    pub(crate) fn span_target(&self) -> SpanTarget<'_> {
        self.server.span_target(&self.scope)
    }

    /// What every event of this session says about it.
    pub(crate) fn facts(&self) -> SessionFacts<'_> {
        SessionFacts {
            server: &self.server.name,
            transport: self.server.kind.as_str(),
            network_transport: self.server.kind.network_transport(),
            scope: &self.scope,
            protocol_version: &self.protocol_version,
            age: self.age(),
            calls: self.calls(),
            recent: &self.recent,
        }
    }

    /// Time since the session opened.
    pub(crate) fn age(&self) -> Duration {
        self.opened_at.elapsed()
    }

    /// Time since the last request finished (or since open).
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_nanos(self.last_used_ns.load(Ordering::Relaxed));
        self.age().saturating_sub(last)
    }

    /// Requests made so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// True once a close has started.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.initialized() || self.service.lock().map(|s| s.is_none()).unwrap_or(true)
    }

    /// True when the transport is gone (child exited, stream ended).
    pub(crate) fn transport_closed(&self) -> bool {
        self.peer.is_transport_closed()
            || self
                .process
                .as_ref()
                .is_some_and(|p| p.exit_status().is_some())
    }

    /// How the stdio server exited, for error messages.
    pub(crate) fn exit_detail(&self) -> Option<String> {
        self.process.as_ref().map(ChildProcess::describe_exit)
    }

    /// Waits briefly for a dying stdio server to be reaped, so its exit status is known.
    pub(crate) async fn settle_exit(&self) {
        if let Some(process) = &self.process {
            process.wait_exit(Duration::from_millis(100)).await;
        }
    }

    /// Resolves once the session's close has finished (graceful or not). A
    /// request still waiting then (its server answered nothing, not even the
    /// close) must not outlive the session.
    pub(crate) async fn ended(&self) {
        self.ended.cancelled().await;
    }

    /// Kills the stdio server's process group now, whatever state the close is in.
    /// True if the server was still running.
    pub(crate) fn kill_now(&self) -> bool {
        self.process.as_ref().is_some_and(ChildProcess::kill_group)
    }

    pub(crate) fn mark_suspect(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }

    /// Takes the suspect mark: true if the caller should health-check first.
    pub(crate) fn take_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed) && self.suspect.swap(false, Ordering::Relaxed)
    }

    /// Marks a request as started; the guard marks it finished.
    pub(crate) fn begin_request(&self) -> RequestGuard<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.server.metrics.inflight.inc();
        RequestGuard { session: self }
    }

    /// The snapshot for the session list.
    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            server: self.server.name.to_string(),
            scope: self.scope.to_string(),
            transport: self.server.kind.as_str(),
            age_ms: self.age().as_millis() as u64,
            idle_ms: self.idle().as_millis() as u64,
            calls: self.calls(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            owned: self.owned,
            protocol_version: self.protocol_version.clone(),
            mcp_session_id: self.session_id.as_ref().and_then(SessionIdCell::get),
            pid: self.process.as_ref().map(ChildProcess::pid),
        }
    }

    /// Closes the session: graceful close within `grace`, then the stdio process
    /// group is killed, then the `closed` event. Idempotent: later and concurrent
    /// callers wait for the first close and get its outcome. The caller removes the
    /// session from the pool's maps first (see `Pool::retire`).
    pub(crate) async fn close(
        &self,
        reason: CloseReason,
        error: Option<ErrorKind>,
        grace: Duration,
    ) -> CloseOutcome {
        *self
            .closed
            .get_or_init(|| self.close_once(reason, error, grace))
            .await
    }

    async fn close_once(
        &self,
        reason: CloseReason,
        error: Option<ErrorKind>,
        grace: Duration,
    ) -> CloseOutcome {
        let span = spans::close(
            self.span_target(),
            reason.as_str(),
            self.mcp_session_id().as_deref(),
        );
        self.close_steps(reason, error, grace, &span).await
    }

    async fn close_steps(
        &self,
        reason: CloseReason,
        error: Option<ErrorKind>,
        grace: Duration,
        span: &McpSpan,
    ) -> CloseOutcome {
        if !self.owned && matches!(reason, CloseReason::ServerExit | CloseReason::Error) {
            self.server.lost.mark(&self.scope);
        }
        let started = Instant::now();
        let service = self.service.lock().ok().and_then(|mut s| s.take());
        if let Some(service) = service
            && tokio::time::timeout(grace, service.cancel()).await.is_err()
        {
            tracing::debug!(mcp.server.name = %self.server.name, "graceful close ran out of time");
        }
        let mut forced_kill = false;
        if let Some(process) = &self.process {
            let left = grace
                .saturating_sub(started.elapsed())
                .min(Duration::from_millis(500));
            process.wait_exit(left).await;
            forced_kill = process.kill_group();
            if forced_kill {
                // SIGKILL is not instant (a busy box, many threads): when close
                // returns, the server is gone, not just signalled.
                process.wait_exit(Duration::from_millis(500)).await;
            }
        }
        self.ended.cancel();
        SessionClosed {
            server: &self.server.name,
            network_transport: self.server.kind.network_transport(),
            scope: &self.scope,
            reason,
            error_type: error,
            age: self.age(),
            forced_kill,
            span,
        }
        .emit(&self.server.telemetry);
        CloseOutcome { forced_kill }
    }
}

/// Marks the end of one request on a session.
pub(crate) struct RequestGuard<'a> {
    session: &'a Session,
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        let session = self.session;
        session.in_flight.fetch_sub(1, Ordering::Relaxed);
        session.server.metrics.inflight.dec();
        let now = session.opened_at.elapsed().as_nanos() as u64;
        session.last_used_ns.fetch_max(now, Ordering::Relaxed);
    }
}
