//! One MCP request, raw JSON in and out: the one shape every operation of the
//! runtime (and the gateway) sends.
//!
//! An [`McpRequest`] is any method with its params as a JSON object; it goes to
//! the server as written (rmcp's `CustomRequest`, which serializes exactly the
//! method and params, with rmcp's `_meta` additions merged into `params._meta`).
//! Its answer is an [`McpResult`]: the raw JSON with [`McpResult::into_json`], or
//! a typed view built from it ([`McpResult::typed`]). The typed view takes
//! rmcp's already-decoded value when the transport decoded one, so the common
//! path pays for no JSON round trip.
//!
//! A [`RequestHandle`] travels with the request: the progress callback, a
//! cancellation token (cancelling it cancels exactly this request at the server),
//! and a route for the server's own requests (sampling, elicitation, roots) made
//! while it is in flight.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::model::{
    CallToolResult, ClientRequest, ClientResult, CompleteResult, CustomRequest, GetPromptResult,
    JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, ReadResourceResult, RequestMetaObject, ServerRequest, ServerResult,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::error::Error;
use super::progress::ProgressCallback;

/// Any MCP request: its method and its params as raw JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct McpRequest {
    method: Cow<'static, str>,
    params: Option<JsonObject>,
    /// `params.name` of a `tools/call`, read once (labels, spans and the retry
    /// policy ask for it several times per request).
    tool: Option<Box<str>>,
}

impl McpRequest {
    /// A request of `method` with `params` (sent as written; a `_meta` in them is
    /// kept, and the runtime adds its trace context and progress token to it).
    pub fn new(method: impl Into<Cow<'static, str>>, params: Option<JsonObject>) -> McpRequest {
        let method = method.into();
        let tool = (method == "tools/call")
            .then(|| params.as_ref()?.get("name")?.as_str().map(Box::from))
            .flatten();
        McpRequest {
            method,
            params,
            tool,
        }
    }

    /// The method, e.g. `tools/call`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The params.
    pub fn params(&self) -> Option<&JsonObject> {
        self.params.as_ref()
    }

    /// The tool a `tools/call` calls (`params.name`).
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// The tool's arguments, for a `tools/call` (payload capture).
    pub(crate) fn tool_arguments(&self) -> Option<&JsonObject> {
        self.params.as_ref()?.get("arguments")?.as_object()
    }

    /// The rmcp request to send, with the params' own `_meta` moved out (rmcp
    /// writes `_meta` from its extension; the two are merged, not duplicated).
    pub(crate) fn to_rmcp(&self) -> (ClientRequest, Option<RequestMetaObject>) {
        let mut params = self.params.clone();
        let meta = params
            .as_mut()
            .and_then(|p| p.remove("_meta"))
            .and_then(|m| match m {
                Value::Object(map) => Some(RequestMetaObject::from(map)),
                _ => None,
            });
        let request = CustomRequest::new(self.method.to_string(), params.map(Value::Object));
        (ClientRequest::CustomRequest(request), meta)
    }
}

/// The answer to an [`McpRequest`].
#[derive(Debug, Clone)]
pub struct McpResult(pub(crate) ServerResult);

impl McpResult {
    /// The result as JSON.
    pub fn into_json(self) -> Value {
        match self.0 {
            ServerResult::CustomResult(custom) => custom.0,
            other => serde_json::to_value(other).unwrap_or(Value::Null),
        }
    }

    /// The result as `T`; a `protocol_error` naming `method` when it is not one.
    pub fn typed<T: TypedResult>(self, server: &str, method: &str) -> Result<T, Error> {
        let value = match T::take(self.0) {
            Ok(typed) => return Ok(typed),
            Err(other) => match *other {
                ServerResult::CustomResult(custom) => custom.0,
                other => serde_json::to_value(other).unwrap_or(Value::Null),
            },
        };
        serde_json::from_value(value).map_err(|e| Error::Protocol {
            server: server.to_owned(),
            detail: format!("unexpected answer to {method}: {e}"),
        })
    }

    /// The text of a tool result with `isError: true`; `None` otherwise.
    pub(crate) fn tool_error_text(&self) -> Option<String> {
        let texts = |content: &[Value]| {
            content
                .iter()
                .filter_map(|c| c.get("text")?.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        match &self.0 {
            ServerResult::CallToolResult(result) if result.is_error == Some(true) => Some(
                result
                    .content
                    .iter()
                    .filter_map(|c| c.as_text())
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ServerResult::CustomResult(custom)
                if custom.0.get("isError") == Some(&Value::Bool(true)) =>
            {
                let content = custom.0.get("content").and_then(Value::as_array);
                Some(content.map(|c| texts(c)).unwrap_or_default())
            }
            _ => None,
        }
    }

    /// The JSON of a tool result, for payload capture.
    pub(crate) fn payload(&self) -> Option<Value> {
        match &self.0 {
            ServerResult::CallToolResult(result) => serde_json::to_value(result).ok(),
            ServerResult::CustomResult(custom) => Some(custom.0.clone()),
            _ => None,
        }
    }
}

/// A result type with a typed view: rmcp's decoded variant taken as is, else
/// decoded from the JSON.
pub trait TypedResult: DeserializeOwned {
    /// The typed value, when `result` already is one; else `result` back.
    fn take(result: ServerResult) -> Result<Self, Box<ServerResult>>;
}

macro_rules! typed_result {
    ($($ty:ident),* $(,)?) => {$(
        impl TypedResult for $ty {
            fn take(result: ServerResult) -> Result<Self, Box<ServerResult>> {
                match result {
                    ServerResult::$ty(typed) => Ok(typed),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

typed_result!(
    CallToolResult,
    ListToolsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ReadResourceResult,
    ListPromptsResult,
    GetPromptResult,
    CompleteResult,
);

impl TypedResult for Value {
    fn take(result: ServerResult) -> Result<Self, Box<ServerResult>> {
        Err(Box::new(result))
    }
}

/// Answers a request the server makes while a request of ours is in flight.
pub type ServerRequestRoute = Arc<
    dyn Fn(ServerRequest) -> BoxFuture<'static, Result<ClientResult, rmcp::ErrorData>>
        + Send
        + Sync,
>;

/// What the caller of one request holds while it runs.
#[derive(Clone, Default)]
pub struct RequestHandle {
    /// Receives the request's progress notifications.
    pub(crate) progress: Option<ProgressCallback>,
    /// Cancelled: the request is cancelled at the server and ends `cancelled`.
    pub(crate) cancel: Option<CancellationToken>,
    /// Answers the server's own requests made while this one is in flight (when
    /// it is the only such request on its session; else the server's policy answers).
    pub(crate) server_requests: Option<ServerRequestRoute>,
}

impl std::fmt::Debug for RequestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandle")
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .field("server_requests", &self.server_requests.is_some())
            .finish()
    }
}

impl RequestHandle {
    /// Progress notifications go to `callback`.
    pub fn on_progress(mut self, callback: ProgressCallback) -> RequestHandle {
        self.progress = Some(callback);
        self
    }

    /// Cancelling `token` cancels the request at the server (`cancelled`).
    pub fn cancel_on(mut self, token: CancellationToken) -> RequestHandle {
        self.cancel = Some(token);
        self
    }

    /// The server's own requests made while this one is in flight go to `route`.
    pub fn route_server_requests(mut self, route: ServerRequestRoute) -> RequestHandle {
        self.server_requests = Some(route);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn params_go_out_as_written_with_meta_merged_once() {
        let params = object(json!({"name": "echo", "arguments": {"x": 1}, "_meta": {"k": "v"}}));
        let request = McpRequest::new("tools/call", Some(params));
        assert_eq!(request.tool(), Some("echo"));
        let (rmcp_request, meta) = request.to_rmcp();
        let mut rmcp_request = rmcp_request;
        if let Some(meta) = meta {
            use rmcp::model::GetMeta;
            rmcp_request.get_meta_mut().extend(meta);
        }
        let wire = serde_json::to_value(&rmcp_request).unwrap();
        assert_eq!(
            wire,
            json!({"method": "tools/call", "params": {"name": "echo", "arguments": {"x": 1}, "_meta": {"k": "v"}}})
        );
    }

    #[test]
    fn unknown_fields_survive_a_raw_result() {
        let raw = json!({"content": [], "vendorField": {"kept": true}});
        let result = McpResult(ServerResult::CustomResult(rmcp::model::CustomResult(
            raw.clone(),
        )));
        assert_eq!(result.clone().into_json(), raw);
        let typed: CallToolResult = result.typed("s", "tools/call").unwrap();
        assert!(typed.content.is_empty());
    }

    #[test]
    fn a_wrong_answer_is_a_protocol_error() {
        let result = McpResult(ServerResult::CustomResult(rmcp::model::CustomResult(
            json!(7),
        )));
        let error = result
            .typed::<ListToolsResult>("s", "tools/list")
            .unwrap_err();
        assert_eq!(error.kind(), super::super::error::ErrorKind::ProtocolError);
    }
}
