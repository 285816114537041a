//! What the runtime learns about a server that a gateway in front of it needs:
//! its last `initialize` answer ([`ServerHello`]), which scopes lost their
//! session to a failure ([`LostScopes`], for `mcpwatch/session_recovered`), and
//! the server's notifications, handed to one sink ([`UpstreamEvents`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value;

/// A server's answer to the last `initialize` of any of its sessions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerHello {
    /// The protocol version the session speaks.
    pub(crate) protocol_version: String,
    /// The server's `capabilities`, as JSON.
    pub(crate) capabilities: Value,
    /// The server's `instructions`.
    pub(crate) instructions: Option<String>,
}

impl ServerHello {
    /// The hello of an `initialize` (or `server/discover`) answer.
    pub(crate) fn of(info: &rmcp::model::ServerPeerInfo) -> ServerHello {
        ServerHello {
            protocol_version: info.protocol_version.to_string(),
            capabilities: serde_json::to_value(&info.capabilities)
                .unwrap_or_else(|_| Value::Object(serde_json::Map::new())),
            instructions: info.instructions.clone(),
        }
    }
}

/// The last hello of a server, replaced on every (re)initialize.
#[derive(Debug, Default)]
pub(crate) struct HelloCell(Mutex<Option<Arc<ServerHello>>>);

impl HelloCell {
    /// Records `hello` as the server's latest.
    pub(crate) fn set(&self, hello: ServerHello) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hello));
    }

    /// The latest hello, if a session of the server ever opened.
    pub(crate) fn get(&self) -> Option<Arc<ServerHello>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Scopes whose pooled session ended by a failure (`server_exit`, `error`), so
/// the next session opened for them is a recovery: the server's state is gone.
#[derive(Debug, Default)]
pub(crate) struct LostScopes(Mutex<HashSet<Arc<str>>>);

/// Past this many, the set is cleared: a scope that never came back must not
/// hold memory forever, and losing the mark only drops a hint.
const MAX_LOST_SCOPES: usize = 10_000;

impl LostScopes {
    /// Marks `scope` as having lost its session.
    pub(crate) fn mark(&self, scope: &Arc<str>) {
        let mut lost = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lost.len() >= MAX_LOST_SCOPES {
            lost.clear();
        }
        lost.insert(scope.clone());
    }

    /// True (once) if `scope` lost its session since its last open.
    pub(crate) fn take(&self, scope: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(scope)
    }
}

/// A notification a server sent on one of its pooled sessions.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamNotification {
    /// The server's configured name.
    pub(crate) server: Arc<str>,
    /// The scope of the session it came on.
    pub(crate) scope: Arc<str>,
    /// The method, e.g. `notifications/message`.
    pub(crate) method: &'static str,
    /// Its params.
    pub(crate) params: Value,
}

/// Receives every server notification (set once, by the gateway).
pub(crate) type NotificationSink = Arc<dyn Fn(UpstreamNotification) + Send + Sync>;

/// Where server notifications go besides logs and metrics: nowhere until a
/// sink is set.
#[derive(Default)]
pub(crate) struct UpstreamEvents {
    sink: OnceLock<NotificationSink>,
}

impl std::fmt::Debug for UpstreamEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamEvents")
            .field("sink", &self.sink.get().is_some())
            .finish()
    }
}

impl UpstreamEvents {
    /// Sets the sink; false if one was already set.
    pub(crate) fn set_sink(&self, sink: NotificationSink) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Hands a notification to the sink, if any (`params` built only then).
    pub(crate) fn emit(
        &self,
        server: &Arc<str>,
        scope: &Arc<str>,
        method: &'static str,
        params: impl FnOnce() -> Value,
    ) {
        if let Some(sink) = self.sink.get() {
            sink(UpstreamNotification {
                server: server.clone(),
                scope: scope.clone(),
                method,
                params: params(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_scope_is_taken_once() {
        let lost = LostScopes::default();
        assert!(!lost.take("t1"));
        lost.mark(&Arc::from("t1"));
        assert!(lost.take("t1"));
        assert!(!lost.take("t1"));
    }

    #[test]
    fn events_go_nowhere_until_a_sink_is_set() {
        let events = UpstreamEvents::default();
        let (server, scope) = (Arc::from("s"), Arc::from("t"));
        events.emit(&server, &scope, "notifications/message", || {
            panic!("params built without a sink")
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        assert!(events.set_sink(Arc::new(move |n| into.lock().unwrap().push(n.method))));
        events.emit(&server, &scope, "notifications/message", || Value::Null);
        assert_eq!(*seen.lock().unwrap(), vec!["notifications/message"]);
    }
}
