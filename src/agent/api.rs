//! The `/v1` API (DESIGN §6).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::JsonBody;
use super::error::ApiError;
use super::idempotency::Answer;
use super::openapi;
use super::state::{AgentState, CallTicket};
use crate::runtime::{CallOptions, Runtime, validate_scope};

/// The header that may carry the scope (so a load balancer can route by it).
pub(crate) const SCOPE_HEADER: &str = "x-mcpwatch-scope";
/// The header that makes a retried call join the first one.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest accepted per-call timeout.
const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;

/// The `/v1` routes.
pub(crate) fn router() -> Router<AgentState> {
    Router::new()
        .route("/v1/tools/call", post(call_tool))
        .route("/v1/servers", get(servers))
        .route("/v1/servers/{server}/tools", get(list_tools))
        .route("/v1/servers/{server}/resources", get(list_resources))
        .route("/v1/servers/{server}/prompts", get(list_prompts))
        .route("/v1/resources/read", post(read_resource))
        .route("/v1/prompts/get", post(get_prompt))
        .route("/v1/sessions", get(sessions))
        .route("/v1/scopes/{scope}", delete(close_scope))
        .route("/v1/sessions/{server}/{scope}", delete(close_session))
        .route("/v1/openapi.json", get(openapi_document))
}

/// `POST /v1/tools/call` body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallBody {
    /// Server name.
    pub server: String,
    /// Tool name.
    pub tool: String,
    /// Tool arguments (a JSON object).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// Scope; must agree with the `X-Mcpwatch-Scope` header when both are sent.
    #[serde(default)]
    pub scope: Option<String>,
    /// Deadline in milliseconds (default: the server's `call_timeout`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

async fn call_tool(
    State(state): State<AgentState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CallBody>,
) -> Response {
    let ticket = match state.admit().await {
        Ok(ticket) => ticket,
        Err(error) => return error.into_response(),
    };
    let scope = match scope_of(body.scope.as_deref(), &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    let timeout = match body.timeout_ms {
        Some(0) => return ApiError::invalid("timeout_ms must be at least 1").into_response(),
        Some(ms) if ms > MAX_TIMEOUT_MS => {
            return ApiError::invalid(format!("timeout_ms must be at most {MAX_TIMEOUT_MS}"))
                .into_response();
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let options = CallOptions {
        scope,
        timeout,
        ..CallOptions::default()
    };
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    match key {
        None => answer_response(boxed_call(state.runtime.clone(), body, options).await),
        Some(Err(_)) => ApiError::invalid("Idempotency-Key must be visible ASCII").into_response(),
        Some(Ok(key)) => idempotent_call(&state, &key, ticket, body, options).await,
    }
}

/// A call with an `Idempotency-Key`: run once per key by the store, in a task
/// that holds the admission slot until the call ends (also when the caller
/// hangs up), so calls in flight stay within `agent.max_in_flight`.
async fn idempotent_call(
    state: &AgentState,
    key: &str,
    ticket: CallTicket,
    body: CallBody,
    options: CallOptions,
) -> Response {
    // The same key must come with the same request (scope and timeout included).
    let fingerprint = (
        serde_json::to_string(&body).unwrap_or_default(),
        options.scope.clone(),
        options.timeout,
    );
    let call = boxed_call(state.runtime.clone(), body, options);
    let call = async move {
        let answer = call.await;
        drop(ticket);
        answer
    };
    match state.idempotency.run(key, &fingerprint, call).await {
        Ok(answer) => answer_response(answer),
        Err(error) => error.into_response(),
    }
}

/// A successful call's answer, serialized straight from the result (no
/// intermediate JSON tree on the hot path).
#[derive(Serialize)]
struct CallAnswer<'a> {
    result: &'a rmcp::model::CallToolResult,
    session: SessionAnswer,
    duration_ms: f64,
}

#[derive(Serialize)]
struct SessionAnswer {
    reused: bool,
    age_ms: u64,
}

/// [`run_call`], built straight into its heap box.
///
/// The runtime's call future is large (about 24 KB in a release build). Held
/// inline, it made the handler's future that large, and axum moves the handler's
/// future into a `Box` on every request: a 24 KB `memcpy` per call, a third of
/// the agent's own instructions. `Box::write` into a fresh `Box::new_uninit` lets
/// the compiler build the future in place, and the handler's future stays small.
fn boxed_call(
    runtime: Runtime,
    body: CallBody,
    options: CallOptions,
) -> Pin<Box<impl Future<Output = Answer> + Send + 'static>> {
    Box::into_pin(Box::write(
        Box::new_uninit(),
        run_call(runtime, body, options),
    ))
}

async fn run_call(runtime: Runtime, body: CallBody, options: CallOptions) -> Answer {
    match runtime
        .call_tool(&body.server, &body.tool, body.arguments, options)
        .await
    {
        Ok(call) => {
            let answer = CallAnswer {
                result: &call.result,
                session: SessionAnswer {
                    reused: call.reused,
                    age_ms: call.session_age.as_millis() as u64,
                },
                duration_ms: call.duration.as_secs_f64() * 1000.0,
            };
            // Most answers are small: one allocation, no regrowth.
            let mut bytes = Vec::with_capacity(256);
            match serde_json::to_writer(&mut bytes, &answer) {
                Ok(()) => Answer::result(bytes),
                Err(error) => Answer::from(ApiError::new(
                    crate::runtime::ErrorKind::ProtocolError,
                    format!("cannot encode the tool result: {error}"),
                )),
            }
        }
        Err(error) => Answer::from(ApiError::from(error)),
    }
}

fn answer_response(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response();
    if let Some(value) = answer
        .retry_after
        .and_then(|r| axum::http::HeaderValue::from_str(&r).ok())
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// The scope from the body and `X-Mcpwatch-Scope`, which must agree when both
/// are sent (DESIGN §10), else none (`default`). A named scope is checked here:
/// the gateway's session scopes (`~s:...`) are not for `/v1` callers.
fn scope_of(body: Option<&str>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let header = match headers.get(SCOPE_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("X-Mcpwatch-Scope must be visible ASCII"))?,
        ),
    };
    let scope = match (body, header) {
        (Some(body), Some(header)) if body != header => {
            return Err(ApiError::invalid(format!(
                "the body's scope {body:?} and the X-Mcpwatch-Scope header {header:?} disagree"
            )));
        }
        (Some(scope), _) | (None, Some(scope)) => scope,
        (None, None) => return Ok(None),
    };
    validate_scope(Some(scope)).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Some(scope.to_owned()))
}

async fn servers(State(state): State<AgentState>) -> Response {
    axum::Json(json!({"servers": state.runtime.servers()})).into_response()
}

async fn list_tools(
    State(state): State<AgentState>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let scope = match scope_of(None, &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    match state.runtime.list_tools(&server, scope.as_deref()).await {
        Ok(tools) => axum::Json(json!({"tools": tools})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn list_resources(
    State(state): State<AgentState>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let scope = match scope_of(None, &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    let runtime = &state.runtime;
    let resources = match runtime.list_resources(&server, scope.as_deref()).await {
        Ok(resources) => resources,
        Err(error) => return ApiError::from(error).into_response(),
    };
    match runtime
        .list_resource_templates(&server, scope.as_deref())
        .await
    {
        Ok(templates) => {
            axum::Json(json!({"resources": resources, "resource_templates": templates}))
                .into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn list_prompts(
    State(state): State<AgentState>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let scope = match scope_of(None, &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    match state.runtime.list_prompts(&server, scope.as_deref()).await {
        Ok(prompts) => axum::Json(json!({"prompts": prompts})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /v1/resources/read` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadBody {
    /// Server name.
    pub server: String,
    /// The resource's URI.
    pub uri: String,
    /// Scope; must agree with the `X-Mcpwatch-Scope` header when both are sent.
    #[serde(default)]
    pub scope: Option<String>,
}

async fn read_resource(
    State(state): State<AgentState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ReadBody>,
) -> Response {
    let _ticket = match state.admit().await {
        Ok(ticket) => ticket,
        Err(error) => return error.into_response(),
    };
    let scope = match scope_of(body.scope.as_deref(), &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    match state
        .runtime
        .read_resource(&body.server, &body.uri, scope.as_deref())
        .await
    {
        Ok(result) => axum::Json(json!({"result": result})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /v1/prompts/get` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromptBody {
    /// Server name.
    pub server: String,
    /// Prompt name.
    pub name: String,
    /// Prompt arguments (a JSON object of strings).
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Scope; must agree with the `X-Mcpwatch-Scope` header when both are sent.
    #[serde(default)]
    pub scope: Option<String>,
}

async fn get_prompt(
    State(state): State<AgentState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PromptBody>,
) -> Response {
    let _ticket = match state.admit().await {
        Ok(ticket) => ticket,
        Err(error) => return error.into_response(),
    };
    let scope = match scope_of(body.scope.as_deref(), &headers) {
        Ok(scope) => scope,
        Err(error) => return error.into_response(),
    };
    match state
        .runtime
        .get_prompt(&body.server, &body.name, body.arguments, scope.as_deref())
        .await
    {
        Ok(result) => axum::Json(json!({"result": result})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn sessions(State(state): State<AgentState>) -> Response {
    axum::Json(json!({"sessions": state.runtime.sessions()})).into_response()
}

async fn close_scope(State(state): State<AgentState>, Path(scope): Path<String>) -> Response {
    match state.runtime.close_scope(&scope).await {
        Ok(closed) => axum::Json(json!({"closed": closed})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn close_session(
    State(state): State<AgentState>,
    Path((server, scope)): Path<(String, String)>,
) -> Response {
    match state.runtime.close_session(&server, &scope).await {
        Ok(closed) => axum::Json(json!({"closed": closed})).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn openapi_document() -> Response {
    axum::Json(openapi::document()).into_response()
}

/// Fallback for unknown paths: a JSON 404 in the API's error shape.
pub(crate) async fn not_found() -> Response {
    ApiError::invalid("no such route; see GET /v1/openapi.json")
        .into_response_with(StatusCode::NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The runtime's call future is boxed where it is made ([`boxed_call`]):
    /// inline, it made the handler's future (which axum boxes, so moves, on
    /// every request) about 24 KB.
    #[tokio::test]
    async fn the_call_handler_future_stays_small() {
        let config = Config::demo();
        let runtime = Runtime::start(config.clone()).await.unwrap();
        let state = AgentState::new(runtime.clone(), &config.agent);
        let body = CallBody {
            server: "demo".to_owned(),
            tool: "echo".to_owned(),
            arguments: None,
            scope: None,
            timeout_ms: None,
        };
        let future = call_tool(State(state), HeaderMap::new(), JsonBody(body));
        let size = std::mem::size_of_val(&future);
        eprintln!("call_tool future: {size} bytes");
        assert!(size < 4096, "the call_tool handler future is {size} bytes");
        drop(future);
        runtime.shutdown(Duration::from_secs(5)).await;
    }
}
