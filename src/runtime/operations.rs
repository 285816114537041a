//! Every MCP operation, each written once. [`Runtime`](super::Runtime) (pooled
//! sessions), [`SessionLease`](super::SessionLease) and
//! [`OwnedSession`](super::OwnedSession) only say where a request goes (a
//! [`Target`]) and delegate here; every function builds one [`McpRequest`],
//! sends it through the one request path, and builds the typed view from the
//! raw answer.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CompleteResult, ErrorCode, GetPromptResult, JsonObject, Prompt,
    ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::call::{self, SessionUse};
use super::deadline::Deadline;
use super::error::{Error, Result};
use super::handler::health_request;
use super::pool::Pool;
use super::request::{McpRequest, McpResult, RequestHandle, TypedResult};
use super::server::ServerEntry;
use super::session::Session;

/// Most pages a list follows before giving up on a server's cursor.
const MAX_LIST_PAGES: usize = 100;

/// Where a request goes.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The pooled session of `(entry, scope)`, with the breaker, retries and recovery.
    Pooled {
        pool: &'a Arc<Pool>,
        entry: &'a Arc<ServerEntry>,
        scope: &'a str,
    },
    /// Exactly this session (a lease or an owned session): no re-open, no retry.
    Session {
        pool: &'a Arc<Pool>,
        session: &'a Arc<Session>,
    },
}

/// A finished tool call: the tool's result and how the session was used.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The MCP `CallToolResult` (check [`ToolCall::is_error`]).
    pub result: CallToolResult,
    /// True if the session existed and had served calls before this one.
    pub reused: bool,
    /// Age of the session that served the call.
    pub session_age: Duration,
    /// Wall time of the whole call, retries included.
    pub duration: Duration,
}

impl ToolCall {
    /// True if the tool reported failure (`isError: true`): a `tool_error`.
    pub fn is_error(&self) -> bool {
        self.result.is_error == Some(true)
    }
}

impl Target<'_> {
    fn entry(&self) -> &Arc<ServerEntry> {
        match self {
            Target::Pooled { entry, .. } => entry,
            Target::Session { session, .. } => &session.server,
        }
    }

    /// Sends `request` within `timeout` (the server's `call_timeout` when `None`).
    pub(crate) async fn request(
        self,
        request: &McpRequest,
        timeout: Option<Duration>,
        handle: &RequestHandle,
    ) -> Result<(McpResult, SessionUse)> {
        let deadline = Deadline::after(timeout.unwrap_or(self.entry().spec.call_timeout));
        match self {
            Target::Pooled { pool, entry, scope } => {
                call::pooled(pool, entry, scope, request, deadline, handle).await
            }
            Target::Session { pool, session } => {
                let session_use = SessionUse::of(session);
                let result = call::send(pool, session, request, deadline, handle).await?;
                Ok((result, session_use))
            }
        }
    }

    /// Sends `request` under `call_timeout` and takes its typed view.
    async fn typed<T: TypedResult>(self, request: McpRequest) -> Result<T> {
        let (result, _) = self
            .request(&request, None, &RequestHandle::default())
            .await?;
        result.typed(&self.entry().name, request.method())
    }
}

/// Calls `tool` with `arguments` (a JSON object, or `None`).
pub(crate) async fn call_tool(
    target: Target<'_>,
    tool: &str,
    arguments: Option<Value>,
    timeout: Option<Duration>,
    handle: &RequestHandle,
) -> Result<ToolCall> {
    let started = Instant::now();
    let mut params = JsonObject::new();
    params.insert("name".to_owned(), Value::String(tool.to_owned()));
    if let Some(arguments) = tool_arguments(arguments)? {
        params.insert("arguments".to_owned(), Value::Object(arguments));
    }
    let request = McpRequest::new("tools/call", Some(params));
    let (result, session_use) = target.request(&request, timeout, handle).await?;
    Ok(ToolCall {
        result: result.typed(&target.entry().name, "tools/call")?,
        reused: session_use.reused,
        session_age: session_use.age,
        duration: started.elapsed(),
    })
}

/// Every tool (all pages).
pub(crate) async fn list_tools(target: Target<'_>) -> Result<Vec<Tool>> {
    list_all(target, "tools/list", "tools").await
}

/// Every resource (all pages); a server without resources has none.
pub(crate) async fn list_resources(target: Target<'_>) -> Result<Vec<Resource>> {
    none_when_unsupported(list_all(target, "resources/list", "resources").await)
}

/// Every resource template (all pages); a server without resources has none.
pub(crate) async fn list_resource_templates(target: Target<'_>) -> Result<Vec<ResourceTemplate>> {
    let listed = list_all(target, "resources/templates/list", "resourceTemplates").await;
    none_when_unsupported(listed)
}

/// Every prompt (all pages); a server without prompts has none.
pub(crate) async fn list_prompts(target: Target<'_>) -> Result<Vec<Prompt>> {
    none_when_unsupported(list_all(target, "prompts/list", "prompts").await)
}

/// Reads the resource at `uri`.
pub(crate) async fn read_resource(target: Target<'_>, uri: &str) -> Result<ReadResourceResult> {
    target
        .typed(McpRequest::new(
            "resources/read",
            params(json!({"uri": uri})),
        ))
        .await
}

/// Gets the prompt `name` with `arguments` (a JSON object of strings, or `None`).
pub(crate) async fn get_prompt(
    target: Target<'_>,
    name: &str,
    arguments: Option<Value>,
) -> Result<GetPromptResult> {
    let mut params = JsonObject::new();
    params.insert("name".to_owned(), Value::String(name.to_owned()));
    if let Some(arguments) = prompt_arguments(arguments)? {
        params.insert("arguments".to_owned(), Value::Object(arguments));
    }
    target
        .typed(McpRequest::new("prompts/get", Some(params)))
        .await
}

/// Completion of an argument (`completion/complete`): `reference` is a
/// `ref/prompt` or `ref/resource` object, `argument` is `{name, value}`.
pub(crate) async fn complete(
    target: Target<'_>,
    reference: Value,
    argument: Value,
) -> Result<CompleteResult> {
    let params = params(json!({"ref": reference, "argument": argument}));
    target
        .typed(McpRequest::new("completion/complete", params))
        .await
}

/// Subscribes to updates of the resource at `uri`.
pub(crate) async fn subscribe(target: Target<'_>, uri: &str) -> Result<()> {
    let request = McpRequest::new("resources/subscribe", params(json!({"uri": uri})));
    target.typed::<Value>(request).await.map(drop)
}

/// Ends a subscription to the resource at `uri`.
pub(crate) async fn unsubscribe(target: Target<'_>, uri: &str) -> Result<()> {
    let request = McpRequest::new("resources/unsubscribe", params(json!({"uri": uri})));
    target.typed::<Value>(request).await.map(drop)
}

/// Sets the level of the log messages the server sends.
pub(crate) async fn set_logging_level(target: Target<'_>, level: &str) -> Result<()> {
    let request = McpRequest::new("logging/setLevel", params(json!({"level": level})));
    target.typed::<Value>(request).await.map(drop)
}

/// Checks the session answers (`ping`, or `server/discover` on a 2026-07-28
/// server); returns the round-trip time.
pub(crate) async fn ping(target: Target<'_>) -> Result<Duration> {
    let started = Instant::now();
    target
        .typed::<Value>(health_request(&target.entry().spec))
        .await?;
    Ok(started.elapsed())
}

/// Follows a list's pages, collecting each page's `key` array.
async fn list_all<T: DeserializeOwned>(
    target: Target<'_>,
    method: &'static str,
    key: &'static str,
) -> Result<Vec<T>> {
    let server = &target.entry().name;
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_LIST_PAGES {
        let params = cursor.take().map(|c| json!({"cursor": c}));
        let page: Value = target
            .typed(McpRequest::new(method, params.and_then(object)))
            .await?;
        let found = page.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
        let found: Vec<T> = serde_json::from_value(found).map_err(|e| Error::Protocol {
            server: server.to_string(),
            detail: format!("unexpected answer to {method}: {e}"),
        })?;
        items.extend(found);
        match page.get("nextCursor") {
            Some(next @ Value::String(_)) => cursor = Some(next.clone()),
            _ => return Ok(items),
        }
    }
    Err(Error::Protocol {
        server: server.to_string(),
        detail: format!("more than {MAX_LIST_PAGES} pages answering {method}"),
    })
}

fn params(value: Value) -> Option<JsonObject> {
    object(value)
}

fn object(value: Value) -> Option<JsonObject> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Tool arguments: a JSON object, or nothing.
fn tool_arguments(arguments: Option<Value>) -> Result<Option<JsonObject>> {
    match arguments {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(Error::InvalidRequest {
            message: format!(
                "tool arguments must be a JSON object, not {}",
                json_type(&other)
            ),
        }),
    }
}

/// Prompt arguments: a JSON object of strings, or nothing.
fn prompt_arguments(arguments: Option<Value>) -> Result<Option<JsonObject>> {
    let arguments = match arguments {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(Error::InvalidRequest {
                message: format!(
                    "prompt arguments must be a JSON object of strings, not {}",
                    json_type(&other)
                ),
            });
        }
    };
    if let Some((name, value)) = arguments.iter().find(|(_, value)| !value.is_string()) {
        return Err(Error::InvalidRequest {
            message: format!(
                "prompt argument `{name}` must be a string, not {}",
                json_type(value)
            ),
        });
    }
    Ok(Some(arguments))
}

/// A server that does not implement a list method has nothing to list.
fn none_when_unsupported<T>(listed: Result<Vec<T>>) -> Result<Vec<T>> {
    match listed {
        Err(Error::Rpc { code, .. }) if code == ErrorCode::METHOD_NOT_FOUND.0 => Ok(Vec::new()),
        other => other,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_checks_say_what_was_given() {
        let message = |e: Error| e.to_string();
        assert_eq!(
            message(tool_arguments(Some(json!([1]))).unwrap_err()),
            "invalid request: tool arguments must be a JSON object, not an array"
        );
        assert_eq!(
            message(prompt_arguments(Some(json!("x"))).unwrap_err()),
            "invalid request: prompt arguments must be a JSON object of strings, not a string"
        );
        assert_eq!(
            message(prompt_arguments(Some(json!({"n": 1}))).unwrap_err()),
            "invalid request: prompt argument `n` must be a string, not a number"
        );
        assert!(tool_arguments(Some(Value::Null)).unwrap().is_none());
        assert!(
            prompt_arguments(Some(json!({"city": "Paris"})))
                .unwrap()
                .is_some()
        );
    }
}
