//! Opening a session over each transport: spawn or connect, then `initialize`
//! under the server's `connect_timeout`, then check the protocol version.
//!
//! `initialize` may not be cancelled (the spec forbids it), so its deadline
//! drops the transport instead: a stdio child's process group is killed, an HTTP
//! connection is closed.

pub mod builtin;
pub mod http;
pub mod sse;
pub mod stdio;

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::service::{ClientInitializeError, RoleClient, RunningService};
use tokio_util::task::TaskTracker;

use super::call::classify_transport_error;
use super::error::Error;
use super::handler::{ACCEPTED_PROTOCOL_VERSIONS, LEGACY_SSE_PROTOCOL_VERSION, McpClient};
use crate::config::{ServerConfig, TransportKind};
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
}

/// What opening a transport needs from the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub(crate) http: reqwest::Client,
    pub(crate) tracker: TaskTracker,
}

impl Connector {
    /// Opens and initializes one session to `server`.
    pub(crate) async fn connect(
        &self,
        server: &Arc<str>,
        spec: &ServerConfig,
    ) -> Result<Connection, Error> {
        let deadline = spec.connect_timeout;
        let attempt = self.connect_unbounded(server, spec);
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
        let accepted = ACCEPTED_PROTOCOL_VERSIONS.contains(&protocol_version.as_str())
            || (spec.transport_kind() == TransportKind::Sse
                && protocol_version == LEGACY_SSE_PROTOCOL_VERSION);
        if !accepted {
            let _ = tokio::time::timeout(Duration::from_secs(1), service.cancel()).await;
            return Err(Error::InitializeFailed {
                server: server.to_string(),
                detail: format!(
                    "server speaks protocol version {protocol_version:?}; mcpwatch accepts {}",
                    ACCEPTED_PROTOCOL_VERSIONS.join(", ")
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
        })
    }

    async fn connect_unbounded(
        &self,
        server: &Arc<str>,
        spec: &ServerConfig,
    ) -> Result<(McpService, Option<ChildProcess>, Option<SessionIdCell>), Error> {
        let handler = McpClient::new(server.clone());
        let name = server.to_string();
        match spec.transport_kind() {
            TransportKind::Stdio => {
                let (process, transport) = ChildProcess::spawn(server, spec, &self.tracker)
                    .map_err(|e| Error::ConnectFailed {
                        server: name.clone(),
                        detail: format!(
                            "cannot start `{}`: {e}",
                            spec.command.as_deref().unwrap_or_default()
                        ),
                    })?;
                match handler.serve(transport).await {
                    Ok(service) => Ok((service, Some(process), None)),
                    Err(error) => {
                        process.wait_exit(Duration::from_millis(200)).await;
                        let detail =
                            format!("{}; {}", initialize_detail(&error), process.describe_exit());
                        Err(Error::InitializeFailed {
                            server: name,
                            detail,
                        })
                    }
                }
            }
            TransportKind::Http => {
                let cell = SessionIdCell::default();
                let transport =
                    http::transport(&self.http, spec, cell.clone()).map_err(|detail| {
                        Error::ConnectFailed {
                            server: name.clone(),
                            detail,
                        }
                    })?;
                let service = handler
                    .serve(transport)
                    .await
                    .map_err(|e| initialize_error(&name, e))?;
                Ok((service, None, Some(cell)))
            }
            TransportKind::Sse => {
                let options = sse::SseOptions {
                    url: url::Url::parse(spec.url.as_deref().unwrap_or_default()).map_err(|e| {
                        Error::ConnectFailed {
                            server: name.clone(),
                            detail: e.to_string(),
                        }
                    })?,
                    headers: header_map(spec).map_err(|detail| Error::ConnectFailed {
                        server: name.clone(),
                        detail,
                    })?,
                    connect_timeout: spec.connect_timeout,
                    max_event_bytes: spec.max_response_bytes,
                };
                let transport = sse::LegacySseTransport::connect(self.http.clone(), options)
                    .await
                    .map_err(|e| {
                        let source = rmcp::transport::DynamicTransportError::new::<
                            sse::LegacySseTransport,
                            RoleClient,
                        >(e);
                        match classify_transport_error(&name, &source) {
                            Error::TransportClosed { detail, .. } => Error::ConnectFailed {
                                server: name.clone(),
                                detail,
                            },
                            other => other,
                        }
                    })?;
                let service = handler
                    .serve(transport)
                    .await
                    .map_err(|e| initialize_error(&name, e))?;
                Ok((service, None, None))
            }
            TransportKind::Builtin => {
                let pipe = builtin::start(&self.tracker);
                let service = handler
                    .serve(pipe)
                    .await
                    .map_err(|e| initialize_error(&name, e))?;
                Ok((service, None, None))
            }
        }
    }
}

fn header_map(spec: &ServerConfig) -> Result<::http::HeaderMap, String> {
    let mut headers = ::http::HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = ::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name `{name}`"))?;
        let value = ::http::HeaderValue::from_str(value.expose())
            .map_err(|_| format!("bad value for header `{name}`"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Classifies a failed `initialize`: transport trouble (refused, DNS, HTTP status)
/// keeps its own kind; everything else is `initialize_failed`.
fn initialize_error(server: &str, error: ClientInitializeError) -> Error {
    if let ClientInitializeError::TransportError {
        error: transport, ..
    } = &error
    {
        return match classify_transport_error(server, transport) {
            Error::TransportClosed { detail, .. } => Error::InitializeFailed {
                server: server.to_owned(),
                detail,
            },
            other => other,
        };
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
