//! The runtime: the public entry point that owns every MCP session.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use mcpwatch::{CallOptions, Config, Runtime};
//! use std::time::Duration;
//!
//! let runtime = Runtime::start(Config::demo()).await?;
//! let call = runtime
//!     .call_tool("demo", "echo", Some(serde_json::json!({"message": "hi"})), CallOptions::scope("thread-1"))
//!     .await?;
//! assert!(!call.is_error());
//! runtime.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

// Every function of the runtime fits in a head: at most 80 lines (clippy.toml).
#![warn(clippy::too_many_lines)]

mod breaker;
mod call;
mod deadline;
mod error;
mod handler;
mod lease;
mod operations;
mod pool;
mod progress;
mod record;
mod request;
mod retry;
mod scope;
mod server;
mod server_requests;
mod session;
pub(crate) mod transport;
mod upstream;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CompleteResult, GetPromptResult, Prompt, ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use breaker::BreakerState;
pub use error::{Error, ErrorKind, Result};
pub use handler::{ACCEPTED_PROTOCOL_VERSIONS, OFFERED_PROTOCOL_VERSION};
pub use lease::{McpSession, OwnedSession, SessionLease};
pub use operations::ToolCall;
pub use progress::{Progress, ProgressCallback};
pub use request::{McpRequest, McpResult, RequestHandle, ServerRequestRoute, TypedResult};
pub use scope::{DEFAULT_SCOPE, MAX_SCOPE_LEN, validate_scope};
pub use session::{CloseReason, SessionInfo};

use crate::config::{Config, ConfigError};
use crate::telemetry::{Metrics, MetricsError, Telemetry};
use breaker::Verdict;
pub(crate) use call::SessionUse;
use operations::Target;
use pool::Pool;
use server::ServerEntry;
use transport::Connector;
use upstream::UpstreamEvents;
pub(crate) use upstream::{NotificationSink, ServerHello, UpstreamNotification};

/// Options of one call.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// The scope (`default` when `None`): 1-200 characters of `[A-Za-z0-9._:@-]`.
    pub scope: Option<String>,
    /// Overrides the server's `call_timeout`.
    pub timeout: Option<Duration>,
    /// Receives the call's progress notifications ([`CallOptions::on_progress`]).
    pub on_progress: Option<ProgressCallback>,
    /// Cancelled: the call is cancelled at the server and fails `cancelled`.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Answers the server's own requests made during the call
    /// ([`CallOptions::route_server_requests`]).
    pub server_requests: Option<ServerRequestRoute>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .field("on_progress", &self.on_progress)
            .field("cancel", &self.cancel)
            .field("server_requests", &self.server_requests.is_some())
            .finish()
    }
}

impl CallOptions {
    /// Options for a call in `scope`.
    pub fn scope(scope: impl Into<String>) -> CallOptions {
        CallOptions {
            scope: Some(scope.into()),
            ..CallOptions::default()
        }
    }

    /// Sets the deadline of the call.
    pub fn with_timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Calls `callback` with each progress notification the server sends for the
    /// call (`notifications/progress`), in the order they arrive, until the
    /// answer arrives; one a server writes after its answer (some do) is counted
    /// but not delivered. Stale ones (progress not above the last) are skipped.
    /// Each is also an `mcp.progress` event on the call's span. The callback runs
    /// on the session's receive loop: keep it short (hand the value to a channel
    /// or an atomic); the session's next message waits for it.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// use mcpwatch::CallOptions;
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let options = CallOptions::scope("thread-1").on_progress(move |p| {
    ///     let _ = tx.send(p);
    /// });
    /// let call = runtime
    ///     .call_tool("demo", "sleep", Some(serde_json::json!({"ms": 500})), options)
    ///     .await?;
    /// while let Ok(p) = rx.try_recv() {
    ///     println!("{} of {:?}", p.progress, p.total);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn on_progress(
        mut self,
        callback: impl Fn(Progress) + Send + Sync + 'static,
    ) -> CallOptions {
        self.on_progress = Some(ProgressCallback::new(callback));
        self
    }

    /// Cancelling `token` cancels the call at the server; it fails `cancelled`.
    pub fn cancel_on(mut self, token: tokio_util::sync::CancellationToken) -> CallOptions {
        self.cancel = Some(token);
        self
    }

    /// The server's own requests (sampling, elicitation) made while this call is
    /// the only routed request in flight on its session go to `route`, instead of
    /// the server's `sampling`/`elicitation` policy. This is how a caller with a
    /// person or a model at hand answers them (the gateway forwards them to its
    /// client).
    pub fn route_server_requests(mut self, route: ServerRequestRoute) -> CallOptions {
        self.server_requests = Some(route);
        self
    }

    fn handle(&self) -> RequestHandle {
        RequestHandle {
            progress: self.on_progress.clone(),
            cancel: self.cancel.clone(),
            server_requests: self.server_requests.clone(),
        }
    }
}

/// One server's state (`GET /v1/servers`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// Config name.
    pub name: String,
    /// `stdio`, `http`, `sse` or `builtin`.
    pub transport: &'static str,
    /// `ready` (breaker closed), `degraded` (half-open) or `down` (open).
    pub state: &'static str,
    /// `closed`, `half_open` or `open`.
    pub breaker: &'static str,
    /// Live sessions (pooled and owned).
    pub sessions: usize,
    /// Protocol version of a live session, if there is one.
    pub protocol_version: Option<String>,
}

/// What `shutdown` did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ShutdownReport {
    /// Sessions closed.
    pub sessions_closed: usize,
    /// stdio servers that had to be killed (did not exit on their own in time).
    pub forced_kills: usize,
    /// True if the deadline passed before every close finished (every child was killed anyway).
    pub timed_out: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Metrics could not be registered.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The MCP client runtime. Cheap to clone; every clone is the same runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    config: Config,
    telemetry: Arc<Telemetry>,
    warm_pending: Arc<AtomicUsize>,
    events: Arc<UpstreamEvents>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without shutdown(): stop the background tasks; dropping the
        // sessions kills their process groups.
        self.pool.shutdown.cancel();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("servers", &self.inner.pool.servers.keys())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Validates `config`, starts the background sweeper and opens the `default`
    /// session of every `warm` server (in the background; see [`Runtime::is_ready`]).
    pub async fn start(config: Config) -> std::result::Result<Runtime, StartError> {
        let telemetry = Arc::new(Telemetry::from_config(&config.telemetry)?);
        Runtime::start_with(config, telemetry).await
    }

    /// Like [`Runtime::start`], reporting through `telemetry` (the binary creates it
    /// first, so that [`crate::telemetry::install`] can register its export counters
    /// in the same registry).
    pub async fn start_with(
        config: Config,
        telemetry: Arc<Telemetry>,
    ) -> std::result::Result<Runtime, StartError> {
        config.validate()?;
        let tracker = TaskTracker::new();
        let connector = Connector {
            http: transport::http::shared_client()?,
            tracker: tracker.clone(),
        };
        let events = Arc::new(UpstreamEvents::default());
        let servers: BTreeMap<String, Arc<ServerEntry>> = config
            .servers
            .iter()
            .map(|(name, spec)| {
                (
                    name.clone(),
                    Arc::new(ServerEntry::new(
                        name,
                        spec,
                        &config.pool,
                        telemetry.clone(),
                        events.clone(),
                    )),
                )
            })
            .collect();
        let pool = Arc::new(Pool::new(
            servers,
            config.pool.max_sessions,
            config.pool.queue_timeout,
            config.pool.max_lifetime,
            connector,
            tracker,
            telemetry.clone(),
        ));
        spawn_sweeper(&pool);
        let warm_pending = Arc::new(AtomicUsize::new(0));
        for entry in pool.servers.values().filter(|e| e.spec.warm) {
            warm_pending.fetch_add(1, Ordering::AcqRel);
            spawn_warm(&pool, entry.clone(), warm_pending.clone());
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                pool,
                config,
                telemetry,
                warm_pending,
                events,
            }),
        })
    }

    /// Calls `tool` on `server` in the options' scope, on that scope's pooled
    /// session (opened on first use), under the call's deadline, with the
    /// server's breaker and retry policy. A tool's `isError` result is `Ok`
    /// ([`ToolCall::is_error`]).
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// use mcpwatch::CallOptions;
    /// use std::time::Duration;
    /// let args = serde_json::json!({"a": 2, "b": 3});
    /// let call = runtime
    ///     .call_tool("demo", "add", Some(args), CallOptions::scope("thread-7").with_timeout(Duration::from_secs(5)))
    ///     .await?;
    /// println!("{:?} (session reused: {})", call.result.content, call.reused);
    /// # Ok(()) }
    /// ```
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<serde_json::Value>,
        options: CallOptions,
    ) -> Result<ToolCall> {
        let target = self.pooled(server, options.scope.as_deref())?;
        operations::call_tool(target, tool, arguments, options.timeout, &options.handle()).await
    }

    /// Sends any MCP request (raw JSON in and out) on the scope's pooled session,
    /// with the breaker, retries (a `tools/call` only for `idempotent_tools`) and
    /// recovery of a lost session: the one request path every operation uses.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// use mcpwatch::{CallOptions, McpRequest};
    /// let params = serde_json::json!({"name": "echo", "arguments": {"message": "hi"}});
    /// let request = McpRequest::new("tools/call", params.as_object().cloned());
    /// let result = runtime.request("demo", &request, CallOptions::scope("thread-1")).await?;
    /// println!("{}", result.into_json());
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        server: &str,
        request: &McpRequest,
        options: CallOptions,
    ) -> Result<McpResult> {
        let target = self.pooled(server, options.scope.as_deref())?;
        let handle = options.handle();
        Ok(target.request(request, options.timeout, &handle).await?.0)
    }

    /// [`Runtime::request`], also saying how the session was used (the gateway
    /// marks a result on a session that replaced a lost one).
    pub(crate) async fn request_with_use(
        &self,
        server: &str,
        request: &McpRequest,
        options: &CallOptions,
    ) -> Result<(McpResult, SessionUse)> {
        let target = self.pooled(server, options.scope.as_deref())?;
        target
            .request(request, options.timeout, &options.handle())
            .await
    }

    /// The server's last `initialize` answer, if a session of it ever opened.
    pub(crate) fn cached_hello(&self, server: &str) -> Option<Arc<ServerHello>> {
        self.inner.pool.server(server).ok()?.hello.get()
    }

    /// The server's last `initialize` answer; when the server was never
    /// reached, opens the pooled session of `scope` first.
    pub(crate) async fn hello(&self, server: &str, scope: &str) -> Result<Arc<ServerHello>> {
        let entry = self.inner.pool.server(server)?;
        if let Some(hello) = entry.hello.get() {
            return Ok(hello);
        }
        drop(self.session(server, Some(scope)).await?);
        entry.hello.get().ok_or_else(|| Error::InitializeFailed {
            server: server.to_owned(),
            detail: "the session opened without an initialize answer".to_owned(),
        })
    }

    /// The runtime's telemetry (the gateway records its own spans with it).
    pub(crate) fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// Sends every server notification to `sink` as well; false if a sink was
    /// already set (there is one gateway per runtime).
    pub(crate) fn set_notification_sink(&self, sink: NotificationSink) -> bool {
        self.inner.events.set_sink(sink)
    }

    /// Every tool of `server` (all pages), through the scope's pooled session.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// for tool in runtime.list_tools("demo", None).await? {
    ///     println!("{}", tool.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_tools(&self, server: &str, scope: Option<&str>) -> Result<Vec<Tool>> {
        operations::list_tools(self.pooled(server, scope)?).await
    }

    /// Every resource of `server` (all pages), through the scope's pooled session.
    /// A server without resources (JSON-RPC "method not found") has none.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// for resource in runtime.list_resources("everything", Some("thread-1")).await? {
    ///     println!("{} {}", resource.uri, resource.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_resources(&self, server: &str, scope: Option<&str>) -> Result<Vec<Resource>> {
        operations::list_resources(self.pooled(server, scope)?).await
    }

    /// Every resource template of `server` (all pages): URI templates such as
    /// `demo://resource/{id}` whose expansions [`Runtime::read_resource`] reads.
    /// A server without resources has none.
    pub async fn list_resource_templates(
        &self,
        server: &str,
        scope: Option<&str>,
    ) -> Result<Vec<ResourceTemplate>> {
        operations::list_resource_templates(self.pooled(server, scope)?).await
    }

    /// Reads the resource at `uri` through the scope's pooled session.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// let read = runtime
    ///     .read_resource("everything", "demo://resource/static/document/architecture.md", None)
    ///     .await?;
    /// for contents in read.contents {
    ///     println!("{contents:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_resource(
        &self,
        server: &str,
        uri: &str,
        scope: Option<&str>,
    ) -> Result<ReadResourceResult> {
        operations::read_resource(self.pooled(server, scope)?, uri).await
    }

    /// Every prompt of `server` (all pages), through the scope's pooled session.
    /// A server without prompts (JSON-RPC "method not found") has none.
    pub async fn list_prompts(&self, server: &str, scope: Option<&str>) -> Result<Vec<Prompt>> {
        operations::list_prompts(self.pooled(server, scope)?).await
    }

    /// Gets the prompt `name` with `arguments` (a JSON object of strings, or
    /// `None`) through the scope's pooled session.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// let prompt = runtime
    ///     .get_prompt("everything", "args-prompt", Some(serde_json::json!({"city": "Paris"})), None)
    ///     .await?;
    /// println!("{} messages", prompt.messages.len());
    /// # Ok(()) }
    /// ```
    pub async fn get_prompt(
        &self,
        server: &str,
        name: &str,
        arguments: Option<serde_json::Value>,
        scope: Option<&str>,
    ) -> Result<GetPromptResult> {
        operations::get_prompt(self.pooled(server, scope)?, name, arguments).await
    }

    /// Completion of `argument` (`{name, value}`) for `reference` (a
    /// `ref/prompt` or `ref/resource` object), through the scope's pooled session.
    pub async fn complete(
        &self,
        server: &str,
        reference: serde_json::Value,
        argument: serde_json::Value,
        scope: Option<&str>,
    ) -> Result<CompleteResult> {
        operations::complete(self.pooled(server, scope)?, reference, argument).await
    }

    /// Checks the scope's pooled session (opening it if needed); returns the
    /// round-trip time. The check is `ping`, or `server/discover` on a
    /// `lifecycle = "discover"` server (the 2026-07-28 revision has no `ping`).
    pub async fn ping(&self, server: &str, scope: Option<&str>) -> Result<Duration> {
        operations::ping(self.pooled(server, scope)?).await
    }

    /// Where a pooled request of `(server, scope)` goes.
    fn pooled<'a>(&'a self, server: &str, scope: Option<&'a str>) -> Result<Target<'a>> {
        let scope = scope::validate_any_scope(scope)?;
        let entry = self.entry(server)?;
        let scope = entry.pool_scope(scope);
        Ok(Target::Pooled {
            pool: &self.inner.pool,
            entry,
            scope,
        })
    }

    /// A lease on the pooled session of `(server, scope)`, opened if needed.
    /// While the lease lives the session is not evicted; calls through it go to
    /// exactly that session (no re-open, no retry).
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// let lease = runtime.session("demo", Some("thread-1")).await?;
    /// let first = lease.call_tool("counter", None, None).await?;
    /// let second = lease.call_tool("counter", None, None).await?; // same session: 2
    /// # Ok(()) }
    /// ```
    pub async fn session(&self, server: &str, scope: Option<&str>) -> Result<SessionLease> {
        let scope = scope::validate_any_scope(scope)?;
        let entry = self.entry(server)?;
        let (session, pin) = self
            .inner
            .pool
            .acquire(entry, entry.pool_scope(scope))
            .await?;
        Ok(SessionLease::new(session, pin, self.inner.pool.clone()))
    }

    /// Opens a session owned by the caller, who must `close().await` it. One
    /// dropped without `close()` is reported as unclosed (with this call's source
    /// location) and closed in the background.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) -> mcpwatch::Result<()> {
    /// let session = runtime.open("demo").await?;
    /// session.call_tool("echo", Some(serde_json::json!({"message": "hi"})), None).await?;
    /// session.close().await;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn open(
        &self,
        server: &str,
    ) -> impl Future<Output = Result<OwnedSession>> + Send + 'static {
        let location = Location::caller();
        let pool = self.inner.pool.clone();
        let server = server.to_owned();
        async move {
            let entry = pool.server(&server)?.clone();
            if pool.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let permit = entry
                .breaker
                .admit()
                .map_err(|retry_in| Error::BreakerOpen {
                    server: server.clone(),
                    retry_in,
                })?;
            let span = crate::telemetry::spans::initialize(entry.span_target("owned"));
            let opened = pool
                .open_session(&entry, Arc::from("owned"), true, span)
                .await;
            permit.settle(Verdict::of(opened.as_ref().map(drop).map_err(Error::kind)));
            Ok(OwnedSession::new(opened?, pool, location))
        }
    }

    /// Closes the scope's pooled sessions on every server (`scope_closed`);
    /// returns how many closed.
    pub async fn close_scope(&self, scope: &str) -> Result<usize> {
        let scope = scope::validate_any_scope(Some(scope))?;
        let sessions = self.inner.pool.take_pooled(|_, s| s == scope);
        Ok(self.close_all(sessions, CloseReason::ScopeClosed).await)
    }

    /// Closes the pooled session of `(server, scope)` (`explicit`); returns 0 or 1.
    pub async fn close_session(&self, server: &str, scope: &str) -> Result<usize> {
        let scope = scope::validate_any_scope(Some(scope))?;
        self.entry(server)?;
        let sessions = self
            .inner
            .pool
            .take_pooled(|n, s| n == server && s == scope);
        Ok(self.close_all(sessions, CloseReason::Explicit).await)
    }

    /// Closes every pooled session of `server` (`explicit`); returns how many closed.
    pub async fn close_server(&self, server: &str) -> Result<usize> {
        self.entry(server)?;
        let sessions = self.inner.pool.take_pooled(|n, _| n == server);
        Ok(self.close_all(sessions, CloseReason::Explicit).await)
    }

    async fn close_all(&self, sessions: Vec<Arc<session::Session>>, reason: CloseReason) -> usize {
        let closes = sessions
            .iter()
            .map(|s| s.close(reason, None, pool::CLOSE_GRACE));
        futures::future::join_all(closes).await.len()
    }

    /// A snapshot of every live session, pooled and owned.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self
            .inner
            .pool
            .all_sessions()
            .iter()
            .map(|s| s.info())
            .collect();
        sessions.sort_by(|a, b| (&a.server, &a.scope).cmp(&(&b.server, &b.scope)));
        sessions
    }

    /// Every configured server with its breaker and session count.
    pub fn servers(&self) -> Vec<ServerStatus> {
        let sessions = self.inner.pool.all_sessions();
        self.inner
            .pool
            .servers
            .values()
            .map(|entry| {
                let live: Vec<_> = sessions
                    .iter()
                    .filter(|s| Arc::ptr_eq(&s.server, entry))
                    .collect();
                let breaker = entry.breaker.state();
                ServerStatus {
                    name: entry.name.to_string(),
                    transport: entry.kind.as_str(),
                    state: match breaker {
                        BreakerState::Closed => "ready",
                        BreakerState::HalfOpen => "degraded",
                        BreakerState::Open => "down",
                    },
                    breaker: breaker.as_str(),
                    sessions: live.len(),
                    protocol_version: live.first().map(|s| s.protocol_version.clone()),
                }
            })
            .collect()
    }

    /// True once every `warm` server's default session has opened, and until shutdown.
    pub fn is_ready(&self) -> bool {
        self.inner.warm_pending.load(Ordering::Acquire) == 0 && !self.inner.pool.is_shutting_down()
    }

    /// The configuration the runtime runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The runtime's metrics (render them for `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.telemetry.metrics
    }

    /// Sizes of the internal maps (pooled slots, owned sessions, reserved
    /// capacity), for leak tests: all three are 0 after shutdown.
    #[doc(hidden)]
    pub fn internal_map_sizes(&self) -> (usize, usize, usize) {
        self.inner.pool.map_sizes()
    }

    /// Closes every session (graceful close, then every stdio process group is
    /// killed), stops the background tasks and waits for them, within `deadline`.
    /// Afterwards no child process of the runtime is alive and every call fails
    /// with `shutting_down`.
    ///
    /// ```no_run
    /// # async fn example(runtime: mcpwatch::Runtime) {
    /// let report = runtime.shutdown(std::time::Duration::from_secs(10)).await;
    /// println!("closed {} sessions, {} forced kills", report.sessions_closed, report.forced_kills);
    /// # }
    /// ```
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let drained = self.inner.pool.shutdown(deadline).await;
        ShutdownReport {
            sessions_closed: drained.sessions_closed,
            forced_kills: drained.forced_kills,
            timed_out: drained.timed_out,
            elapsed: started.elapsed(),
        }
    }

    fn entry(&self, server: &str) -> Result<&Arc<ServerEntry>> {
        if self.inner.pool.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        self.inner.pool.server(server)
    }
}

fn spawn_sweeper(pool: &Arc<Pool>) {
    let interval = pool.sweep_interval();
    let weak = Arc::downgrade(pool);
    let shutdown = pool.shutdown.clone();
    pool.tracker.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let Some(pool) = weak.upgrade() else { return };
            pool.sweep();
        }
    });
}

fn spawn_warm(pool: &Arc<Pool>, entry: Arc<ServerEntry>, pending: Arc<AtomicUsize>) {
    let weak = Arc::downgrade(pool);
    let shutdown = pool.shutdown.clone();
    pool.tracker.spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(pool) = weak.upgrade() else { return };
            let opened = tokio::select! {
                result = pool.acquire(&entry, entry.pool_scope(DEFAULT_SCOPE)) => result.is_ok(),
                () = shutdown.cancelled() => return,
            };
            drop(pool);
            if opened {
                pending.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
}
