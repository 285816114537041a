//! The client side of every session: what mcpwatch tells servers about itself,
//! and what it does with their notifications.

use std::sync::Arc;

use rmcp::ClientHandler;
#[allow(deprecated)] // Logging is deprecated by SEP-2577, but servers still send it.
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, LoggingLevel,
    LoggingMessageNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient};

/// The protocol version mcpwatch offers in `initialize`.
pub const OFFERED_PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Versions accepted in a server's `initialize` answer.
pub const ACCEPTED_PROTOCOL_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// Also accepted over legacy SSE, whose servers speak the 2024-11-05 revision.
pub const LEGACY_SSE_PROTOCOL_VERSION: &str = "2024-11-05";

/// The handler serving one session: identifies mcpwatch and routes server logs to tracing.
#[derive(Debug, Clone)]
pub(crate) struct McpClient {
    server: Arc<str>,
    info: ClientConfig,
}

impl McpClient {
    pub(crate) fn new(server: Arc<str>) -> McpClient {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpwatch", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(OFFERED_PROTOCOL_VERSION);
        McpClient { server, info }
    }
}

impl ClientHandler for McpClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    #[allow(deprecated)] // Logging is deprecated by SEP-2577, but servers still send it.
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
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
