//! A raw streamable-HTTP MCP client for gateway tests: JSON-RPC bodies in,
//! every message of the answer out (plain JSON or SSE), headers exposed, so
//! tests can check the wire exactly (real SDK clients are driven by the
//! scripts in tests/gateway_clients/).

use std::time::Duration;

use serde_json::{Value, json};

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// `text/event-stream` (else JSON or empty).
    pub sse: bool,
    /// The JSON-RPC messages: one for JSON, each event's for SSE.
    pub messages: Vec<Value>,
}

impl Reply {
    /// The last message (the answer).
    pub fn answer(&self) -> &Value {
        self.messages.last().unwrap_or(&Value::Null)
    }

    /// `result.content[0].text` of the answer.
    pub fn text(&self) -> String {
        self.answer()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `error.data.type` of the answer.
    pub fn error_type(&self) -> String {
        self.answer()["error"]["data"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A client of one gateway URL, with an optional session.
#[derive(Clone)]
pub struct McpHttp {
    pub url: String,
    pub http: reqwest::Client,
    pub session: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl McpHttp {
    pub fn new(url: impl Into<String>) -> McpHttp {
        McpHttp {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            session: None,
            headers: Vec::new(),
        }
    }

    /// A connection per request (none kept idle).
    pub fn without_keepalive(mut self) -> McpHttp {
        self.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        self
    }

    /// Sends `X-Mcpwatch-Scope: scope` on every request.
    pub fn with_scope(mut self, scope: &str) -> McpHttp {
        self.headers.push(("x-mcpwatch-scope".into(), scope.into()));
        self
    }

    /// POSTs `body` (raw bytes) with extra `headers`.
    pub async fn post_raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(id) = &self.session {
            request = request.header("mcp-session-id", id);
        }
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        read(request.send().await.unwrap()).await
    }

    /// POSTs a JSON body.
    pub async fn post(&self, body: Value) -> Reply {
        self.post_raw(body.to_string().into_bytes(), &[]).await
    }

    /// A request with `id`, `method` and `params`.
    pub async fn request(&self, id: i64, method: &str, params: Value) -> Reply {
        self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }

    /// `tools/call`.
    pub async fn call(&self, id: i64, tool: &str, arguments: Value) -> Reply {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }

    /// `initialize` (at `version`) then `notifications/initialized`; keeps the session id.
    pub async fn initialize(&mut self, version: &str, capabilities: Value) -> Reply {
        let reply = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": version, "capabilities": capabilities,
                       "clientInfo": {"name": "gateway-test", "version": "1"}}),
            )
            .await;
        self.session = reply.header("mcp-session-id");
        if self.session.is_some() {
            let ack = self
                .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
            assert_eq!(ack.status, 202);
        }
        reply
    }

    /// `initialize` then `notifications/initialized`, whatever the latter's
    /// status (the session may idle out in between on a loaded machine).
    pub async fn initialize_lenient(&mut self, version: &str) {
        let reply = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "gateway-test", "version": "1"}}),
            )
            .await;
        self.session = reply.header("mcp-session-id");
        self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// `DELETE` of the session; returns the status.
    pub async fn delete(&self) -> u16 {
        let mut request = self.http.delete(&self.url);
        if let Some(id) = &self.session {
            request = request.header("mcp-session-id", id);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

/// Reads a whole answer, JSON or SSE.
pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let sse = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.unwrap_or_default();
    let messages = if sse {
        sse_messages(&text)
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&text).unwrap_or(Value::String(text))]
    };
    Reply {
        status,
        headers,
        sse,
        messages,
    }
}

/// The JSON of every `data:` line of an SSE body.
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}
