//! The aggregate endpoint `/mcp` (and `/scopes/{scope}/mcp`): every server in
//! `gateway.expose` behind one MCP endpoint (DESIGN §10, docs/gateway.md).
//!
//! - Lists (`tools/list`, `prompts/list`, `resources/list`,
//!   `resources/templates/list`) ask every exposed server in the caller's
//!   scope at once, follow every page, and merge: tools and prompts renamed
//!   `{server}__{name}` ([`names`](super::names)), resources routed back to
//!   their server ([`uris`](super::uris)). A server that fails (down, breaker
//!   open) is left out of that answer, and a log notification says so.
//! - A call goes to one upstream request: `tools/call` and `prompts/get` by
//!   name, `resources/*` by URI, `completion/complete` by its `ref`.
//! - `initialize` answers with the union of the capabilities of the servers
//!   reached so far, never waiting on one; a server reached later makes the
//!   gateway send `list_changed` to the aggregate sessions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::Gateway;
use super::forward::{Caller, Failure, Forwarding};
use super::jsonrpc::{self, Request};
use super::names::{self, NameMap};
use super::outbox::Outgoing;
use super::uris::{self, UriRoutes};
use crate::runtime::ServerHello;

/// The route name and `mcp_server` label of the aggregate endpoint.
pub(crate) use crate::config::AGGREGATE_SERVER as AGGREGATE;

/// Most pages followed per server and list.
const MAX_PAGES: usize = 100;

/// JSON-RPC: method not found.
const METHOD_NOT_FOUND: i32 = -32601;

/// What the aggregate endpoint keeps: the reverse maps of names and URIs, and
/// the servers being reached in the background.
#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    names: NameMap,
    uris: UriRoutes,
    reaching: Mutex<HashSet<Arc<str>>>,
}

/// One kind of list.
#[derive(Clone, Copy)]
struct Listing {
    method: &'static str,
    key: &'static str,
    /// The field that names an item (renamed or routed).
    field: &'static str,
}

const TOOLS: Listing = Listing {
    method: "tools/list",
    key: "tools",
    field: "name",
};
const PROMPTS: Listing = Listing {
    method: "prompts/list",
    key: "prompts",
    field: "name",
};
const RESOURCES: Listing = Listing {
    method: "resources/list",
    key: "resources",
    field: "uri",
};
const TEMPLATES: Listing = Listing {
    method: "resources/templates/list",
    key: "resourceTemplates",
    field: "uriTemplate",
};

/// The servers on the aggregate endpoint, in name order.
pub(crate) fn exposed(gateway: &Gateway) -> Vec<Arc<str>> {
    let config = gateway.runtime.config();
    config
        .servers
        .keys()
        .filter(|name| config.gateway.exposes(name))
        .map(|name| Arc::from(name.as_str()))
        .collect()
}

fn exposed_server(servers: &[Arc<str>], name: &str) -> Option<Arc<str>> {
    servers.iter().find(|s| s.as_ref() == name).cloned()
}

/// Serves one request of the aggregate endpoint.
pub(crate) async fn dispatch(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Value, Failure> {
    match request.method.as_str() {
        "ping" => Ok(json!({})),
        "tools/list" => list(gateway, caller, request, tx, TOOLS).await,
        "prompts/list" => list(gateway, caller, request, tx, PROMPTS).await,
        "resources/list" => list(gateway, caller, request, tx, RESOURCES).await,
        "resources/templates/list" => list(gateway, caller, request, tx, TEMPLATES).await,
        "tools/call" | "prompts/get" => by_param(gateway, caller, request, tx, "name").await,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            by_param(gateway, caller, request, tx, "uri").await
        }
        "completion/complete" => by_ref(gateway, caller, request, tx).await,
        other => Err(Failure {
            code: METHOD_NOT_FOUND,
            message: format!(
                "{other} is not routed by the aggregate endpoint; use /mcp/{{server}}"
            ),
            data: None,
            error_type: "invalid_request",
        }),
    }
}

/// A list merged over every exposed server.
async fn list(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
    listing: Listing,
) -> Result<Value, Failure> {
    let (hold, _) = Forwarding::begin(caller, request, tx)?;
    let servers = exposed(gateway);
    let answers = futures::future::join_all(
        servers
            .iter()
            .map(|server| list_one(gateway, caller, &hold, server, listing, tx)),
    )
    .await;
    let mut listed: Vec<(Arc<str>, Vec<Value>)> = Vec::new();
    for (server, answer) in servers.into_iter().zip(answers) {
        match answer {
            Ok(items) => listed.push((server, items)),
            Err(failure) => left_out(tx, &server, listing.method, &failure),
        }
    }
    Ok(json!({listing.key: merge(&gateway.aggregate, listing, listed)}))
}

/// Every page of one server's list.
async fn list_one(
    gateway: &Gateway,
    caller: &Caller,
    hold: &Forwarding,
    server: &Arc<str>,
    listing: Listing,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map(|c| {
            let mut params = Map::new();
            params.insert("cursor".to_owned(), c);
            params
        });
        let mut page = hold
            .send(gateway, caller, server, listing.method, params, tx)
            .await?;
        if let Some(Value::Array(page_items)) = page.get_mut(listing.key).map(Value::take) {
            items.extend(page_items);
        }
        match page.get("nextCursor") {
            Some(next) if !next.is_null() => cursor = Some(next.clone()),
            _ => break,
        }
    }
    Ok(items)
}

/// Tells the client a server was left out of a list.
fn left_out(tx: &mpsc::Sender<Outgoing>, server: &str, method: &str, failure: &Failure) {
    let data = format!("{server} is left out of {method}: {}", failure.message);
    tracing::warn!(
        mcp_server = server,
        method,
        "aggregate list: {}",
        failure.message
    );
    let note = jsonrpc::notification(
        "notifications/message",
        json!({"level": "warning", "logger": "mcpwatch", "data": data}),
    );
    let _ = tx.try_send(Outgoing::Note(note));
}

/// Renames and routes the servers' items into one list without equal names.
fn merge(
    aggregate: &Aggregate,
    listing: Listing,
    listed: Vec<(Arc<str>, Vec<Value>)>,
) -> Vec<Value> {
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (_, items) in &listed {
        for item in items {
            if let Some(key) = item.get(listing.field).and_then(Value::as_str) {
                *owners.entry(key.to_owned()).or_default() += 1;
            }
        }
    }
    let mut merged = Vec::new();
    let mut seen = HashSet::new();
    for (server, items) in listed {
        let mut keys = Vec::new();
        for mut item in items {
            let Some(key) = item
                .get(listing.field)
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let shown = match listing.field {
                "name" => {
                    let shown = names::prefixed(&server, &key);
                    aggregate.names.remember(&shown, &server, &key);
                    shown
                }
                _ if owners.get(&key).copied().unwrap_or(0) > 1 => uris::explicit(&server, &key),
                _ => key.clone(),
            };
            keys.push(key);
            if seen.insert(shown.clone()) {
                item[listing.field] = Value::String(shown);
                merged.push(item);
            }
        }
        match listing.field {
            "uri" => aggregate.uris.listed_resources(&server, &keys),
            "uriTemplate" => aggregate.uris.listed_templates(&server, &keys),
            _ => {}
        }
    }
    merged
}

fn unknown(what: &str, value: &str) -> Failure {
    Failure::invalid_params(format!(
        "no server on the aggregate endpoint has the {what} {value:?}"
    ))
}

/// The server and original name of a listed (prefixed) name.
fn resolve_name(gateway: &Gateway, listed: &str) -> Result<(Arc<str>, String), Failure> {
    let servers = exposed(gateway);
    gateway
        .aggregate
        .names
        .resolve(listed, |s| exposed_server(&servers, s))
        .ok_or_else(|| unknown("name", listed))
}

/// `tools/call`, `prompts/get` (by `name`) and `resources/read`,
/// `subscribe`, `unsubscribe` (by `uri`): to the server that param routes to,
/// with the param as that server knows it.
async fn by_param(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
    key: &'static str,
) -> Result<Value, Failure> {
    let (hold, params) = Forwarding::begin(caller, request, tx)?;
    let mut params = params.unwrap_or_default();
    let listed = params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (server, original) = match key {
        "name" => resolve_name(gateway, &listed)?,
        _ => route_uri(gateway, caller, &hold, &listed, tx).await?,
    };
    params.insert(key.to_owned(), Value::String(original));
    hold.send(gateway, caller, &server, &request.method, Some(params), tx)
        .await
}

/// The server and URI for `uri`, listing the resources first when nothing routes it yet.
async fn route_uri(
    gateway: &Gateway,
    caller: &Caller,
    hold: &Forwarding,
    uri: &str,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(Arc<str>, String), Failure> {
    let servers = exposed(gateway);
    let routes = &gateway.aggregate.uris;
    if let Some(found) = routes.route(uri, |s| exposed_server(&servers, s)) {
        return Ok(found);
    }
    for listing in [RESOURCES, TEMPLATES] {
        let answers = futures::future::join_all(
            servers
                .iter()
                .map(|s| list_one(gateway, caller, hold, s, listing, tx)),
        )
        .await;
        let listed = servers
            .iter()
            .cloned()
            .zip(answers)
            .filter_map(|(s, a)| Some((s, a.ok()?)))
            .collect();
        merge(&gateway.aggregate, listing, listed);
    }
    routes
        .route(uri, |s| exposed_server(&servers, s))
        .ok_or_else(|| unknown("resource", uri))
}

/// `completion/complete`: to the server of its `ref` (a prompt or a resource).
async fn by_ref(
    gateway: &Gateway,
    caller: &Caller,
    request: &Request,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Value, Failure> {
    let (hold, params) = Forwarding::begin(caller, request, tx)?;
    let mut params = params.unwrap_or_default();
    let mut reference = params.get("ref").cloned().unwrap_or(Value::Null);
    let server = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let listed = reference
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (server, name) = resolve_name(gateway, listed)?;
            reference["name"] = Value::String(name);
            server
        }
        _ => {
            let uri = reference
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let (server, original) = route_uri(gateway, caller, &hold, &uri, tx).await?;
            reference["uri"] = Value::String(original);
            server
        }
    };
    params.insert("ref".to_owned(), reference);
    hold.send(gateway, caller, &server, &request.method, Some(params), tx)
        .await
}

/// The hello of the aggregate endpoint: the union of the capabilities of the
/// servers reached so far, and their instructions. Servers not reached yet are
/// reached in the background (in `scope`), never waited on.
pub(crate) fn hello(gateway: &Gateway, scope: &str) -> ServerHello {
    let mut capabilities = json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true},
    });
    let mut instructions = Vec::new();
    for server in exposed(gateway) {
        match gateway.runtime.cached_hello(&server) {
            Some(hello) => {
                union(&mut capabilities, &hello.capabilities);
                if let Some(text) = &hello.instructions {
                    instructions.push(format!("{server}: {text}"));
                }
            }
            None => reach(gateway, server, scope),
        }
    }
    ServerHello {
        protocol_version: String::new(),
        capabilities,
        instructions: (!instructions.is_empty()).then(|| instructions.join("\n")),
    }
}

/// Adds `from`'s capabilities to `into` (objects merged, `true` wins).
fn union(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                union(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Bool(into), Value::Bool(from)) => *into |= *from,
        (into @ Value::Null, from) => *into = from.clone(),
        _ => {}
    }
}

/// Opens `server`'s session in `scope` in the background; once it answers,
/// the aggregate sessions learn of its tools, prompts and resources.
fn reach(gateway: &Gateway, server: Arc<str>, scope: &str) {
    let Some(me) = gateway.me.upgrade() else {
        return;
    };
    if !gateway
        .aggregate
        .reaching
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(server.clone())
    {
        return;
    }
    let scope = scope.to_owned();
    tokio::spawn(async move {
        let reached = me.runtime.hello(&server, &scope).await.is_ok();
        me.aggregate
            .reaching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&server);
        if reached {
            for session in me.sessions.of_server(AGGREGATE) {
                for method in [
                    "notifications/tools/list_changed",
                    "notifications/prompts/list_changed",
                    "notifications/resources/list_changed",
                ] {
                    session
                        .outbox
                        .deliver(Outgoing::Note(jsonrpc::notification(method, json!({}))));
                }
            }
        }
    });
}
