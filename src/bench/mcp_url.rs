//! The `mcp` and `mcp-per-call-session` bench modes: rmcp's streamable-HTTP
//! client against any MCP URL (mcpwatch's gateway, another gateway, a server),
//! so every path of a comparison is measured by the same client.
//!
//! Mode `mcp` opens one session before the run and sends every call on it, at
//! the plan's concurrency (rmcp's limit on POSTs in flight is raised to match,
//! from its default of 16). Mode `mcp-per-call-session` opens a session for
//! every call (`initialize`, `notifications/initialized`), calls, and closes it
//! with `DELETE`, as langchain-mcp-adapters does.

use std::collections::HashMap;

use http::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, JsonObject,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::runtime::OFFERED_PROTOCOL_VERSION;

/// Why an MCP URL cannot be benchmarked.
#[derive(Debug, thiserror::Error)]
pub enum McpUrlError {
    /// A `--header` is not `NAME:VALUE` with a valid name and value.
    #[error("header {0:?} is not NAME:VALUE")]
    BadHeader(String),
    /// The tool arguments are not a JSON object.
    #[error("the tool arguments are not a JSON object")]
    ArgumentsNotAnObject,
    /// `initialize` failed (connection refused, HTTP error, bad answer).
    #[error("cannot open an MCP session at {url}: {reason}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The call failed before an answer (transport, JSON-RPC error).
    #[error("tools/call failed: {0}")]
    Call(String),
    /// The tool answered with `isError: true`.
    #[error("tool error")]
    ToolError,
}

type Session = RunningService<RoleClient, ClientConfig>;

/// A client of one MCP endpoint: the URL, the headers sent with every request,
/// and, in mode `mcp`, the one session every call uses.
pub(super) struct McpUrl {
    url: String,
    headers: HashMap<HeaderName, HeaderValue>,
    tool: String,
    arguments: Option<JsonObject>,
    max_in_flight: usize,
    /// The persistent session (mode `mcp`); none: a session per call.
    session: Option<Session>,
}

impl McpUrl {
    /// Checks the headers and arguments; with `persistent`, opens the session.
    pub(super) async fn open(
        url: &str,
        headers: &[(String, String)],
        tool: &str,
        arguments: Option<&serde_json::Value>,
        concurrency: u64,
        persistent: bool,
    ) -> Result<McpUrl, McpUrlError> {
        let arguments = match arguments {
            None => None,
            Some(serde_json::Value::Object(map)) => Some(map.clone()),
            Some(_) => return Err(McpUrlError::ArgumentsNotAnObject),
        };
        let mut client = McpUrl {
            url: url.to_owned(),
            headers: header_map(headers)?,
            tool: tool.to_owned(),
            arguments,
            max_in_flight: usize::try_from(concurrency).unwrap_or(usize::MAX).max(1),
            session: None,
        };
        if persistent {
            client.session = Some(client.connect().await?);
        }
        Ok(client)
    }

    /// One `tools/call`: on the persistent session, or on a session opened
    /// for it and closed (`DELETE`) after it.
    pub(super) async fn call(&self) -> Result<(), McpUrlError> {
        if let Some(session) = &self.session {
            return self.call_on(session).await;
        }
        let session = self.connect().await?;
        let result = self.call_on(&session).await;
        // Waits for the DELETE (rmcp bounds it with its own timeout).
        let _ = session.cancel().await;
        result
    }

    /// Ends the persistent session with `DELETE`, if there is one. Dropping
    /// the client instead cancels it without waiting for the `DELETE`.
    pub(super) async fn close(mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.cancel().await;
        }
    }

    async fn connect(&self) -> Result<Session, McpUrlError> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .custom_headers(self.headers.clone())
            .max_concurrent_requests(self.max_in_flight);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpwatch-bench", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(OFFERED_PROTOCOL_VERSION);
        info.serve(StreamableHttpClientTransport::from_config(config))
            .await
            .map_err(|e| McpUrlError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }

    async fn call_on(&self, session: &Session) -> Result<(), McpUrlError> {
        let mut params = CallToolRequestParams::new(self.tool.clone());
        params.arguments = self.arguments.clone();
        match session.peer().call_tool(params).await {
            Ok(result) if result.is_error != Some(true) => Ok(()),
            Ok(_) => Err(McpUrlError::ToolError),
            Err(error) => Err(McpUrlError::Call(error.to_string())),
        }
    }
}

/// `NAME:VALUE` pairs (already split) as HTTP headers.
fn header_map(
    headers: &[(String, String)],
) -> Result<HashMap<HeaderName, HeaderValue>, McpUrlError> {
    headers
        .iter()
        .map(|(name, value)| {
            let bad = || McpUrlError::BadHeader(format!("{name}:{value}"));
            let name = HeaderName::try_from(name.trim()).map_err(|_| bad())?;
            let value = HeaderValue::try_from(value.trim()).map_err(|_| bad())?;
            Ok((name, value))
        })
        .collect()
}

/// Splits `NAME:VALUE` (the form of `--header`) at its first colon.
pub fn parse_header(text: &str) -> Result<(String, String), McpUrlError> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(McpUrlError::BadHeader(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_colon_and_are_checked() {
        assert_eq!(
            parse_header("X-Mcpwatch-Scope: a:b").unwrap(),
            ("X-Mcpwatch-Scope".to_owned(), "a:b".to_owned())
        );
        assert!(matches!(
            parse_header("no colon"),
            Err(McpUrlError::BadHeader(_))
        ));
        assert!(matches!(
            parse_header(":value"),
            Err(McpUrlError::BadHeader(_))
        ));
        let bad_name = [("bad name".to_owned(), "v".to_owned())];
        assert!(matches!(
            header_map(&bad_name),
            Err(McpUrlError::BadHeader(_))
        ));
        let bad_value = [("x-a".to_owned(), "line\nbreak".to_owned())];
        assert!(matches!(
            header_map(&bad_value),
            Err(McpUrlError::BadHeader(_))
        ));
        let good = [("X-A".to_owned(), "1".to_owned())];
        assert_eq!(
            header_map(&good).unwrap()[&HeaderName::from_static("x-a")],
            "1"
        );
    }
}
