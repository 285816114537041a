//! Handles on one session: a lease on a pooled session, and an owned session
//! with its leak guard. Both deref to [`McpSession`], whose operations delegate
//! to `operations.rs` with the session as the target (no re-open, no retry).

use std::ops::Deref;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CompleteResult, GetPromptResult, Prompt, ReadResourceResult, Resource,
    ResourceTemplate, Tool,
};

use super::error::Result;
use super::operations::{self, Target};
use super::pool::{Checkout, Pool};
use super::request::{McpRequest, McpResult, RequestHandle};
use super::session::{CloseReason, Session, SessionInfo};
use crate::telemetry::events::SessionUnclosed;

/// The MCP operations of one live session, reached through a [`SessionLease`]
/// or an [`OwnedSession`]. Requests go to exactly this session: no re-open, no
/// retry; each has the server's `call_timeout` unless given one.
pub struct McpSession {
    session: Arc<Session>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for McpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSession")
            .field("session", &self.session)
            .finish()
    }
}

impl McpSession {
    fn target(&self) -> Target<'_> {
        Target::Session {
            pool: &self.pool,
            session: &self.session,
        }
    }

    /// Sends any request (raw JSON in and out) within `timeout`.
    pub async fn request(
        &self,
        request: &McpRequest,
        timeout: Option<Duration>,
        handle: &RequestHandle,
    ) -> Result<McpResult> {
        Ok(self.target().request(request, timeout, handle).await?.0)
    }

    /// Calls a tool on this session; `timeout` overrides the server's `call_timeout`.
    pub async fn call_tool(
        &self,
        tool: &str,
        arguments: Option<serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<CallToolResult> {
        let handle = RequestHandle::default();
        let call = operations::call_tool(self.target(), tool, arguments, timeout, &handle);
        Ok(call.await?.result)
    }

    /// Every tool of the server (all pages).
    pub async fn list_tools(&self) -> Result<Vec<Tool>> {
        operations::list_tools(self.target()).await
    }

    /// Pings the server on this session (`server/discover` on a 2026-07-28 session).
    pub async fn ping(&self) -> Result<()> {
        operations::ping(self.target()).await.map(drop)
    }

    /// Every resource of the server (all pages).
    pub async fn list_resources(&self) -> Result<Vec<Resource>> {
        operations::list_resources(self.target()).await
    }

    /// Every resource template of the server (all pages).
    pub async fn list_resource_templates(&self) -> Result<Vec<ResourceTemplate>> {
        operations::list_resource_templates(self.target()).await
    }

    /// Reads the resource at `uri`.
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult> {
        operations::read_resource(self.target(), uri).await
    }

    /// Subscribes to updates of the resource at `uri`.
    pub async fn subscribe(&self, uri: &str) -> Result<()> {
        operations::subscribe(self.target(), uri).await
    }

    /// Ends a subscription to the resource at `uri`.
    pub async fn unsubscribe(&self, uri: &str) -> Result<()> {
        operations::unsubscribe(self.target(), uri).await
    }

    /// Every prompt of the server (all pages).
    pub async fn list_prompts(&self) -> Result<Vec<Prompt>> {
        operations::list_prompts(self.target()).await
    }

    /// Gets the prompt `name` with `arguments` (a JSON object of strings).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<GetPromptResult> {
        operations::get_prompt(self.target(), name, arguments).await
    }

    /// Completion of `argument` (`{name, value}`) for `reference` (a
    /// `ref/prompt` or `ref/resource` object).
    pub async fn complete(
        &self,
        reference: serde_json::Value,
        argument: serde_json::Value,
    ) -> Result<CompleteResult> {
        operations::complete(self.target(), reference, argument).await
    }

    /// Sets the level (`debug`, `info`, ... `emergency`) of the log messages the
    /// server sends on this session.
    pub async fn set_logging_level(&self, level: &str) -> Result<()> {
        operations::set_logging_level(self.target(), level).await
    }

    /// A snapshot of the session.
    pub fn info(&self) -> SessionInfo {
        self.session.info()
    }
}

/// A lease on a pooled session: it is not evicted while the lease lives.
/// Calls go to exactly this session (no re-open, no retry).
pub struct SessionLease {
    session: McpSession,
    _checkout: Checkout,
}

impl std::fmt::Debug for SessionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLease")
            .field("session", &self.session.session)
            .finish()
    }
}

impl SessionLease {
    pub(crate) fn new(session: Arc<Session>, checkout: Checkout, pool: Arc<Pool>) -> SessionLease {
        SessionLease {
            session: McpSession { session, pool },
            _checkout: checkout,
        }
    }
}

impl Deref for SessionLease {
    type Target = McpSession;

    fn deref(&self) -> &McpSession {
        &self.session
    }
}

/// A session owned by the caller (from `Runtime::open`): close it with
/// [`OwnedSession::close`]. Dropped without `close()`, it is reported as an
/// unclosed session (with the source location that opened it) and closed in
/// the background.
pub struct OwnedSession {
    session: McpSession,
    opened_at: &'static Location<'static>,
    closed: AtomicBool,
}

impl std::fmt::Debug for OwnedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedSession")
            .field("session", &self.session.session)
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
            session: McpSession { session, pool },
            opened_at,
            closed: AtomicBool::new(false),
        }
    }

    /// Where the session was opened (the caller of `Runtime::open`).
    pub fn opened_at(&self) -> &'static Location<'static> {
        self.opened_at
    }

    /// Closes the session (graceful close, then its process group is killed).
    pub async fn close(self) {
        self.closed.store(true, Ordering::Release);
        let McpSession { session, pool } = &self.session;
        pool.retire(session, CloseReason::Explicit, None).await;
    }
}

impl Deref for OwnedSession {
    type Target = McpSession;

    fn deref(&self) -> &McpSession {
        &self.session
    }
}

impl Drop for OwnedSession {
    fn drop(&mut self) {
        let McpSession { session, pool } = &self.session;
        if self.closed.load(Ordering::Acquire) || session.is_closed() {
            return;
        }
        SessionUnclosed {
            session: session.facts(),
            location: self.opened_at,
        }
        .emit(&session.server.telemetry);
        if tokio::runtime::Handle::try_current().is_ok() {
            pool.retire_in_background(session.clone(), CloseReason::Unclosed, None);
        } else {
            // No runtime to close it on: at least end its process group now.
            pool.forget(session);
            session.kill_now();
        }
    }
}
