//! The gateway's HTTP handlers: `POST`, `GET` and `DELETE` on
//! `/mcp/{server}` and `/scopes/{scope}/mcp/{server}`.
//!
//! HTTP-level answers (DESIGN §10): 401 without the token (the agent's
//! middleware), 404 for an unknown server or an unknown, invalid or ended
//! `Mcp-Session-Id`, 400 for a malformed body or a request that needs a
//! session, 413 past the body limit, 403 for a refused `Origin` or `Host`,
//! 503 past `gateway.max_sessions` or while draining. Their bodies are
//! JSON-RPC errors with id `null`.

// Handlers refuse with a whole `Response` (`Result<_, Response>`, as axum
// handlers do); it is built once per refused request, off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Gateway;
use super::aggregate::AGGREGATE;
use super::answer;
use super::forward::{self, Caller, Failure};
use super::jsonrpc::{self, Body, Message, Refused, id_key};
use super::outbox::{Outgoing, STREAM_CAPACITY};
use super::record::Served;
use super::scope::ScopeSources;
use super::session_id::{ClientCaps, SessionClaims};
use super::sessions::{EndReason, Unavailable};
use super::version::{self, BATCH_VERSION, MAX_BATCH, META_PROTOCOL_VERSION, STATELESS_VERSION};
use crate::agent::api::SCOPE_HEADER;
use crate::agent::state::AgentState;

/// The downstream session header.
const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header (after `initialize`, and on 2026-07-28).
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The gateway's routes.
pub(crate) fn router() -> Router<AgentState> {
    Router::new()
        .route(
            "/mcp",
            post(post_message).get(get_stream).delete(delete_session),
        )
        .route(
            "/scopes/{scope}/mcp",
            post(post_message).get(get_stream).delete(delete_session),
        )
        .route(
            "/mcp/{server}",
            post(post_message).get(get_stream).delete(delete_session),
        )
        .route(
            "/scopes/{scope}/mcp/{server}",
            post(post_message).get(get_stream).delete(delete_session),
        )
}

/// An HTTP-level refusal with a JSON-RPC error body.
fn refuse(status: StatusCode, code: i32, message: &str) -> Response {
    answer::json(
        status,
        &jsonrpc::error_answer(&Value::Null, code, message, None),
    )
}

/// The route's gateway, server and path scope, checked (404, 403).
struct Route {
    gateway: Arc<Gateway>,
    server: Arc<str>,
    path_scope: Option<String>,
}

fn route(
    state: &AgentState,
    params: &HashMap<String, String>,
    parts: &Parts,
) -> Result<Route, Response> {
    let Some(gateway) = state.gateway.clone() else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::INVALID_REQUEST,
            "gateway mode is off (gateway.enabled)",
        ));
    };
    // No server in the path: the aggregate endpoint.
    let server = params.get("server").map_or(AGGREGATE, String::as_str);
    if server != AGGREGATE && !gateway.runtime.config().servers.contains_key(server) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::INVALID_REQUEST,
            &format!("unknown server {server:?}"),
        ));
    }
    super::origin::check(&gateway.config, gateway.listen, &parts.headers, &parts.uri)
        .map_err(|reason| refuse(StatusCode::FORBIDDEN, jsonrpc::INVALID_REQUEST, &reason))?;
    Ok(Route {
        server: Arc::from(server),
        path_scope: params.get("scope").cloned(),
        gateway,
    })
}

/// The route of a bodiless request (`GET`, `DELETE`), and its head.
fn route_of(
    state: &AgentState,
    params: &HashMap<String, String>,
    request: Request,
) -> Result<(Route, Parts), Response> {
    let (parts, _) = request.into_parts();
    Ok((route(state, params, &parts)?, parts))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The downstream session named by `Mcp-Session-Id`, if the header is sent.
fn session(
    route: &Route,
    headers: &HeaderMap,
) -> Result<Option<Arc<super::sessions::Downstream>>, Response> {
    let Some(id) = header(headers, SESSION_HEADER) else {
        return Ok(None);
    };
    // An open session's id was verified when it was created here.
    if let Some(session) = route.gateway.sessions.get(id)
        && session.server == route.server
    {
        return Ok(Some(session));
    }
    let gone = || {
        refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::INVALID_REQUEST,
            "unknown or ended session; initialize a new one",
        )
    };
    let claims = route
        .gateway
        .key
        .verify(&route.server, id)
        .ok_or_else(gone)?;
    match route
        .gateway
        .sessions
        .get_or_create(id, &route.server, claims.version, claims.caps)
    {
        Ok(session) => Ok(Some(session)),
        Err(Unavailable::Ended) => Err(gone()),
        Err(Unavailable::Full) => Err(full()),
    }
}

fn full() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        jsonrpc::INVALID_REQUEST,
        "gateway.max_sessions downstream sessions are open",
    )
}

fn caller(
    route: &Route,
    parts: &Parts,
    session: Option<Arc<super::sessions::Downstream>>,
) -> Caller {
    Caller {
        server: route.server.clone(),
        session,
        header_scope: header(&parts.headers, SCOPE_HEADER).map(str::to_owned),
        path_scope: route.path_scope.clone(),
        client_address: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
    }
}

async fn read_body(state: &AgentState, body: axum::body::Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "the body is larger than agent.max_body_bytes ({} bytes)",
                    state.max_body_bytes
                ),
            )
        })
}

/// `POST`: one message or a batch.
async fn post_message(
    State(state): State<AgentState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    match post_checked(&state, &params, parts, body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn post_checked(
    state: &AgentState,
    params: &HashMap<String, String>,
    parts: Parts,
    body: axum::body::Body,
) -> Result<Response, Response> {
    let route = route(state, params, &parts)?;
    let session = session(&route, &parts.headers)?;
    if let Some(version) = header(&parts.headers, VERSION_HEADER)
        && !version::is_known(version)
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            &format!("unsupported MCP-Protocol-Version {version:?}"),
        ));
    }
    let bytes = read_body(state, body).await?;
    let body = jsonrpc::parse(&bytes)
        .map_err(|refused| answer::json(StatusCode::BAD_REQUEST, &refused.answer()))?;
    let caller = caller(&route, &parts, session);
    match body {
        Body::Single(Err(refused)) => Err(answer::json(StatusCode::BAD_REQUEST, &refused.answer())),
        Body::Single(Ok(Message::Request(request)))
            if request.method == "initialize" && caller.session.is_none() =>
        {
            Ok(initialize(&route, &caller, request).await)
        }
        Body::Single(Ok(Message::Request(request))) => {
            single(state, &route, caller, &parts.headers, request).await
        }
        Body::Single(Ok(other)) => Ok(accept(&caller, other)),
        Body::Batch(items) => batch(state, &route, &caller, items).await,
    }
}

/// A notification or a response: handled, answered 202.
fn accept(caller: &Caller, message: Message) -> Response {
    match message {
        Message::Notification { method, params } => notified(caller, &method, params.as_ref()),
        Message::Response { id, body } => {
            if let Some(session) = &caller.session
                && !session.answered(&id_key(&id), body)
            {
                tracing::debug!(%id, "an answer to no request in flight; ignored");
            }
        }
        Message::Request(_) => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// A client notification: `notifications/cancelled` cancels exactly the
/// request it names; the others (`initialized`, ...) need nothing.
fn notified(caller: &Caller, method: &str, params: Option<&serde_json::Map<String, Value>>) {
    if method != "notifications/cancelled" {
        return;
    }
    let Some(id) = params.and_then(|p| p.get("requestId")) else {
        return;
    };
    if let Some(session) = &caller.session
        && !session.cancel_request(&id_key(id))
    {
        tracing::debug!(%id, "cancelled a request not in flight");
    }
}

/// True if a request without a session is a stateless (2026-07-28) one.
fn is_stateless(headers: &HeaderMap, request: &jsonrpc::Request) -> bool {
    let meta_version = request
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    header(headers, VERSION_HEADER) == Some(STATELESS_VERSION)
        || meta_version == Some(STATELESS_VERSION)
        || request.method == "server/discover"
}

/// One request: checked, run in its own task, answered as JSON or SSE.
async fn single(
    state: &AgentState,
    route: &Route,
    caller: Caller,
    headers: &HeaderMap,
    request: jsonrpc::Request,
) -> Result<Response, Response> {
    if caller.session.is_none() {
        if !is_stateless(headers, &request) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                "no Mcp-Session-Id: send initialize first (or speak 2026-07-28)",
            ));
        }
        check_standard_headers(headers, &request).map_err(|message| {
            refuse(StatusCode::BAD_REQUEST, jsonrpc::HEADER_MISMATCH, &message)
        })?;
    }
    let ticket = state.admit().await.map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            super::errors::RUNTIME_ERROR,
            &e.message,
        )
    })?;
    let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
    let gateway = route.gateway.clone();
    let priming = caller
        .session
        .as_ref()
        .filter(|s| version::primes_sse(s.version))
        .map(|_| gateway.mint_id());
    let busy = caller.session.as_ref().map(|s| s.use_now());
    let keepalive = gateway.config.keepalive_interval;
    let serving: answer::Serving = Box::pin(async move {
        let _ticket = ticket;
        let _busy = busy;
        forward::serve(&gateway, &caller, request, &tx).await
    });
    Ok(answer::respond(serving, rx, keepalive, priming).await)
}

/// 2026-07-28 (SEP-2243): `Mcp-Method` must match the body's method, and
/// `Mcp-Name` its `params.name` (`params.uri` for resources), when sent; a
/// request whose `MCP-Protocol-Version` header says 2026-07-28 must send them.
fn check_standard_headers(headers: &HeaderMap, request: &jsonrpc::Request) -> Result<(), String> {
    let required = header(headers, VERSION_HEADER) == Some(STATELESS_VERSION);
    match header(headers, "mcp-method") {
        Some(method) if method != request.method => {
            return Err(format!(
                "Mcp-Method header {method:?} does not match the body's method {:?}",
                request.method
            ));
        }
        None if required => return Err("missing the Mcp-Method header".to_owned()),
        _ => {}
    }
    let key = match request.method.as_str() {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        _ => return Ok(()),
    };
    let expected = request
        .params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_str);
    match (
        header(headers, "mcp-name").map(decode_header_value),
        expected,
    ) {
        (Some(Some(name)), Some(expected)) if name != expected => Err(format!(
            "Mcp-Name header {name:?} does not match the body's {key} {expected:?}"
        )),
        (Some(None), _) => Err("Mcp-Name header is not valid Base64".to_owned()),
        (None, Some(_)) if required => Err("missing the Mcp-Name header".to_owned()),
        _ => Ok(()),
    }
}

/// A header value, `=?base64?...?=`-decoded when so wrapped (SEP-2243).
fn decode_header_value(raw: &str) -> Option<String> {
    use base64::Engine as _;
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(raw.to_owned()),
    }
}

/// `initialize`: a new downstream session, answered from the upstream's
/// cached hello (opening the caller's scope's session when never reached).
async fn initialize(route: &Route, caller: &Caller, request: jsonrpc::Request) -> Response {
    let gateway = &route.gateway;
    if gateway.sessions.is_full() {
        return full();
    }
    let params = request.params.as_ref();
    let version = version::negotiate(
        params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str),
    );
    let caps = ClientCaps::of(params.and_then(|p| p.get("capabilities")));
    let Ok(id) = gateway
        .key
        .mint(&route.server, SessionClaims { version, caps })
    else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            jsonrpc::INTERNAL_ERROR,
            "no random bytes for a session id",
        );
    };
    let served = Served::start(
        gateway.runtime.metrics(),
        &gateway.histograms,
        [&route.server, "initialize", ""],
        crate::telemetry::spans::McpSpan::none(),
    );
    let hello = match initial_scope(caller, &id, params) {
        Ok(scope) => forward::hello(gateway, caller, &scope).await,
        Err(failure) => Err(failure),
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(failure) => {
            served.finish(failure.error_type, &failure.message, Some(failure.code));
            let body =
                jsonrpc::error_answer(&request.id, failure.code, &failure.message, failure.data);
            return answer::json(StatusCode::OK, &body);
        }
    };
    if gateway
        .sessions
        .get_or_create(&id, &route.server, version, caps)
        .is_err()
    {
        return full();
    }
    served.finish("", "", None);
    let result = forward::initialize_result(&route.server, version, &hello);
    let mut response = answer::json(StatusCode::OK, &jsonrpc::result_answer(&request.id, result));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

fn initial_scope(
    caller: &Caller,
    id: &str,
    params: Option<&serde_json::Map<String, Value>>,
) -> Result<String, Failure> {
    let meta = super::scope::meta_scope(params).map_err(Failure::invalid_params)?;
    ScopeSources {
        header: caller.header_scope.as_deref(),
        meta,
        path: caller.path_scope.as_deref(),
        session: Some(id),
    }
    .resolve()
    .map_err(Failure::invalid_params)
}

/// A batch (2025-03-26 only, at most 32 entries): every request answered in
/// one JSON array once all are done.
async fn batch(
    state: &AgentState,
    route: &Route,
    caller: &Caller,
    items: Vec<Result<Message, Refused>>,
) -> Result<Response, Response> {
    let version = caller.session.as_ref().map(|s| s.version);
    if version != Some(BATCH_VERSION) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            "batches are accepted only in a 2025-03-26 session",
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            &format!("a batch holds at most {MAX_BATCH} messages"),
        ));
    }
    let mut answers = Vec::new();
    let mut requests = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items {
        match item {
            Err(refused) => answers.push(refused.answer()),
            Ok(Message::Request(request)) if !seen.insert(id_key(&request.id)) => {
                answers.push(jsonrpc::error_answer(
                    &request.id,
                    jsonrpc::INVALID_REQUEST,
                    "duplicate id in the batch",
                    None,
                ));
            }
            Ok(Message::Request(request)) => requests.push(request),
            Ok(other) => drop(accept(caller, other)),
        }
    }
    if requests.is_empty() && answers.is_empty() {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let _ticket = state.admit().await.map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            super::errors::RUNTIME_ERROR,
            &e.message,
        )
    })?;
    let _busy = caller.session.as_ref().map(|s| s.use_now());
    let (tx, _rx) = mpsc::channel(STREAM_CAPACITY);
    let served = futures::stream::iter(requests)
        .map(|request| forward::serve(&route.gateway, caller, request, &tx))
        .buffer_unordered(MAX_BATCH)
        .collect::<Vec<_>>()
        .await;
    answers.extend(served);
    Ok(answer::json(StatusCode::OK, &Value::Array(answers)))
}

/// `GET`: the session's stream for messages outside a request.
async fn get_stream(
    State(state): State<AgentState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (route, parts) = match route_of(&state, &params, request) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let session = match session(&route, &parts.headers) {
        Ok(Some(session)) => session,
        Ok(None) => {
            let mut response = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                jsonrpc::INVALID_REQUEST,
                "GET needs an Mcp-Session-Id (there is no stream without a session)",
            );
            response
                .headers_mut()
                .insert("allow", HeaderValue::from_static("POST, DELETE"));
            return response;
        }
        Err(response) => return response,
    };
    let Some(rx) = session.outbox.open_get() else {
        return refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::INVALID_REQUEST,
            "the session ended",
        );
    };
    let busy = session.use_now();
    let events = futures::stream::unfold((rx, busy), |(mut rx, busy)| async move {
        let Outgoing::Note(message) = rx.recv().await?;
        Some((Ok(answer::event(&message)), (rx, busy)))
    });
    answer::stream_response(events, route.gateway.config.keepalive_interval)
}

/// `DELETE`: ends the downstream session named by `Mcp-Session-Id` (and with
/// it its session scope); named scopes stay open.
async fn delete_session(
    State(state): State<AgentState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (route, parts) = match route_of(&state, &params, request) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(id) = header(&parts.headers, SESSION_HEADER) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_REQUEST,
            "DELETE needs the Mcp-Session-Id header",
        );
    };
    let gone = || {
        refuse(
            StatusCode::NOT_FOUND,
            jsonrpc::INVALID_REQUEST,
            "unknown or ended session",
        )
    };
    if route.gateway.key.verify(&route.server, id).is_none() {
        return gone();
    }
    if route.gateway.sessions.has_ended(id) {
        return gone();
    }
    route.gateway.sessions.end(id, EndReason::Deleted);
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}
