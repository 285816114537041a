//! Upstream notifications to the downstream sessions bound to their
//! `(server, scope)`: log messages (filtered by each session's
//! `logging/setLevel`), resource updates and `list_changed`. Progress is not
//! here: it belongs to one request and goes back on its stream.

use std::sync::{Arc, Weak};

use serde_json::Value;

use super::Gateway;
use super::jsonrpc;
use super::outbox::Outgoing;
use crate::runtime::{NotificationSink, UpstreamNotification};

/// The sink the runtime hands every notification to.
pub(crate) fn sink(gateway: Weak<Gateway>) -> NotificationSink {
    Arc::new(move |notification| {
        if let Some(gateway) = gateway.upgrade() {
            relay(&gateway, &notification);
        }
    })
}

fn relay(gateway: &Gateway, notification: &UpstreamNotification) {
    if notification.method == "notifications/cancelled" {
        // The server cancelling its own request to us: nothing for clients.
        return;
    }
    let level = (notification.method == "notifications/message")
        .then(|| notification.params.get("level").and_then(Value::as_str))
        .flatten();
    for session in gateway
        .sessions
        .bound(&notification.server, &notification.scope)
    {
        if level.is_some_and(|level| !session.wants_log(level)) {
            continue;
        }
        let message = jsonrpc::notification(notification.method, notification.params.clone());
        if !session.outbox.deliver(Outgoing::Note(message)) {
            tracing::debug!(session = %session.id, method = notification.method, "no open stream for a notification; dropped");
        }
    }
}
