//! A hand-written streamable-HTTP MCP server (axum, 127.0.0.1) that misbehaves on
//! purpose, for the faults a real SDK server will not produce on demand: HTTP
//! 429/500/503 with `Retry-After`, oversized results (JSON or SSE), a response
//! stream closed mid-way, an SSE response that stalls, an `initialize` or a
//! `DELETE` that hangs or fails.
//!
//! `tools/list` answers in pages of three (`nextCursor`).
//!
//! Tools (`tools/call` name → behaviour):
//! * `echo {message}` → the message;
//! * `status {code, times, key, retry_after?}` → HTTP `code` (with `Retry-After`
//!   when given) for the first `times` calls with this `key`, then `"ok after N"`;
//! * `big {size, sse?}` → a text of `size` bytes, as JSON or as one SSE event;
//! * `cut_sse` → SSE headers and a comment, then the stream ends without an answer;
//! * `cut_json` → a JSON answer whose body stops half-way (declared length, then reset);
//! * `stall_sse` → SSE headers, then nothing, ever;
//! * `hang` → no answer at all, not even headers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How `initialize` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitMode {
    Ok,
    /// Never answered.
    Hang,
    /// This HTTP status, no JSON-RPC body.
    Status(u16),
    /// Headers, then the body stops half-way (the connection is cut).
    Cut,
}

/// How `DELETE` (the session close) is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    Ok,
    Hang,
    Status(u16),
}

#[derive(Debug)]
struct Shared {
    init: Mutex<InitMode>,
    delete: Mutex<DeleteMode>,
    status_calls: Mutex<HashMap<String, usize>>,
    sessions: AtomicUsize,
    deletes: AtomicUsize,
    posts: AtomicUsize,
    stop: CancellationToken,
}

/// A running fake server. Stops when dropped.
pub struct FakeMcp {
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeMcp {
    pub async fn start() -> FakeMcp {
        let shared = Arc::new(Shared {
            init: Mutex::new(InitMode::Ok),
            delete: Mutex::new(DeleteMode::Ok),
            status_calls: Mutex::new(HashMap::new()),
            sessions: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            posts: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/mcp", post(on_post).get(on_get).delete(on_delete))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        FakeMcp {
            url: format!("http://{addr}/mcp"),
            addr,
            shared,
        }
    }

    pub fn set_init(&self, mode: InitMode) {
        *self.shared.init.lock().unwrap() = mode;
    }

    pub fn set_delete(&self, mode: DeleteMode) {
        *self.shared.delete.lock().unwrap() = mode;
    }

    /// Calls of the `status` tool seen with `key` (including the failed ones).
    pub fn status_calls(&self, key: &str) -> usize {
        self.shared
            .status_calls
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Sessions initialized so far.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    /// DELETE requests seen.
    pub fn deletes(&self) -> usize {
        self.shared.deletes.load(Ordering::SeqCst)
    }
}

impl Drop for FakeMcp {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn text_result(id: &Value, text: &str) -> Value {
    result(
        id,
        json!({"content": [{"type": "text", "text": text}], "isError": false}),
    )
}

fn json_response(body: &Value, session: Option<&str>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(session) = session {
        response
            .headers_mut()
            .insert("mcp-session-id", session.parse().unwrap());
    }
    response
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap()
}

/// A body that sends `first`, then waits until the server stops.
fn then_pending(first: &'static str, stop: CancellationToken) -> Body {
    let stream = futures::stream::unfold(0u8, move |step| {
        let stop = stop.clone();
        async move {
            if step == 0 {
                return Some((Ok::<_, Infallible>(Bytes::from_static(first.as_bytes())), 1));
            }
            stop.cancelled().await;
            None
        }
    });
    Body::from_stream(stream)
}

/// A body that declares `declared` bytes, sends `part`, then fails (the connection is cut).
fn truncated(part: String, declared: usize) -> Response {
    let stream = futures::stream::iter(vec![
        Ok(Bytes::from(part)),
        Err(std::io::Error::other("cut on purpose")),
    ]);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, declared.to_string())
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn on_get() -> Response {
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

async fn on_delete(State(shared): State<Arc<Shared>>) -> Response {
    shared.deletes.fetch_add(1, Ordering::SeqCst);
    let mode = *shared.delete.lock().unwrap();
    match mode {
        DeleteMode::Ok => StatusCode::OK.into_response(),
        DeleteMode::Hang => {
            shared.stop.cancelled().await;
            StatusCode::OK.into_response()
        }
        DeleteMode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
    }
}

async fn on_post(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.posts.fetch_add(1, Ordering::SeqCst);
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response(); // notification or response
    };
    let method = message["method"].as_str().unwrap_or_default();
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match method {
        "initialize" => {
            let mode = *shared.init.lock().unwrap();
            match mode {
                InitMode::Ok => {
                    let n = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = result(
                        &id,
                        json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "fake-mcp", "version": "0.0.1"}}),
                    );
                    json_response(&body, Some(&format!("fake-session-{n}")))
                }
                InitMode::Hang => {
                    shared.stop.cancelled().await;
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
                InitMode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
                InitMode::Cut => truncated("{\"jsonrpc\": \"2.0\", ".to_owned(), 4096),
            }
        }
        "ping" => json_response(&result(&id, json!({})), session.as_deref()),
        "tools/list" => {
            let tools: Vec<Value> = [
                "echo",
                "status",
                "big",
                "cut_sse",
                "cut_json",
                "stall_sse",
                "hang",
            ]
            .iter()
            .map(|name| json!({"name": name, "inputSchema": {"type": "object"}}))
            .collect();
            // Pages of three, so that clients must follow `nextCursor`.
            let start: usize = message["params"]["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let end = (start + 3).min(tools.len());
            let mut page = json!({ "tools": tools[start.min(end)..end] });
            if end < tools.len() {
                page["nextCursor"] = json!(end.to_string());
            }
            json_response(&result(&id, page), None)
        }
        "tools/call" => call_tool(&shared, &id, &message["params"]).await,
        _ => json_response(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}}),
            None,
        ),
    }
}

async fn call_tool(shared: &Arc<Shared>, id: &Value, params: &Value) -> Response {
    let args = &params["arguments"];
    match params["name"].as_str().unwrap_or_default() {
        "echo" => json_response(
            &text_result(id, args["message"].as_str().unwrap_or_default()),
            None,
        ),
        "status" => {
            let key = args["key"].as_str().unwrap_or("default").to_owned();
            let seen = {
                let mut calls = shared.status_calls.lock().unwrap();
                let seen = calls.entry(key).or_insert(0);
                *seen += 1;
                *seen
            };
            let times = args["times"].as_u64().unwrap_or(1) as usize;
            if seen <= times {
                let code =
                    StatusCode::from_u16(args["code"].as_u64().unwrap_or(503) as u16).unwrap();
                let mut response = (code, "upstream trouble").into_response();
                if let Some(retry_after) = args["retry_after"].as_str() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, retry_after.parse().unwrap());
                }
                return response;
            }
            json_response(&text_result(id, &format!("ok after {}", seen - 1)), None)
        }
        "big" => {
            let size = args["size"].as_u64().unwrap_or(0) as usize;
            let body = text_result(id, &"x".repeat(size));
            if args["sse"].as_bool() == Some(true) {
                sse_response(Body::from(format!("event: message\ndata: {body}\n\n")))
            } else {
                json_response(&body, None)
            }
        }
        "cut_sse" => sse_response(Body::from(": the answer never comes\n\n")),
        "cut_json" => truncated(
            format!("{{\"jsonrpc\": \"2.0\", \"id\": {id}, \"result\": {{\"content\": ["),
            8192,
        ),
        "stall_sse" => sse_response(then_pending(": stalled\n\n", shared.stop.clone())),
        "hang" => {
            shared.stop.cancelled().await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        other => json_response(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("unknown tool {other}")}}),
            None,
        ),
    }
}
