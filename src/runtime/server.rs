//! Per-server state: its config, breaker, metric handles and pooled sessions.

use super::upstream::{HelloCell, LostScopes, UpstreamEvents};
use crate::config::ScopeMode;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::breaker::Breaker;
use super::pool::SlotMap;
use super::retry::RETRYABLE_KINDS;
use super::transport::oauth::ServerOAuth;
use crate::config::{ElicitationPolicy, PoolConfig, SamplingPolicy, ServerConfig, TransportKind};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::ServerMetrics;
use crate::telemetry::spans::SpanTarget;

/// One configured server.
/// The pool key of a `scopes = "shared"` server's one session (no scope name
/// can be `*`, so closing a scope never closes it).
pub(crate) const SHARED_SCOPE: &str = "*";

pub(crate) struct ServerEntry {
    pub(crate) name: Arc<str>,
    pub(crate) spec: ServerConfig,
    pub(crate) kind: TransportKind,
    pub(crate) idle_ttl: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) idempotent_tools: HashSet<String>,
    /// `server.address` / `server.port` of http and sse servers.
    pub(crate) address: Option<(String, u16)>,
    pub(crate) breaker: Breaker,
    /// OAuth tokens and authorization of an http server with `oauth`, shared by its sessions.
    pub(crate) oauth: Option<Arc<ServerOAuth>>,
    pub(crate) metrics: ServerMetrics,
    pub(crate) telemetry: Arc<Telemetry>,
    /// The server's last `initialize` answer.
    pub(crate) hello: HelloCell,
    /// Scopes whose session ended by a failure, until their next open.
    pub(crate) lost: LostScopes,
    /// Where the server's notifications go besides logs and metrics.
    pub(crate) events: Arc<UpstreamEvents>,
    /// Pooled sessions by scope (opening ones included), each holding its unit
    /// of the pool's capacity.
    slots: Mutex<SlotMap>,
}

impl ServerEntry {
    pub(crate) fn new(
        name: &str,
        spec: &ServerConfig,
        pool: &PoolConfig,
        telemetry: Arc<Telemetry>,
        events: Arc<UpstreamEvents>,
    ) -> ServerEntry {
        let kind = spec.transport_kind();
        let max_sessions = spec
            .max_sessions
            .unwrap_or(pool.max_sessions)
            .min(pool.max_sessions);
        let metrics =
            telemetry
                .metrics
                .for_server(name, kind.network_transport(), &RETRYABLE_KINDS);
        telemetry
            .metrics
            .pool_capacity
            .with_label_values(&[name])
            .set(max_sessions as i64);
        telemetry
            .metrics
            .circuit_state
            .with_label_values(&[name])
            .set(0);
        // The answers this server's policies give, at 0 from the start, so that
        // dashboards show the policy before a server first asks.
        for (method, outcome) in policy_answers(spec) {
            telemetry
                .metrics
                .server_requests
                .with_label_values(&[name, method, outcome])
                .inc_by(0);
        }
        ServerEntry {
            name: Arc::from(name),
            spec: spec.clone(),
            kind,
            idle_ttl: spec.idle_ttl.unwrap_or(pool.idle_ttl),
            max_sessions,
            idempotent_tools: spec.idempotent_tools.iter().cloned().collect(),
            address: spec
                .url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|url| Some((url.host_str()?.to_owned(), url.port_or_known_default()?))),
            breaker: Breaker::new(spec.breaker.clone(), Arc::from(name), telemetry.clone()),
            oauth: spec
                .oauth
                .clone()
                .filter(|_| kind == TransportKind::Http)
                .map(|oauth| {
                    let url = spec.url.as_deref().unwrap_or_default();
                    Arc::new(ServerOAuth::new(Arc::from(name), url, oauth))
                }),
            metrics,
            telemetry,
            hello: HelloCell::default(),
            lost: LostScopes::default(),
            events,
            slots: Mutex::new(SlotMap::default()),
        }
    }

    /// The pooled sessions map, locked (never hold it across an await). Each entry
    /// carries its own unit of capacity, so a poisoned lock still holds a map
    /// whose count matches the pool's.
    pub(crate) fn slots(&self) -> MutexGuard<'_, SlotMap> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What every span of this server in `scope` carries.
    pub(crate) fn span_target<'a>(&'a self, scope: &'a str) -> SpanTarget<'a> {
        SpanTarget {
            server: &self.name,
            scope,
            network_transport: self.kind.network_transport(),
            address: self
                .address
                .as_ref()
                .map(|(host, port)| (host.as_str(), *port)),
            tracer: self.telemetry.tracer(),
        }
    }

    /// The pool key of `scope`: itself, or [`SHARED_SCOPE`] for a server with
    /// `scopes = "shared"` (one session for every scope).
    pub(crate) fn pool_scope<'a>(&self, scope: &'a str) -> &'a str {
        match self.spec.scopes {
            ScopeMode::PerScope => scope,
            ScopeMode::Shared => SHARED_SCOPE,
        }
    }

    /// True if `tool` may run twice without harm.
    pub(crate) fn is_idempotent(&self, tool: &str) -> bool {
        self.idempotent_tools.contains(tool)
    }
}

/// The `(mcp_method_name, outcome)` each request policy of `spec` answers with.
fn policy_answers(spec: &ServerConfig) -> [(&'static str, &'static str); 2] {
    let sampling = match spec.sampling {
        SamplingPolicy::Decline => "decline",
        SamplingPolicy::Off => "unsupported",
    };
    let elicitation = match spec.elicitation {
        ElicitationPolicy::Decline => "decline",
        ElicitationPolicy::AcceptDefaults => "accept",
        ElicitationPolicy::Off => "unsupported",
    };
    [
        ("sampling/createMessage", sampling),
        ("elicitation/create", elicitation),
    ]
}
