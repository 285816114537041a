//! The built-in demo MCP server: what `mcpwatch serve` runs with no config file,
//! and the server most tests talk to. It runs in-process (`builtin`), as a child
//! process (`mcpwatch demo-server --stdio`) or over streamable HTTP
//! (`mcpwatch demo-server --http ADDR`).
//!
//! Tools: `echo {message}`, `add {a, b}`, `sleep {ms}` (sends progress, honours
//! cancellation), `fail {message?}` (an `isError` result), `counter` (1, 2, 3, ...
//! per session), `crash` (stdio only: exits the process), and for tests `stats`
//! (this session's calls and the cancellations it saw) and `traceparent` (the
//! trace context the request carried in `params._meta`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock as Content, Implementation, InitializeResult,
    ProgressNotificationParam, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How often `sleep` reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Where a demo server runs; `crash` only works in its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoMode {
    /// In-process, inside mcpwatch.
    Builtin,
    /// Its own process over stdio.
    Stdio,
    /// Its own process over streamable HTTP.
    Http,
}

/// One demo server session. State (`counter`, `stats`) lives per session.
#[derive(Debug, Clone)]
pub struct DemoServer {
    mode: DemoMode,
    counter: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    cancelled: Arc<AtomicU64>,
    /// Built once per session (rmcp's default handler rebuilds it, validating
    /// every tool name, on every request).
    tool_router: ToolRouter<DemoServer>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// First addend.
    a: f64,
    /// Second addend.
    b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to sleep, in milliseconds.
    ms: u64,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct FailArgs {
    /// The error text (default "the demo tool failed as asked").
    #[serde(default)]
    message: Option<String>,
}

#[tool_router]
impl DemoServer {
    /// A fresh session of the demo server.
    pub fn new(mode: DemoMode) -> DemoServer {
        DemoServer {
            mode,
            counter: Arc::default(),
            calls: Arc::default(),
            cancelled: Arc::default(),
            tool_router: Self::tool_router(),
        }
    }

    /// A session for the in-process `builtin` transport.
    pub fn builtin() -> DemoServer {
        DemoServer::new(DemoMode::Builtin)
    }

    #[tool(description = "Returns the message unchanged.")]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        args.message
    }

    #[tool(description = "Adds two numbers.")]
    fn add(&self, Parameters(args): Parameters<AddArgs>) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        (args.a + args.b).to_string()
    }

    #[tool(
        description = "Sleeps for `ms` milliseconds, reporting progress; stops early when cancelled."
    )]
    async fn sleep(
        &self,
        Parameters(args): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
        cancelled: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let total = Duration::from_millis(args.ms);
        let started = tokio::time::Instant::now();
        let token = context.meta.get_progress_token();
        loop {
            let left = total.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(PROGRESS_EVERY)) => {}
                () = cancelled.cancelled() => {
                    self.cancelled.fetch_add(1, Ordering::Relaxed);
                    return Err(ErrorData::internal_error("sleep cancelled", None));
                }
            }
            if let Some(token) = &token {
                let mut progress = ProgressNotificationParam::new(
                    token.clone(),
                    started.elapsed().as_millis() as f64,
                );
                progress.total = Some(args.ms as f64);
                let _ = context.peer.notify_progress(progress).await;
            }
        }
        Ok(CallToolResult::success(vec![Content::text(format!(
            "slept {} ms",
            args.ms
        ))]))
    }

    #[tool(description = "Always fails: returns an isError result.")]
    fn fail(&self, Parameters(args): Parameters<FailArgs>) -> CallToolResult {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let message = args
            .message
            .unwrap_or_else(|| "the demo tool failed as asked".to_owned());
        CallToolResult::error(vec![Content::text(message)])
    }

    #[tool(description = "Returns 1, 2, 3, ... : state kept per session.")]
    fn counter(&self) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        (self.counter.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    #[tool(description = "Exits the server process at once (stdio only).")]
    fn crash(&self) -> CallToolResult {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.mode == DemoMode::Stdio {
            std::process::exit(3);
        }
        CallToolResult::error(vec![Content::text("crash is only available over stdio")])
    }

    #[tool(
        description = "Returns the W3C traceparent this request carried in params._meta (empty when none)."
    )]
    fn traceparent(&self, context: RequestContext<RoleServer>) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        context
            .meta
            .get_traceparent()
            .unwrap_or_default()
            .to_owned()
    }

    #[tool(description = "This session's tool calls and the cancellations it received, as JSON.")]
    fn stats(&self) -> String {
        serde_json::json!({
            "calls": self.calls.load(Ordering::Relaxed),
            "cancelled": self.cancelled.load(Ordering::Relaxed),
            "counter": self.counter.load(Ordering::Relaxed),
        })
        .to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mcpwatch-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The mcpwatch demo server: echo, add, sleep, fail, counter, crash, stats, traceparent.",
            )
    }
}

/// Serves one demo session on stdin/stdout until the client goes away.
pub async fn serve_stdio() -> std::io::Result<()> {
    let service = DemoServer::new(DemoMode::Stdio)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    service.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// Serves the demo over streamable HTTP at `http://ADDR/mcp` until `shutdown`
/// is cancelled. Returns the bound address through `bound` as soon as it listens.
pub async fn serve_http(
    addr: SocketAddr,
    shutdown: CancellationToken,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    use axum::serve::{Listener, ListenerExt};
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let mut config = StreamableHttpServerConfig::default();
    config.cancellation_token = shutdown.child_token();
    config.legacy_session_mode = true;
    // rmcp ends a session idle for 5 minutes; the pool keeps an idle session for
    // `pool.idle_ttl` (10 minutes by default). Longer here, so that the demo's
    // `counter` survives a pause in a conversation; a client that vanishes is
    // still cleaned up.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(std::time::Duration::from_secs(30 * 60));
    let service = StreamableHttpService::new(
        || Ok(DemoServer::new(DemoMode::Http)),
        Arc::new(sessions),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    // TCP_NODELAY: rmcp answers a POST as an SSE body written in several small
    // pieces; with Nagle on, a piece waits for the client's delayed ACK (40 ms on
    // Linux) on every keep-alive connection past its first few segments.
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    bound(listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
