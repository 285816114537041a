//! Gateway mode (DESIGN §10, docs/gateway.md): the agent serves MCP over
//! streamable HTTP at `/mcp/{server}` and `/scopes/{scope}/mcp/{server}`, in
//! front of the runtime, so that an unmodified MCP client gets pooled,
//! per-scope, guaranteed-closed, observed sessions.
//!
//! The gateway is a user of the runtime's one request path, not a second one.
//! Its own state is small: a map entry per downstream session
//! ([`sessions`]), with ids that any replica sharing `gateway.session_key`
//! accepts ([`session_id`]).
//!
//! - [`endpoint`]: the HTTP handlers (POST, GET, DELETE).
//! - [`jsonrpc`]: messages in, answers out.
//! - [`forward`]: one request: answered here or forwarded upstream.
//! - [`answer`]: JSON or SSE by the 100 ms rule, cancellation on disconnect.
//! - [`scope`]: the scope rules and the `_meta` forwarded.
//! - [`outbox`], [`notify`]: messages outside an answer.
//! - [`origin`]: the Origin and Host checks.
//! - [`errors`]: runtime failures as JSON-RPC errors.
//! - [`record`]: the SERVER span and metrics of one request.
//! - [`aggregate`], [`names`], [`uris`]: the aggregate endpoint `/mcp`.

mod aggregate;
mod answer;
pub(crate) mod endpoint;
mod errors;
mod forward;
mod jsonrpc;
mod names;
mod notify;
mod origin;
mod outbox;
mod record;
mod scope;
mod session_id;
mod sessions;
mod uris;
mod version;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::runtime::Runtime;
use record::OperationHistograms;
use session_id::{RandomFailed, SessionKey};
use sessions::Sessions;

/// The gateway's state, shared by its handlers.
pub(crate) struct Gateway {
    pub(crate) runtime: Runtime,
    pub(crate) config: GatewayConfig,
    /// The main listener's address (its own origin).
    pub(crate) listen: SocketAddr,
    pub(crate) sessions: Sessions,
    pub(crate) key: SessionKey,
    pub(crate) histograms: OperationHistograms,
    /// The ids the gateway mints (`mcpwatch-{n}`): of the server requests
    /// sent to clients, and of the priming events of SSE answers.
    pub(crate) server_request_ids: Arc<AtomicU64>,
    /// The aggregate endpoint's name and URI maps.
    pub(crate) aggregate: aggregate::Aggregate,
    /// This gateway, for the tasks it spawns.
    pub(crate) me: Weak<Gateway>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.listen)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The gateway of `runtime` on the listener `listen`; it receives the
    /// runtime's notifications and sweeps idle sessions until shut down.
    pub(crate) fn start(
        runtime: Runtime,
        listen: SocketAddr,
    ) -> Result<Arc<Gateway>, RandomFailed> {
        let config = runtime.config().gateway.clone();
        let key = SessionKey::new(config.session_key.as_ref().map(|k| k.expose()))?;
        if config.session_key.is_none() {
            tracing::debug!(
                "gateway.session_key is unset: session ids are valid on this replica only"
            );
        }
        for server in runtime.config().servers.keys() {
            runtime.metrics().for_gateway_server(server);
        }
        runtime.metrics().for_gateway_server(aggregate::AGGREGATE);
        let gateway = Arc::new_cyclic(|me| Gateway {
            sessions: Sessions::new(
                runtime.clone(),
                config.max_sessions,
                config.session_idle_ttl,
            ),
            runtime,
            config,
            listen,
            key,
            histograms: OperationHistograms::default(),
            server_request_ids: Arc::new(AtomicU64::new(1)),
            aggregate: aggregate::Aggregate::default(),
            me: me.clone(),
            stop: CancellationToken::new(),
        });
        if !gateway
            .runtime
            .set_notification_sink(notify::sink(Arc::downgrade(&gateway)))
        {
            tracing::warn!(
                "a gateway already receives this runtime's notifications; this one gets none"
            );
        }
        spawn_sweeper(&gateway);
        Ok(gateway)
    }

    /// A new id, `mcpwatch-{n}`, unique in this gateway.
    pub(crate) fn mint_id(&self) -> String {
        let n = self.server_request_ids.fetch_add(1, Ordering::Relaxed);
        format!("mcpwatch-{n}")
    }

    /// Ends every downstream session (`shutdown`) and stops the sweeper.
    pub(crate) fn shutdown(&self) -> usize {
        self.stop.cancel();
        self.sessions.end_all()
    }
}

/// Ends idle sessions every quarter of the idle TTL (between 100 ms and 30 s).
fn spawn_sweeper(gateway: &Arc<Gateway>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let interval = (gateway.config.session_idle_ttl / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let weak = Arc::downgrade(gateway);
    let stop = gateway.stop.clone();
    handle.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            let ended = gateway.sessions.sweep();
            if ended > 0 {
                tracing::debug!(ended, "gateway sessions ended by idle timeout");
            }
        }
    });
}
