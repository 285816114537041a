//! # mcpwatch
//!
//! A production MCP client runtime. [`Runtime`] owns every MCP session an
//! application opens: pooled per `(server, scope)`, evicted by LRU and idle TTL,
//! closed on every path (explicit, scope end, eviction, shutdown, drop), with a
//! deadline on every request, retries only where safe, session-expiry recovery,
//! a circuit breaker per server, and metrics for all of it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use mcpwatch::{CallOptions, Config, Runtime};
//! let runtime = Runtime::start(Config::demo()).await?;
//! let call = runtime.call_tool("demo", "counter", None, CallOptions::scope("thread-1")).await?;
//! println!("{:?}", call.result.content);
//! runtime.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the typed config tree; loading (defaults < `OTEL_*`/`SENTRY_*` < file < `MCPWATCH_*`), `${VAR}`, validation |
//! | [`runtime`] | [`Runtime`]: open, lease, call, close, shutdown |
//! | `runtime/pool.rs` | sessions by `(server, scope)`: caps, LRU, idle TTL, single-flight open, `retire` |
//! | `runtime/pool/` | `capacity.rs` (the global cap, its units and waiters), `slot.rs` (slots, checkouts, the per-server slot map) |
//! | `runtime/session.rs` | one live session and the one close path |
//! | `runtime/lease.rs` | [`SessionLease`] (pooled) and [`OwnedSession`] (with the leak guard), both [`McpSession`] |
//! | `runtime/operations.rs` | every MCP operation, each written once (tools, resources, templates, prompts, completion, subscribe, logging level, ping) |
//! | `runtime/request.rs` | [`McpRequest`] and [`McpResult`] (raw JSON in and out, typed views) and [`RequestHandle`] |
//! | `runtime/call.rs` | the one request path: `send` (one session, deadline, cancellation) and `pooled` (breaker, checkout, retries, recovery) |
//! | `runtime/record.rs` | a request's record (span, in-flight gauge, metrics), settled on every exit |
//! | `runtime/deadline.rs` | the one deadline type of a call |
//! | `runtime/retry.rs` | the retry policy and backoff |
//! | `runtime/breaker.rs` | the per-server circuit breaker and its permits |
//! | `runtime/handler.rs` | the client handler: capabilities, server logs, notifications, sampling and elicitation policies |
//! | `runtime/server_requests.rs` | the server's own requests routed to the caller in flight |
//! | `runtime/progress.rs` | progress notifications routed to their request's span and [`CallOptions::on_progress`] |
//! | `runtime/transport/` | `stdio.rs` (process groups), `http.rs` (streamable HTTP), `oauth.rs` (OAuth 2.1), `sse.rs` (legacy SSE), `builtin.rs`; each classifies its own errors; `rmcp_text.rs` (rmcp's text-only facts, pinned) |
//! | `runtime/error.rs` | [`Error`] and the bounded [`ErrorKind`] |
//! | [`telemetry`] | `install` (logs, OTLP, Sentry) and `install_logging` (logs alone); metrics (`metrics.rs`), per-server metric handles (`server_metrics.rs`), lifecycle events (`events.rs`), spans (`spans.rs`), bounded export (`export.rs`), Sentry (`sentry.rs`), names (`semconv.rs`) |
//! | [`bench`] | `mcpwatch bench`: latency distribution and throughput of a tool |
//! | [`demo`] | the built-in demo MCP server |
//! | [`agent`] | the HTTP API (`api.rs`), admin listener (`admin.rs`), auth, body limits, idempotency, OpenAPI; its clients: the load generator (`client.rs`) and the list reader of `mcpwatch servers`/`sessions` (`remote.rs`) |
//! | `main.rs`, `cli/` (the binary) | parse and dispatch; one file per command, the table printer |

pub mod agent;
mod bench;
pub mod config;
pub mod demo;
mod fd_limit;
mod gateway;
mod runtime;
pub mod telemetry;

pub use config::Config;
pub use runtime::{
    ACCEPTED_PROTOCOL_VERSIONS, BreakerState, CallOptions, CloseReason, DEFAULT_SCOPE, Error,
    ErrorKind, MAX_SCOPE_LEN, McpRequest, McpResult, McpSession, OFFERED_PROTOCOL_VERSION,
    OwnedSession, Progress, ProgressCallback, RequestHandle, Result, Runtime, ServerRequestRoute,
    ServerStatus, SessionInfo, SessionLease, ShutdownReport, StartError, ToolCall, TypedResult,
    validate_scope,
};

/// What the `mcpwatch` binary, the tests, the benches and the examples need
/// beyond the library API. Not a stable interface: it changes with them.
#[doc(hidden)]
pub mod testing {
    pub use crate::agent::client::CallClient;
    pub use crate::agent::remote::{AgentList, get_list};
    pub use crate::agent::{AgentState, api_router};
    pub use crate::bench::{
        BenchMode, BenchPlan, BenchReport, McpUrlError, parse_header, run, summarize,
        write_latencies,
    };
    pub use crate::fd_limit::raise_open_file_limit;
    pub use crate::telemetry::export::{BoundedSpanProcessor, ExportCounters};
    pub use crate::telemetry::install_with_log_writer;
}
