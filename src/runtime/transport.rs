//! Opening a session over each transport: spawn or connect, then `initialize`
//! under the server's `connect_timeout`, then check the protocol version.
//!
//! `initialize` may not be cancelled (the spec forbids it), so its deadline
//! drops the transport instead: a stdio child's process group is killed, an HTTP
//! connection is closed.

pub(crate) mod builtin;
pub(crate) mod http;
pub(crate) mod oauth;
pub(crate) mod raw_results;
mod rmcp_text;
pub(crate) mod sse;
pub(crate) mod stdio;

use super::upstream::ServerHello;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::service::ServiceError;
use rmcp::service::{
    ClientInitializeError, ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService,
};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rmcp::transport::{DynamicTransportError, StreamableHttpClientTransport, Transport};
use tokio_util::task::TaskTracker;

use super::error::Error;
use super::handler::{
    ACCEPTED_PROTOCOL_VERSIONS, DISCOVER_PROTOCOL_VERSION, LEGACY_SSE_PROTOCOL_VERSION, McpClient,
};
use super::progress::{Observed, ProgressRouter};
use super::server::ServerEntry;
use super::server_requests::ServerRequestRoutes;
use crate::config::{Lifecycle, ServerConfig, TransportKind};
use http::SessionIdCell;
use stdio::ChildProcess;

/// A running rmcp client service.
pub(crate) type McpService = RunningService<RoleClient, McpClient>;

/// A freshly initialized connection and what the session must own with it.
pub(crate) struct Connection {
    pub(crate) service: McpService,
    pub(crate) process: Option<ChildProcess>,
    pub(crate) session_id: Option<SessionIdCell>,
    pub(crate) protocol_version: String,
    /// Routes the session's progress notifications to its requests.
    pub(crate) progress: Arc<ProgressRouter>,
    /// Routes the server's own requests to the caller in flight.
    pub(crate) server_requests: Arc<ServerRequestRoutes>,
}

/// What opening a transport needs from the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub(crate) http: reqwest::Client,
    pub(crate) tracker: TaskTracker,
}

impl Connector {
    /// Opens and initializes one session to the server.
    pub(crate) async fn connect(
        &self,
        entry: &ServerEntry,
        scope: &Arc<str>,
    ) -> Result<Connection, Error> {
        let (server, spec) = (&entry.name, &entry.spec);
        let deadline = spec.connect_timeout;
        let server_requests = Arc::new(ServerRequestRoutes::default());
        let handler = McpClient::new(
            server.clone(),
            scope.clone(),
            spec,
            entry.telemetry.clone(),
            server_requests.clone(),
            entry.events.clone(),
        );
        let counter = entry
            .telemetry
            .metrics
            .notifications
            .with_label_values(&[server.as_ref(), "notifications/progress"]);
        let progress = Arc::new(ProgressRouter::new(counter));
        let oauth = entry.oauth.clone();
        let attempt = self.connect_unbounded(server, spec, handler, &progress, oauth);
        let (service, process, session_id) = tokio::time::timeout(deadline, attempt)
            .await
            .map_err(|_| Error::Timeout {
                server: server.to_string(),
                method: "initialize".to_owned(),
                after: deadline,
            })??;
        let protocol_version = service
            .peer_info()
            .map(|info| info.protocol_version.to_string())
            .unwrap_or_default();
        if let Some(info) = service.peer_info() {
            entry.hello.set(ServerHello::of(&info));
        }
        let accepted = match spec.lifecycle {
            Lifecycle::Discover => protocol_version == DISCOVER_PROTOCOL_VERSION.as_str(),
            Lifecycle::Initialize => {
                ACCEPTED_PROTOCOL_VERSIONS.contains(&protocol_version.as_str())
                    || (spec.transport_kind() == TransportKind::Sse
                        && protocol_version == LEGACY_SSE_PROTOCOL_VERSION)
            }
        };
        if !accepted {
            let _ = tokio::time::timeout(Duration::from_secs(1), service.cancel()).await;
            let wanted = match spec.lifecycle {
                Lifecycle::Discover => DISCOVER_PROTOCOL_VERSION.to_string(),
                Lifecycle::Initialize => ACCEPTED_PROTOCOL_VERSIONS.join(", "),
            };
            return Err(Error::InitializeFailed {
                server: server.to_string(),
                detail: format!(
                    "server speaks protocol version {protocol_version:?}; mcpwatch accepts {wanted}"
                ),
            });
        }
        // A cached tool list served while the server is down would hide the outage.
        service
            .peer()
            .set_response_cache_config(rmcp::ClientCacheConfig::disabled())
            .await;
        Ok(Connection {
            service,
            process,
            session_id,
            protocol_version,
            progress,
            server_requests,
        })
    }

    async fn connect_unbounded(
        &self,
        server: &Arc<str>,
        spec: &ServerConfig,
        handler: McpClient,
        progress: &Arc<ProgressRouter>,
        oauth: Option<Arc<oauth::ServerOAuth>>,
    ) -> Result<Opened, Error> {
        let name = server.to_string();
        let lifecycle = spec.lifecycle;
        match spec.transport_kind() {
            TransportKind::Stdio => self.connect_stdio(server, spec, handler, progress).await,
            TransportKind::Http => {
                let cell = SessionIdCell::default();
                let (client, config) = http::parts(&self.http, spec, cell.clone())
                    .map_err(|detail| Phase::Connect.closed(name.clone(), detail))?;
                let started = match oauth {
                    None => {
                        let transport = StreamableHttpClientTransport::with_client(client, config);
                        start(handler, transport, progress, lifecycle).await
                    }
                    Some(oauth) => {
                        let client = oauth::Authorizing::new(client, oauth);
                        let transport = StreamableHttpClientTransport::with_client(client, config);
                        start(handler, transport, progress, lifecycle).await
                    }
                };
                let service = started.map_err(|e| initialize_error(&name, e))?;
                Ok((service, None, Some(cell)))
            }
            TransportKind::Sse => self.connect_sse(&name, spec, handler, progress).await,
            TransportKind::Builtin => {
                let (read, write) = tokio::io::split(builtin::start(&self.tracker));
                let transport = AsyncRwTransport::new_client(read, write);
                let service = start(handler, transport, progress, lifecycle)
                    .await
                    .map_err(|e| initialize_error(&name, e))?;
                Ok((service, None, None))
            }
        }
    }

    async fn connect_stdio(
        &self,
        server: &Arc<str>,
        spec: &ServerConfig,
        handler: McpClient,
        progress: &Arc<ProgressRouter>,
    ) -> Result<Opened, Error> {
        let name = server.to_string();
        let (process, transport) =
            ChildProcess::spawn(server, spec, &self.tracker).map_err(|e| {
                let command = spec.command.as_deref().unwrap_or_default();
                Phase::Connect.closed(name.clone(), format!("cannot start `{command}`: {e}"))
            })?;
        match start(handler, transport, progress, spec.lifecycle).await {
            Ok(service) => Ok((service, Some(process), None)),
            Err(error) => {
                process.wait_exit(Duration::from_millis(200)).await;
                let detail = format!("{}; {}", initialize_detail(&error), process.describe_exit());
                Err(Phase::Initialize.closed(name, detail))
            }
        }
    }

    async fn connect_sse(
        &self,
        name: &str,
        spec: &ServerConfig,
        handler: McpClient,
        progress: &Arc<ProgressRouter>,
    ) -> Result<Opened, Error> {
        let refused = |detail: String| Phase::Connect.closed(name.to_owned(), detail);
        let url = url::Url::parse(spec.url.as_deref().unwrap_or_default())
            .map_err(|e| refused(e.to_string()))?;
        let options = sse::SseOptions {
            url,
            headers: http::header_map(spec).map_err(refused)?,
            connect_timeout: spec.connect_timeout,
            max_event_bytes: spec.max_response_bytes,
        };
        let transport = sse::LegacySseTransport::connect(self.http.clone(), options)
            .await
            .map_err(|e| e.classify(name, Phase::Connect))?;
        let service = start(handler, transport, progress, spec.lifecycle)
            .await
            .map_err(|e| initialize_error(name, e))?;
        Ok((service, None, None))
    }
}

/// A started service and what the session must own with it.
type Opened = (McpService, Option<ChildProcess>, Option<SessionIdCell>);

/// Starts the client service on `transport` with the server's lifecycle, its
/// progress notifications routed by `progress`.
async fn start<T>(
    handler: McpClient,
    transport: T,
    progress: &Arc<ProgressRouter>,
    lifecycle: Lifecycle,
) -> Result<McpService, ClientInitializeError>
where
    T: Transport<RoleClient> + 'static,
{
    let transport = Observed::new(transport, progress.clone());
    match lifecycle {
        Lifecycle::Initialize => handler.serve(transport).await,
        Lifecycle::Discover => {
            let mode = ClientLifecycleMode::Discover {
                preferred_versions: vec![DISCOVER_PROTOCOL_VERSION],
            };
            handler.serve_with_lifecycle(transport, mode).await
        }
    }
}

/// Classifies a failed `initialize`: transport trouble (refused, DNS, HTTP status)
/// keeps its own kind; everything else is `initialize_failed`.
fn initialize_error(server: &str, error: ClientInitializeError) -> Error {
    if let ClientInitializeError::TransportError {
        error: transport, ..
    } = &error
    {
        return classify_transport_error(server, transport, Phase::Initialize);
    }
    Error::InitializeFailed {
        server: server.to_owned(),
        detail: initialize_detail(&error),
    }
}

fn initialize_detail(error: &ClientInitializeError) -> String {
    match error {
        ClientInitializeError::ConnectionClosed(_) => {
            "the server closed the connection during initialize".to_owned()
        }
        ClientInitializeError::JsonRpcError(data) => format!(
            "server refused initialize: {} {}",
            data.code.0, data.message
        ),
        other => other.to_string(),
    }
}

/// When a transport error happened: it decides what a dropped connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Establishing the transport: `connect_failed`.
    Connect,
    /// During `initialize`: `initialize_failed`.
    Initialize,
    /// Under a request: `transport_closed`.
    Request,
}

impl Phase {
    /// The error for a connection that dropped (or never carried anything) in this phase.
    pub(crate) fn closed(self, server: String, detail: String) -> Error {
        match self {
            Phase::Connect => Error::ConnectFailed { server, detail },
            Phase::Initialize => Error::InitializeFailed { server, detail },
            Phase::Request => Error::TransportClosed { server, detail },
        }
    }
}

/// The kind of a transport error: each transport classifies its own.
pub(crate) fn classify_transport_error(
    server: &str,
    error: &DynamicTransportError,
    phase: Phase,
) -> Error {
    if let Some(http) = error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return http::classify(server, http, phase);
    }
    if let Some(sse) = error.error.downcast_ref::<sse::SseError>() {
        return sse.classify(server, phase);
    }
    phase.closed(server.to_owned(), error.error.to_string())
}

/// The kind of an rmcp request error. `method` and `deadline` name a timeout.
pub(crate) fn classify_service_error(
    server: &str,
    method: &str,
    deadline: super::deadline::Deadline,
    error: ServiceError,
) -> Error {
    let server_name = server.to_owned();
    match error {
        ServiceError::McpError(data) => match http::too_large_limit(&data) {
            Some(limit) => Error::ResponseTooLarge {
                server: server_name,
                limit,
            },
            None => Error::Rpc {
                server: server_name,
                code: data.code.0,
                message: data.message.to_string(),
                data: data.data,
            },
        },
        ServiceError::TransportSend(transport) => {
            classify_transport_error(server, &transport, Phase::Request)
        }
        ServiceError::TransportClosed => {
            Phase::Request.closed(server_name, "the connection closed".to_owned())
        }
        ServiceError::Timeout { .. } => deadline.timed_out(server, method),
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
