//! One gateway request, from its JSON-RPC message to its answer: the requests
//! the gateway answers itself (`initialize`, `logging/setLevel`,
//! `server/discover`), and every other one forwarded on the runtime's one
//! request path, with its scope, its progress, its cancellation and the
//! server's requests made while it runs.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::trace::FutureExt as _;
use rmcp::model::{ClientResult, ErrorCode, ErrorData, ServerRequest};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::aggregate::{self, AGGREGATE};
use super::errors::rpc_error;
use super::jsonrpc::{self, INVALID_PARAMS, INVALID_REQUEST, Request, id_key};
use super::outbox::{Outgoing, RequestStreamSlot};
use super::record::Served;
use super::scope::{self, META_RECOVERED, ScopeSources};
use super::sessions::Downstream;
use super::version::{self, SESSION_VERSIONS, STATELESS_VERSION};
use crate::runtime::{CallOptions, Error, McpRequest, Progress, ServerHello, ServerRequestRoute};
use crate::telemetry::semconv;
use crate::telemetry::spans;

/// Who sent a request, and the scope sources outside its body.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The route's server.
    pub(crate) server: Arc<str>,
    /// The downstream session, on the session revisions.
    pub(crate) session: Option<Arc<Downstream>>,
    /// `X-Mcpwatch-Scope`.
    pub(crate) header_scope: Option<String>,
    /// `/scopes/{scope}/...`.
    pub(crate) path_scope: Option<String>,
    /// The client's address, for the span.
    pub(crate) client_address: Option<String>,
}

impl Caller {
    /// The scope of a request with `params`.
    pub(crate) fn scope(&self, params: Option<&Map<String, Value>>) -> Result<Arc<str>, Failure> {
        let meta = scope::meta_scope(params).map_err(Failure::invalid_params)?;
        let sources = ScopeSources {
            header: self.header_scope.as_deref(),
            meta,
            path: self.path_scope.as_deref(),
            session: self.session.as_ref().map(|s| s.id.as_ref()),
        };
        sources
            .resolve()
            .map(Arc::from)
            .map_err(Failure::invalid_params)
    }
}

/// A request that failed: its JSON-RPC error and its `error_type` label.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
    pub(crate) error_type: &'static str,
}

impl Failure {
    pub(crate) fn invalid_params(error: impl std::fmt::Display) -> Failure {
        Failure {
            code: INVALID_PARAMS,
            message: error.to_string(),
            data: None,
            error_type: "invalid_request",
        }
    }

    fn invalid_request(message: impl Into<String>) -> Failure {
        Failure {
            code: INVALID_REQUEST,
            message: message.into(),
            data: None,
            error_type: "invalid_request",
        }
    }

    pub(crate) fn of(error: &Error, server: &str) -> Failure {
        let (code, message, data) = rpc_error(error, server);
        Failure {
            code,
            message,
            data,
            error_type: error.kind().as_str(),
        }
    }
}

/// Serves `request` and returns its answer; messages before the answer
/// (progress, the server's requests) go to `tx`.
pub(crate) async fn serve(
    gateway: &Gateway,
    caller: &Caller,
    request: Request,
    tx: &mpsc::Sender<Outgoing>,
) -> Value {
    let tool = (request.method == "tools/call")
        .then(|| request.params.as_ref()?.get("name")?.as_str())
        .flatten();
    let span = server_span(gateway, caller, &request, tool);
    let context = span.context().cloned().unwrap_or_default();
    let served = Served::start(
        gateway.runtime.metrics(),
        &gateway.histograms,
        [&caller.server, &request.method, tool.unwrap_or_default()],
        span,
    );
    let outcome = dispatch(gateway, caller, &request, tx)
        .with_context(context)
        .await;
    match outcome {
        Ok(mut result) => {
            // No downstream session: a 2026-07-28 request (the session revisions need one).
            if caller.session.is_none() {
                version::complete_stateless_result(&request.method, &mut result);
            }
            served.finish("", "", None);
            jsonrpc::result_answer(&request.id, result)
        }
        Err(failure) => {
            served.finish(failure.error_type, &failure.message, Some(failure.code));
            jsonrpc::error_answer(&request.id, failure.code, &failure.message, failure.data)
        }
    }
}

fn server_span(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tool: Option<&str>,
) -> spans::McpSpan {
    let parent = request
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(spans::context_from_meta);
    spans::gateway_request(
        gateway.runtime.telemetry().tracer(),
        &caller.server,
        &request.method,
        tool,
        parent,
        || {
            let mut attributes = Vec::with_capacity(4);
            if let Some(session) = &caller.session {
                attributes.push(KeyValue::new(
                    semconv::ATTR_SESSION_ID,
                    session.id.to_string(),
                ));
                attributes.push(KeyValue::new(
                    semconv::ATTR_PROTOCOL_VERSION,
                    session.version,
                ));
            }
            if let Some(address) = &caller.client_address {
                attributes.push(KeyValue::new(semconv::ATTR_CLIENT_ADDRESS, address.clone()));
            }
            attributes
        },
    )
}

async fn dispatch(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Value, Failure> {
    match request.method.as_str() {
        "initialize" => Err(Failure::invalid_request(
            "this session is initialized already; send initialize without Mcp-Session-Id",
        )),
        "logging/setLevel" => set_level(caller, request.params.as_ref()),
        "server/discover" => {
            let scope = caller.scope(request.params.as_ref())?;
            let hello = hello(gateway, caller, &scope).await?;
            Ok(discover_result(&caller.server, &hello))
        }
        _ if caller.server.as_ref() == AGGREGATE => {
            aggregate::dispatch(gateway, caller, request, tx).await
        }
        _ => forward(gateway, caller, request, tx).await,
    }
}

/// `logging/setLevel`: this downstream session's log forwarding only.
fn set_level(caller: &Caller, params: Option<&Map<String, Value>>) -> Result<Value, Failure> {
    let level = params.and_then(|p| p.get("level")).and_then(Value::as_str);
    let Some(level) = level else {
        return Err(Failure::invalid_params(
            "logging/setLevel needs params.level",
        ));
    };
    if let Some(session) = &caller.session
        && !session.set_log_level(level)
    {
        return Err(Failure::invalid_params(format!(
            "unknown log level {level:?}"
        )));
    }
    Ok(json!({}))
}

/// The server's last hello, opening the scope's session when it was never reached.
pub(crate) async fn hello(
    gateway: &Gateway,
    caller: &Caller,
    scope: &str,
) -> Result<Arc<ServerHello>, Failure> {
    if caller.server.as_ref() == AGGREGATE {
        return Ok(Arc::new(aggregate::hello(gateway, scope)));
    }
    gateway
        .runtime
        .hello(&caller.server, scope)
        .await
        .map_err(|e| Failure::of(&e, &caller.server))
}

/// The `initialize` answer: the upstream's capabilities and instructions, the
/// version negotiated with the client, and the gateway as the server.
pub(crate) fn initialize_result(server: &str, version: &str, hello: &ServerHello) -> Value {
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(hello),
        "serverInfo": server_info(server),
    });
    if let Some(instructions) = &hello.instructions {
        result["instructions"] = json!(instructions);
    }
    result
}

/// The `server/discover` answer (2026-07-28).
fn discover_result(server: &str, hello: &ServerHello) -> Value {
    let mut versions: Vec<&str> = SESSION_VERSIONS.to_vec();
    versions.push(STATELESS_VERSION);
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": capabilities(hello),
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {"io.modelcontextprotocol/serverInfo": server_info(server)},
    });
    if let Some(instructions) = &hello.instructions {
        result["instructions"] = json!(instructions);
    }
    result
}

/// The upstream's capabilities, plus `logging` (the gateway answers
/// `logging/setLevel` itself, per downstream session).
fn capabilities(hello: &ServerHello) -> Value {
    let mut capabilities = hello.capabilities.clone();
    if let Value::Object(map) = &mut capabilities {
        map.entry("logging").or_insert_with(|| json!({}));
    }
    capabilities
}

fn server_info(server: &str) -> Value {
    let name = match server {
        AGGREGATE => "mcpwatch".to_owned(),
        server => format!("mcpwatch/{server}"),
    };
    json!({"name": name, "version": env!("CARGO_PKG_VERSION")})
}

/// Forwards `request` on the scope's pooled session.
async fn forward(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Value, Failure> {
    let (hold, params) = Forwarding::begin(caller, request, tx)?;
    hold.send(gateway, caller, &caller.server, &request.method, params, tx)
        .await
}

/// A downstream request being forwarded: its scope, its cancel token
/// (registered under its id, for `notifications/cancelled`), its stream
/// (registered for the session's messages) and the client's progress token.
pub(crate) struct Forwarding {
    pub(crate) scope: Arc<str>,
    cancel: CancellationToken,
    progress_token: Option<Value>,
    _in_flight: Option<InFlight>,
    _stream: Option<RequestStreamSlot>,
}

impl Forwarding {
    /// Registers `request`; returns its params as they go upstream.
    pub(crate) fn begin(
        caller: &Caller,
        request: &Request,
        tx: &mpsc::Sender<Outgoing>,
    ) -> Result<(Forwarding, Option<Map<String, Value>>), Failure> {
        let scope = caller.scope(request.params.as_ref())?;
        let mut params = request.params.clone();
        let progress_token = scope::prepare_meta(&mut params);
        let cancel = CancellationToken::new();
        let in_flight = match &caller.session {
            Some(session) => Some(InFlight::register(session, &request.id, &cancel)?),
            None => None,
        };
        let stream = caller
            .session
            .as_ref()
            .map(|session| RequestStreamSlot::register(session, tx.clone()));
        let hold = Forwarding {
            scope,
            cancel,
            progress_token,
            _in_flight: in_flight,
            _stream: stream,
        };
        Ok((hold, params))
    }

    /// Sends `method` with `params` to `server` in the request's scope.
    pub(crate) async fn send(
        &self,
        gateway: &Gateway,
        caller: &Caller,
        server: &Arc<str>,
        method: &str,
        params: Option<Map<String, Value>>,
        tx: &mpsc::Sender<Outgoing>,
    ) -> Result<Value, Failure> {
        if let Some(session) = &caller.session {
            gateway.sessions.bind(session, server, &self.scope);
        }
        let mut options = CallOptions::scope(self.scope.to_string()).cancel_on(self.cancel.clone());
        if let Some(token) = &self.progress_token {
            options = options.on_progress(progress_forwarder(token.clone(), tx.clone()));
        }
        if let Some(session) = caller.session.as_ref().filter(|s| s.caps.any()) {
            options = options.route_server_requests(client_route(gateway, session, tx));
        }
        let upstream = McpRequest::new(method.to_owned(), params);
        let (result, used) = gateway
            .runtime
            .request_with_use(server, &upstream, &options)
            .await
            .map_err(|e| Failure::of(&e, server))?;
        let mut result = result.into_json();
        if used.recovered {
            mark_recovered(&mut result);
        }
        Ok(result)
    }
}

/// `_meta["mcpwatch/session_recovered"] = true`: the server's state was lost.
fn mark_recovered(result: &mut Value) {
    let Value::Object(map) = result else { return };
    let meta = map
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(META_RECOVERED.to_owned(), Value::Bool(true));
    }
}

/// A request registered in its session until dropped, so that
/// `notifications/cancelled` can name it.
struct InFlight {
    session: Arc<Downstream>,
    key: String,
}

impl InFlight {
    fn register(
        session: &Arc<Downstream>,
        id: &Value,
        cancel: &CancellationToken,
    ) -> Result<InFlight, Failure> {
        let key = id_key(id);
        if !session.start_request(&key, cancel) {
            return Err(Failure::invalid_request(format!(
                "request id {id} is already in flight in this session"
            )));
        }
        Ok(InFlight {
            session: session.clone(),
            key,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.session.end_request(&self.key);
    }
}

/// Sends each progress notification to the client under its own token.
fn progress_forwarder(token: Value, tx: mpsc::Sender<Outgoing>) -> impl Fn(Progress) + Send + Sync {
    move |progress: Progress| {
        let mut params = json!({"progressToken": token, "progress": progress.progress});
        if let Some(total) = progress.total {
            params["total"] = json!(total);
        }
        if let Some(message) = &progress.message {
            params["message"] = json!(message);
        }
        let note = jsonrpc::notification("notifications/progress", params);
        // The callback runs on the session's receive loop: never wait here.
        let _ = tx.try_send(Outgoing::Note(note));
    }
}

/// Routes the server's requests to this client, on this request's stream.
fn client_route(
    gateway: &Gateway,
    session: &Arc<Downstream>,
    tx: &mpsc::Sender<Outgoing>,
) -> ServerRequestRoute {
    let session = session.clone();
    let tx = tx.clone();
    let ids = gateway.server_request_ids.clone();
    Arc::new(move |request: ServerRequest| {
        let id = format!(
            "mcpwatch-{}",
            ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (session, tx) = (session.clone(), tx.clone());
        Box::pin(async move { ask_client(&session, &tx, id, request).await })
    })
}

/// Asks the client, and waits for its answer (the call's deadline bounds it).
async fn ask_client(
    session: &Arc<Downstream>,
    tx: &mpsc::Sender<Outgoing>,
    id: String,
    request: ServerRequest,
) -> Result<ClientResult, ErrorData> {
    let (method, capable) = match &request {
        ServerRequest::CreateMessageRequest(_) => ("sampling/createMessage", session.caps.sampling),
        ServerRequest::ElicitRequest(_) => ("elicitation/create", session.caps.elicitation),
        ServerRequest::ListRootsRequest(_) => ("roots/list", session.caps.roots),
        _ => ("", false),
    };
    if !capable {
        return Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("the gateway's client does not handle {method:?}"),
            None,
        ));
    }
    let mut message = serde_json::to_value(&request)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    message["jsonrpc"] = json!("2.0");
    message["id"] = json!(id);
    let key = id_key(&json!(id));
    let answer = session.expect_answer(key.clone());
    let _forget = ForgetAnswer { session, key };
    tx.send(Outgoing::Note(message))
        .await
        .map_err(|_| ErrorData::internal_error("the client's stream closed", None))?;
    let body = answer
        .await
        .map_err(|_| ErrorData::internal_error("the client went away before answering", None))?;
    client_answer(method, body)
}

/// Forgets an awaited answer when the wait ends (answered, or abandoned).
struct ForgetAnswer<'a> {
    session: &'a Downstream,
    key: String,
}

impl Drop for ForgetAnswer<'_> {
    fn drop(&mut self) {
        self.session.forget_answer(&self.key);
    }
}

/// The client's JSON-RPC answer as rmcp's typed result (or its error).
fn client_answer(method: &str, body: Value) -> Result<ClientResult, ErrorData> {
    if let Some(error) = body.get("error") {
        return Err(serde_json::from_value(error.clone()).unwrap_or_else(|_| {
            ErrorData::internal_error(
                format!("the client answered {method} with a malformed error"),
                None,
            )
        }));
    }
    let result = body.get("result").cloned().unwrap_or(Value::Null);
    let malformed = |e: serde_json::Error| {
        ErrorData::invalid_params(
            format!("the client's answer to {method} is malformed: {e}"),
            None,
        )
    };
    Ok(match method {
        "sampling/createMessage" => ClientResult::CreateMessageResult(Box::new(
            serde_json::from_value(result).map_err(malformed)?,
        )),
        "elicitation/create" => {
            ClientResult::ElicitResult(serde_json::from_value(result).map_err(malformed)?)
        }
        _ => ClientResult::ListRootsResult(serde_json::from_value(result).map_err(malformed)?),
    })
}
