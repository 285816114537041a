//! The client side of every session: what mcpwatch tells servers about itself,
//! what it does with their notifications, and how it answers their requests.
//!
//! * Log messages (`notifications/message`) go to `tracing` under the target
//!   `mcpwatch::server_log`, with the server's name.
//! * Progress (`notifications/progress`) is counted and routed to its request
//!   by the transport wrapper of `progress.rs`, not here.
//! * `list_changed` notifications are counted and logged. mcpwatch keeps no
//!   list cache (rmcp's response cache is turned off at connect), so the next
//!   `tools/list` (`resources/list`, `prompts/list`) after one asks the server.
//! * Requests from the server are answered by the server's policy
//!   (`sampling`, `elicitation`): a headless agent has no person to ask.
//!
//! Every notification and request is counted
//! (`mcp_client_notifications_total`, `mcp_client_server_requests_total`).

use std::sync::Arc;

use rmcp::ClientHandler;
#[allow(deprecated)]
// Logging and sampling are deprecated by SEP-2577, but servers still use them.
use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientResult,
    CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ElicitRequest,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, ErrorCode,
    ErrorData, FormElicitationCapability, Implementation, ListRootsResult, LoggingLevel,
    LoggingMessageNotificationParam, ProtocolVersion, ResourceUpdatedNotificationParam,
    SamplingCapability, ServerRequest, UrlElicitationCapability,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use serde_json::{Map, Value};

use super::request::McpRequest;
use super::server_requests::ServerRequestRoutes;
use super::upstream::UpstreamEvents;
use crate::config::{ElicitationPolicy, Lifecycle, SamplingPolicy, ServerConfig};
use crate::telemetry::Telemetry;
use crate::telemetry::events::{NotificationReceived, ServerRequestAnswered};

/// The protocol version mcpwatch offers in `initialize`.
pub const OFFERED_PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Versions accepted in a server's `initialize` answer.
pub const ACCEPTED_PROTOCOL_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// Also accepted over legacy SSE, whose servers speak the 2024-11-05 revision.
pub(super) const LEGACY_SSE_PROTOCOL_VERSION: &str = "2024-11-05";

/// The version a `lifecycle = "discover"` session asks for (and the only one it accepts).
pub(super) const DISCOVER_PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V_2026_07_28;

/// JSON-RPC code of a declined sampling request (the spec's "user rejected").
const SAMPLING_DECLINED: i32 = -1;

/// The handler serving one session.
#[derive(Debug, Clone)]
pub(crate) struct McpClient {
    server: Arc<str>,
    /// The scope of the session this handler serves.
    scope: Arc<str>,
    info: ClientConfig,
    sampling: SamplingPolicy,
    elicitation: ElicitationPolicy,
    telemetry: Arc<Telemetry>,
    /// The routes of the session's requests in flight, for the server's own requests.
    routes: Arc<ServerRequestRoutes>,
    /// Where notifications go besides logs and metrics (the gateway).
    events: Arc<UpstreamEvents>,
}

impl McpClient {
    pub(crate) fn new(
        server: Arc<str>,
        scope: Arc<str>,
        spec: &ServerConfig,
        telemetry: Arc<Telemetry>,
        routes: Arc<ServerRequestRoutes>,
        events: Arc<UpstreamEvents>,
    ) -> McpClient {
        let info = ClientConfig::new(
            capabilities(spec),
            Implementation::new("mcpwatch", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(OFFERED_PROTOCOL_VERSION);
        McpClient {
            server,
            scope,
            info,
            sampling: spec.sampling,
            elicitation: spec.elicitation,
            telemetry,
            routes,
            events,
        }
    }

    /// Counts a notification and hands it to the gateway, if one listens.
    fn notified(&self, method: &'static str, params: impl FnOnce() -> Value) {
        NotificationReceived {
            server: &self.server,
            method,
        }
        .emit(&self.telemetry);
        self.events.emit(&self.server, &self.scope, method, params);
    }

    /// Hands `request` to the caller in flight that routes server requests, if
    /// there is exactly one (`None`: the policy answers).
    async fn forwarded(
        &self,
        method: &'static str,
        request: ServerRequest,
    ) -> Option<Result<ClientResult, ErrorData>> {
        let route = self.routes.only()?;
        self.answered(method, "forwarded");
        Some(route(request).await)
    }

    fn answered(&self, method: &'static str, outcome: &'static str) {
        ServerRequestAnswered {
            server: &self.server,
            method,
            outcome,
        }
        .emit(&self.telemetry);
    }
}

/// A notification's params as JSON (they came as JSON; this cannot fail).
fn to_json(params: &impl serde::Serialize) -> Value {
    serde_json::to_value(params).unwrap_or(Value::Null)
}

fn unexpected_answer(method: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("the caller answered {method} with another result"),
        None,
    )
}

/// What mcpwatch advertises: sampling, and form and URL elicitation, unless
/// their policy is `off` (the policies decline URL elicitation: a URL needs a
/// person with a browser; a gateway client in flight may take it). Roots are
/// not advertised: mcpwatch has none of its own to give.
fn capabilities(spec: &ServerConfig) -> ClientCapabilities {
    let mut capabilities = ClientCapabilities::default();
    if spec.sampling != SamplingPolicy::Off {
        capabilities.sampling = Some(SamplingCapability::default());
    }
    if spec.elicitation != ElicitationPolicy::Off {
        capabilities.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::new())
                .with_url(UrlElicitationCapability::default()),
        );
    }
    capabilities
}

/// The request that checks a session is alive: `ping`, or `server/discover`
/// on a 2026-07-28 session (which has no `ping`).
pub(crate) fn health_request(spec: &ServerConfig) -> McpRequest {
    match spec.lifecycle {
        Lifecycle::Initialize => McpRequest::new("ping", None),
        Lifecycle::Discover => McpRequest::new("server/discover", Some(Map::new())),
    }
}

/// The answer to a form elicitation under `accept_defaults`: every property's
/// default, or `None` when a required property has none.
fn defaults_of(schema: &Value) -> Option<Map<String, Value>> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut content = Map::new();
    for (name, property) in properties.into_iter().flatten() {
        if let Some(default) = property.get("default") {
            content.insert(name.clone(), default.clone());
        }
    }
    let required = schema.get("required").and_then(Value::as_array);
    let complete = required
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .all(|name| content.contains_key(name));
    complete.then_some(content)
}

impl ClientHandler for McpClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    #[allow(deprecated)] // Sampling is deprecated by SEP-2577, but servers still ask.
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        const METHOD: &str = "sampling/createMessage";
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        if let Some(answer) = self.forwarded(METHOD, request).await {
            return match answer? {
                ClientResult::CreateMessageResult(result) => Ok(*result),
                _ => Err(unexpected_answer(METHOD)),
            };
        }
        match self.sampling {
            SamplingPolicy::Decline => {
                self.answered(METHOD, "decline");
                Err(ErrorData::new(
                    ErrorCode(SAMPLING_DECLINED),
                    "sampling declined: mcpwatch answers sampling requests by policy (sampling = \"decline\")",
                    None,
                ))
            }
            SamplingPolicy::Off => {
                self.answered(METHOD, "unsupported");
                Err(ErrorData::new(ErrorCode::METHOD_NOT_FOUND, METHOD, None))
            }
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        const METHOD: &str = "elicitation/create";
        let forward = ServerRequest::ElicitRequest(ElicitRequest::new(request.clone()));
        if let Some(answer) = self.forwarded(METHOD, forward).await {
            return match answer? {
                ClientResult::ElicitResult(result) => Ok(result),
                _ => Err(unexpected_answer(METHOD)),
            };
        }
        let decline = || ElicitResult::new(ElicitationAction::Decline);
        match self.elicitation {
            ElicitationPolicy::Off => {
                self.answered(METHOD, "unsupported");
                Err(ErrorData::new(ErrorCode::METHOD_NOT_FOUND, METHOD, None))
            }
            ElicitationPolicy::Decline => {
                self.answered(METHOD, "decline");
                Ok(decline())
            }
            ElicitationPolicy::AcceptDefaults => {
                let content = match &request {
                    ElicitRequestParams::FormElicitationParams {
                        requested_schema, ..
                    } => serde_json::to_value(requested_schema)
                        .ok()
                        .and_then(|schema| defaults_of(&schema)),
                    // A URL needs a person with a browser.
                    _ => None,
                };
                match content {
                    Some(content) => {
                        self.answered(METHOD, "accept");
                        Ok(ElicitResult::new(ElicitationAction::Accept)
                            .with_content(Value::Object(content)))
                    }
                    None => {
                        self.answered(METHOD, "decline");
                        Ok(decline())
                    }
                }
            }
        }
    }

    #[allow(deprecated)] // Roots are deprecated by SEP-2577, but servers still ask.
    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        const METHOD: &str = "roots/list";
        let request = ServerRequest::ListRootsRequest(Default::default());
        if let Some(answer) = self.forwarded(METHOD, request).await {
            return match answer? {
                ClientResult::ListRootsResult(result) => Ok(result),
                _ => Err(unexpected_answer(METHOD)),
            };
        }
        // Not advertised: a server asking anyway learns there are none.
        self.answered("roots/list", "unsupported");
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "roots/list",
            None,
        ))
    }

    async fn on_cancelled(
        &self,
        params: CancelledNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.notified("notifications/cancelled", || to_json(&params));
        tracing::debug!(mcp.server.name = %self.server, request_id = ?params.request_id, reason = ?params.reason, "the server cancelled a request");
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.notified("notifications/tools/list_changed", || {
            Value::Object(Map::new())
        });
        tracing::debug!(mcp.server.name = %self.server, "the server's tool list changed");
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.notified("notifications/resources/list_changed", || {
            Value::Object(Map::new())
        });
        tracing::debug!(mcp.server.name = %self.server, "the server's resource list changed");
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.notified("notifications/prompts/list_changed", || {
            Value::Object(Map::new())
        });
        tracing::debug!(mcp.server.name = %self.server, "the server's prompt list changed");
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.notified("notifications/resources/updated", || to_json(&params));
        tracing::debug!(mcp.server.name = %self.server, uri = %params.uri, "a resource changed");
    }

    #[allow(deprecated)] // Logging is deprecated by SEP-2577, but servers still send it.
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.notified("notifications/message", || to_json(&params));
        let logger = params.logger.as_deref().unwrap_or("");
        let data = params.data.to_string();
        match params.level {
            LoggingLevel::Debug => {
                tracing::debug!(target: "mcpwatch::server_log", mcp_server = %self.server, logger, "{data}")
            }
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(target: "mcpwatch::server_log", mcp_server = %self.server, logger, "{data}")
            }
            LoggingLevel::Warning => {
                tracing::warn!(target: "mcpwatch::server_log", mcp_server = %self.server, logger, "{data}")
            }
            _ => {
                tracing::error!(target: "mcpwatch::server_log", mcp_server = %self.server, logger, "{data}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_defaults_fills_every_default_and_needs_every_required_one() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "note": {"type": "string"}},
            "required": ["name"]});
        let content = defaults_of(&schema).unwrap();
        assert_eq!(
            Value::Object(content),
            json!({"name": "John Doe", "age": 30})
        );
        let missing = json!({"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]});
        assert!(defaults_of(&missing).is_none());
    }

    #[test]
    fn capabilities_follow_the_policies() {
        let mut spec = ServerConfig::builtin();
        let advertised = serde_json::to_value(capabilities(&spec)).unwrap();
        assert_eq!(
            advertised,
            json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}})
        );
        spec.sampling = SamplingPolicy::Off;
        spec.elicitation = ElicitationPolicy::Off;
        assert_eq!(
            serde_json::to_value(capabilities(&spec)).unwrap(),
            json!({})
        );
    }
}
