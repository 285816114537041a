//! The agent: the runtime behind an HTTP API (`/v1`) and an admin listener
//! (`/metrics`, `/healthz`, `/readyz`), with graceful shutdown.
//!
//! Shutdown (SIGTERM/SIGINT in the binary): `/readyz` turns 503 and new calls get
//! 503 `shutting_down` at once; calls in flight may finish for `agent.drain_timeout`,
//! and the listeners stay open for at least `agent.shutdown_delay` (so that a load
//! balancer stops sending before connections close); then the listeners close, the
//! runtime shuts down (every session closed, every child reaped), and [`serve`] returns.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod idempotency;
pub(crate) mod openapi;
pub(crate) mod remote;
pub(crate) mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::AgentConfig;
use crate::runtime::{Runtime, ShutdownReport};
pub use state::AgentState;

/// How long the runtime may take to close every session after draining.
const RUNTIME_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("listener failed: {0}")]
    Serve(std::io::Error),
}

/// The addresses the agent listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The API listener.
    pub api: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

/// What a finished agent did.
#[derive(Debug, Clone, Copy)]
pub struct AgentReport {
    /// True if every call in flight finished within `drain_timeout`.
    pub drained: bool,
    /// The runtime's shutdown report.
    pub runtime: ShutdownReport,
}

/// The API router (with auth, request ids and the JSON 404), for `state`.
pub fn api_router(state: AgentState) -> Router {
    api::router()
        .merge(crate::gateway::endpoint::router())
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), request))
        .with_state(state)
}

/// The admin router, for `state`.
pub fn admin_router(state: AgentState) -> Router {
    admin::router().with_state(state)
}

/// Serves the API and admin listeners until `shutdown` completes, then drains
/// and shuts the runtime down. `on_bound` is called once both listen.
pub async fn serve(
    runtime: Runtime,
    config: &AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_bound: impl FnOnce(Bound),
) -> Result<AgentReport, AgentError> {
    let api_listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| AgentError::Bind {
                addr: config.listen,
                source,
            })?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let bound = Bound {
        api: api_listener.local_addr().map_err(AgentError::Serve)?,
        admin: admin_listener.local_addr().map_err(AgentError::Serve)?,
    };
    // The gateway's own origin is the address actually bound (port 0 resolved).
    let config = &AgentConfig {
        listen: bound.api,
        ..config.clone()
    };
    let state = AgentState::new(runtime.clone(), config);
    let stop = CancellationToken::new();
    // TCP_NODELAY: answers go out at once rather than waiting on Nagle's algorithm.
    let api_listener = api_listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let api = tokio::spawn(
        axum::serve(
            api_listener,
            api_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future(),
    );
    let admin = tokio::spawn(
        axum::serve(admin_listener, admin_router(state.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(api = %bound.api, admin = %bound.admin, "mcpwatch agent listening");
    on_bound(bound);

    tokio::select! {
        () = shutdown => {}
        result = wait_listener(api) => return Err(listener_failed(result, &stop)),
    }
    let drained = drain(&state, config).await;
    if let Some(gateway) = &state.gateway {
        let ended = gateway.shutdown();
        tracing::debug!(ended, "gateway sessions ended");
    }
    stop.cancel();
    let runtime_report = runtime.shutdown(RUNTIME_SHUTDOWN_DEADLINE).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    tracing::info!(
        sessions_closed = runtime_report.sessions_closed,
        forced_kills = runtime_report.forced_kills,
        "mcpwatch agent stopped"
    );
    Ok(AgentReport {
        drained,
        runtime: runtime_report,
    })
}

/// Refuses new calls, waits for the calls in flight (up to `drain_timeout`) and
/// for `shutdown_delay` since the start, whichever is later; true if every call ended.
/// The listeners stay open meanwhile: a load balancer that has not yet seen `/readyz`
/// fail gets 503 `shutting_down` (retryable elsewhere) rather than a closed connection.
async fn drain(state: &AgentState, config: &AgentConfig) -> bool {
    let since = tokio::time::Instant::now();
    tracing::info!(
        in_flight = state.in_flight(),
        drain_timeout = ?config.drain_timeout,
        shutdown_delay = ?config.shutdown_delay,
        "shutting down: draining calls"
    );
    state.start_draining();
    let drained = state.wait_drained(config.drain_timeout).await;
    if !drained {
        tracing::warn!(
            in_flight = state.in_flight(),
            "drain timeout passed with calls still in flight"
        );
    }
    tokio::time::sleep_until(since + config.shutdown_delay).await;
    drained
}

async fn wait_listener(
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
) -> std::io::Result<()> {
    match handle.await {
        Ok(result) => result,
        Err(join) => Err(std::io::Error::other(join)),
    }
}

fn listener_failed(result: std::io::Result<()>, stop: &CancellationToken) -> AgentError {
    stop.cancel();
    AgentError::Serve(
        result
            .err()
            .unwrap_or_else(|| std::io::Error::other("the API listener stopped")),
    )
}

/// Gives every request an id (`X-Request-Id`, taken from the request when sane),
/// runs it in a span carrying the id (parented on an incoming `traceparent`),
/// checks the bearer token, and logs the outcome. One middleware rather than a
/// layer each: every layer costs every request a boxed future and a service clone.
async fn request(State(state): State<AgentState>, request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %id.as_str(),
        method = %request.method(),
        path = %request.uri().path()
    );
    // An incoming `traceparent` makes the caller's trace the parent of this
    // request and so of every MCP span under it.
    if request.headers().contains_key(TRACEPARENT) {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let started = tokio::time::Instant::now();
    let mut response = match auth::check(&state, request.headers()) {
        Ok(()) => next.run(request).instrument(span.clone()).await,
        Err(error) => span.in_scope(|| error.into_response()),
    };
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    if let Some(value) = id.header_value() {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// The W3C trace context header.
const TRACEPARENT: &str = "traceparent";
/// The request id header, read and answered.
const X_REQUEST_ID: &str = "x-request-id";

/// A request id: the caller's when sane (1 to 64 ASCII letters, digits and
/// dashes), else 16 random hex digits.
enum RequestId {
    Given(HeaderValue),
    Made([u8; 16]),
}

impl RequestId {
    fn as_str(&self) -> &str {
        match self {
            // Checked to be ASCII when taken.
            RequestId::Given(id) => id.to_str().unwrap_or_default(),
            // Hex digits only: always UTF-8.
            RequestId::Made(hex) => std::str::from_utf8(hex).unwrap_or_default(),
        }
    }

    fn header_value(self) -> Option<HeaderValue> {
        match self {
            RequestId::Given(id) => Some(id),
            RequestId::Made(hex) => HeaderValue::from_bytes(&hex).ok(),
        }
    }
}

fn request_id(headers: &axum::http::HeaderMap) -> RequestId {
    let given = headers.get(X_REQUEST_ID).filter(|v| {
        let v = v.as_bytes();
        !v.is_empty() && v.len() <= 64 && v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    });
    match given {
        Some(id) => RequestId::Given(id.clone()),
        None => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut n = fastrand::u64(..);
            let mut hex = [0u8; 16];
            for digit in hex.iter_mut().rev() {
                *digit = HEX[(n & 0xf) as usize];
                n >>= 4;
            }
            RequestId::Made(hex)
        }
    }
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
