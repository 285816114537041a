//! A raw streamable-HTTP MCP client for the gateway runs: JSON-RPC bodies
//! posted with reqwest, the answer read as JSON or as an SSE stream, nothing
//! else. It opens no GET stream, so an idle session holds no connection.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

/// The protocol revision the client asks for.
const PROTOCOL: &str = "2025-11-25";

/// What went wrong with a request, in a few words that are the same for the
/// same cause (runs count failures by it).
pub(crate) type Failure = String;

/// A client of one gateway endpoint, in one scope (or none: the session scope).
#[derive(Clone)]
pub(crate) struct McpClient {
    http: reqwest::Client,
    url: String,
    scope: Option<String>,
}

impl McpClient {
    /// A client of `url` (`http://.../mcp/demo`); `scope`: the
    /// `X-Mcpwatch-Scope` sent on every request. Its keep-alive connections
    /// close when the last clone is dropped.
    pub(crate) fn new(url: String, scope: Option<String>) -> Result<McpClient> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(McpClient { http, url, scope })
    }

    /// `initialize` and `notifications/initialized`; returns the session id.
    pub(crate) async fn open(&self) -> Result<String, Failure> {
        let session = self.initialize().await?;
        self.initialized(&session).await?;
        Ok(session)
    }

    /// `initialize`; returns the session id.
    pub(crate) async fn initialize(&self) -> Result<String, Failure> {
        let hello = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "mcpwatch-scale", "version": "1"}}});
        let answer = self.post(None, &hello, "initialize").await?;
        let session = answer
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| "initialize: no mcp-session-id".to_owned())?;
        read_result(answer, "initialize").await?;
        Ok(session)
    }

    /// `notifications/initialized` in `session` (answered 202).
    pub(crate) async fn initialized(&self, session: &str) -> Result<(), Failure> {
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let answer = self
            .post(Some(session), &initialized, "notifications/initialized")
            .await?;
        let status = answer.status();
        // Read to the end: the connection goes back to the pool.
        let _ = answer.bytes().await;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!(
                "notifications/initialized: HTTP {}",
                status.as_u16()
            ));
        }
        Ok(())
    }

    /// `tools/call echo` in `session`; fails on an error or `isError: true`.
    pub(crate) async fn echo(&self, session: &str) -> Result<(), Failure> {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}}});
        let answer = self.post(Some(session), &call, "tools/call").await?;
        let result = read_result(answer, "tools/call").await?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err("tools/call: isError".to_owned());
        }
        Ok(())
    }

    /// `DELETE` of `session`.
    pub(crate) async fn delete(&self, session: &str) -> Result<(), Failure> {
        let answer = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", PROTOCOL)
            .send()
            .await
            .map_err(|e| transport("DELETE", &e))?;
        let status = answer.status();
        // Read to the end: the connection goes back to the pool.
        let _ = answer.bytes().await;
        if !status.is_success() {
            return Err(format!("DELETE: HTTP {}", status.as_u16()));
        }
        Ok(())
    }

    /// POSTs one JSON-RPC message; fails on a transport error or a non-2xx status.
    async fn post(
        &self,
        session: Option<&str>,
        body: &Value,
        what: &str,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", PROTOCOL);
        }
        if let Some(scope) = &self.scope {
            request = request.header("x-mcpwatch-scope", scope);
        }
        let answer = request.send().await.map_err(|e| transport(what, &e))?;
        if !answer.status().is_success() {
            return Err(format!("{what}: HTTP {}", answer.status().as_u16()));
        }
        Ok(answer)
    }
}

/// A transport failure by its innermost cause ("connection refused", "Too many open files").
fn transport(what: &str, error: &reqwest::Error) -> Failure {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let kind = if error.is_timeout() {
        "timeout"
    } else {
        "transport"
    };
    format!("{what}: {kind}: {cause}")
}

/// The `result` of a JSON-RPC answer, sent as JSON or as an SSE stream (the
/// last `data:` event holding a JSON-RPC answer).
async fn read_result(answer: reqwest::Response, what: &str) -> Result<Value, Failure> {
    let sse = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = answer.bytes().await.map_err(|e| transport(what, &e))?;
    let message: Value = if sse {
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .rfind(|message| message.get("id").is_some())
            .ok_or_else(|| format!("{what}: an SSE answer without a JSON-RPC answer"))?
    } else {
        serde_json::from_slice(&body).map_err(|_| format!("{what}: an answer that is not JSON"))?
    };
    if let Some(error) = message.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let kind = error
            .pointer("/data/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(format!("{what}: JSON-RPC error {code} {kind}"));
    }
    message
        .get("result")
        .cloned()
        .ok_or_else(|| format!("{what}: an answer without result"))
}
