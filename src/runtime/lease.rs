//! Handles on one session: a lease on a pooled session, and an owned session
//! with its leak guard.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, GetPromptRequest,
    GetPromptRequestParams, GetPromptResult, ListPromptsRequest, ListResourcesRequest,
    ListToolsRequest, Prompt, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResult,
    Resource, ServerResult, Tool,
};

use super::call;
use super::error::{Error, Result};
use super::handler::health_request;
use super::pool::{Checkout, Pool};
use super::session::{CloseReason, Session, SessionInfo};
use crate::telemetry::events::SessionUnclosed;

/// A lease on a pooled session: it is not evicted while the lease lives.
/// Calls go to exactly this session (no re-open, no retry).
pub struct SessionLease {
    session: Arc<Session>,
    pool: Arc<Pool>,
    _checkout: Checkout,
}

impl std::fmt::Debug for SessionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLease")
            .field("session", &self.session)
            .finish()
    }
}

impl SessionLease {
    pub(crate) fn new(session: Arc<Session>, checkout: Checkout, pool: Arc<Pool>) -> SessionLease {
        SessionLease {
            session,
            pool,
            _checkout: checkout,
        }
    }

    /// Calls a tool on this session; `timeout` overrides the server's `call_timeout`.
    pub async fn call_tool(
        &self,
        tool: &str,
        arguments: Option<serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<CallToolResult> {
        call_tool(&self.pool, &self.session, tool, arguments, timeout).await
    }

    /// Lists the first page of the server's tools.
    pub async fn list_tools(&self) -> Result<Vec<Tool>> {
        list_tools(&self.pool, &self.session).await
    }

    /// Pings the server on this session (`server/discover` on a 2026-07-28 session).
    pub async fn ping(&self) -> Result<()> {
        ping(&self.pool, &self.session).await
    }

    /// Lists the first page of the server's resources.
    pub async fn list_resources(&self) -> Result<Vec<Resource>> {
        list_resources(&self.pool, &self.session).await
    }

    /// Reads the resource at `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult> {
        read_resource(&self.pool, &self.session, uri).await
    }

    /// Lists the first page of the server's prompts.
    pub async fn list_prompts(&self) -> Result<Vec<Prompt>> {
        list_prompts(&self.pool, &self.session).await
    }

    /// Gets the prompt `name` with `arguments` (a JSON object of strings).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<GetPromptResult> {
        get_prompt(&self.pool, &self.session, name, arguments).await
    }

    /// A snapshot of the session.
    pub fn info(&self) -> SessionInfo {
        self.session.info()
    }
}

/// A session owned by the caller (from `Runtime::open`): close it with
/// [`OwnedSession::close`]. Dropped without `close()`, it is reported as an
/// unclosed session (with the source location that opened it) and closed in
/// the background.
pub struct OwnedSession {
    session: Arc<Session>,
    pool: Arc<Pool>,
    opened_at: &'static Location<'static>,
    closed: AtomicBool,
}

impl std::fmt::Debug for OwnedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedSession")
            .field("session", &self.session)
            .field("opened_at", &self.opened_at)
            .finish()
    }
}

impl OwnedSession {
    pub(crate) fn new(
        session: Arc<Session>,
        pool: Arc<Pool>,
        opened_at: &'static Location<'static>,
    ) -> OwnedSession {
        OwnedSession {
            session,
            pool,
            opened_at,
            closed: AtomicBool::new(false),
        }
    }

    /// Calls a tool on this session; `timeout` overrides the server's `call_timeout`.
    pub async fn call_tool(
        &self,
        tool: &str,
        arguments: Option<serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<CallToolResult> {
        call_tool(&self.pool, &self.session, tool, arguments, timeout).await
    }

    /// Lists the first page of the server's tools.
    pub async fn list_tools(&self) -> Result<Vec<Tool>> {
        list_tools(&self.pool, &self.session).await
    }

    /// Pings the server on this session (`server/discover` on a 2026-07-28 session).
    pub async fn ping(&self) -> Result<()> {
        ping(&self.pool, &self.session).await
    }

    /// Lists the first page of the server's resources.
    pub async fn list_resources(&self) -> Result<Vec<Resource>> {
        list_resources(&self.pool, &self.session).await
    }

    /// Reads the resource at `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult> {
        read_resource(&self.pool, &self.session, uri).await
    }

    /// Lists the first page of the server's prompts.
    pub async fn list_prompts(&self) -> Result<Vec<Prompt>> {
        list_prompts(&self.pool, &self.session).await
    }

    /// Gets the prompt `name` with `arguments` (a JSON object of strings).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<GetPromptResult> {
        get_prompt(&self.pool, &self.session, name, arguments).await
    }

    /// A snapshot of the session.
    pub fn info(&self) -> SessionInfo {
        self.session.info()
    }

    /// Where the session was opened (the caller of `Runtime::open`).
    pub fn opened_at(&self) -> &'static Location<'static> {
        self.opened_at
    }

    /// Closes the session (graceful close, then its process group is killed).
    pub async fn close(self) {
        self.closed.store(true, Ordering::Release);
        self.pool
            .retire(&self.session, CloseReason::Explicit, None)
            .await;
    }
}

impl Drop for OwnedSession {
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) || self.session.is_closed() {
            return;
        }
        SessionUnclosed {
            session: self.session.facts(),
            location: self.opened_at,
        }
        .emit(&self.session.server.telemetry);
        if tokio::runtime::Handle::try_current().is_ok() {
            self.pool
                .retire_in_background(self.session.clone(), CloseReason::Unclosed, None);
        } else {
            // No runtime to close it on: at least end its process group now.
            self.pool.forget(&self.session);
            self.session.kill_now();
        }
    }
}

async fn call_tool(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    tool: &str,
    arguments: Option<serde_json::Value>,
    timeout: Option<Duration>,
) -> Result<CallToolResult> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = match arguments {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(map)) => Some(map),
        Some(_) => {
            return Err(Error::InvalidRequest {
                message: "tool arguments must be a JSON object".to_owned(),
            });
        }
    };
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let deadline = timeout.unwrap_or(session.server.spec.call_timeout);
    match call::send(pool, session, request, "tools/call", Some(tool), deadline).await? {
        ServerResult::CallToolResult(result) => Ok(result),
        _ => Err(Error::Protocol {
            server: session.server.name.to_string(),
            detail: "unexpected answer to tools/call".into(),
        }),
    }
}

async fn list_tools(pool: &Arc<Pool>, session: &Arc<Session>) -> Result<Vec<Tool>> {
    let request = ClientRequest::ListToolsRequest(ListToolsRequest::default());
    match call::send(
        pool,
        session,
        request,
        "tools/list",
        None,
        session.server.spec.call_timeout,
    )
    .await?
    {
        ServerResult::ListToolsResult(page) => Ok(page.tools),
        _ => Err(Error::Protocol {
            server: session.server.name.to_string(),
            detail: "unexpected answer to tools/list".into(),
        }),
    }
}

async fn ping(pool: &Arc<Pool>, session: &Arc<Session>) -> Result<()> {
    let (request, method) = health_request(&session.server.spec);
    call::send(
        pool,
        session,
        request,
        method,
        None,
        session.server.spec.call_timeout,
    )
    .await
    .map(|_| ())
}

/// Sends one request on the session under the server's `call_timeout` and
/// takes the answer apart with `answer`.
async fn request<T>(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    request: ClientRequest,
    method: &str,
    answer: impl FnOnce(ServerResult) -> Option<T>,
) -> Result<T> {
    let timeout = session.server.spec.call_timeout;
    let result = call::send(pool, session, request, method, None, timeout).await?;
    answer(result).ok_or_else(|| Error::Protocol {
        server: session.server.name.to_string(),
        detail: format!("unexpected answer to {method}"),
    })
}

async fn list_resources(pool: &Arc<Pool>, session: &Arc<Session>) -> Result<Vec<Resource>> {
    let list = ClientRequest::ListResourcesRequest(ListResourcesRequest::default());
    request(
        pool,
        session,
        list,
        "resources/list",
        |result| match result {
            ServerResult::ListResourcesResult(page) => Some(page.resources),
            _ => None,
        },
    )
    .await
}

async fn read_resource(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    uri: &str,
) -> Result<ReadResourceResult> {
    let read = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(
        ReadResourceRequestParams::new(uri),
    ));
    request(
        pool,
        session,
        read,
        "resources/read",
        |result| match result {
            ServerResult::ReadResourceResult(result) => Some(result),
            _ => None,
        },
    )
    .await
}

async fn list_prompts(pool: &Arc<Pool>, session: &Arc<Session>) -> Result<Vec<Prompt>> {
    let list = ClientRequest::ListPromptsRequest(ListPromptsRequest::default());
    request(pool, session, list, "prompts/list", |result| match result {
        ServerResult::ListPromptsResult(page) => Some(page.prompts),
        _ => None,
    })
    .await
}

async fn get_prompt(
    pool: &Arc<Pool>,
    session: &Arc<Session>,
    name: &str,
    arguments: Option<serde_json::Value>,
) -> Result<GetPromptResult> {
    let mut params = GetPromptRequestParams::new(name);
    params.arguments = match arguments {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(map)) if map.values().all(serde_json::Value::is_string) => {
            Some(map)
        }
        Some(_) => {
            return Err(Error::InvalidRequest {
                message: "prompt arguments must be a JSON object of strings".to_owned(),
            });
        }
    };
    let get = ClientRequest::GetPromptRequest(GetPromptRequest::new(params));
    request(pool, session, get, "prompts/get", |result| match result {
        ServerResult::GetPromptResult(result) => Some(result),
        _ => None,
    })
    .await
}
