//! Progress notifications (`notifications/progress`): routed to the request they
//! belong to, as events on its CLIENT span and to the caller's callback
//! ([`CallOptions::on_progress`](crate::CallOptions::on_progress)).
//!
//! rmcp puts a `progressToken` into every request's `_meta` and hands each
//! notification to the client handler on a task of its own, so a handler would
//! see them in any order, and possibly after the request's answer. mcpwatch
//! reads them where the transport yields them instead ([`Observed`]): in the
//! order the server sent them, and always before the answer that follows them.
//!
//! A request is tracked only when someone wants its progress (a callback, or a
//! span that is being recorded); the hot path of an untraced call without a
//! callback does nothing here. A notification that arrives before its request
//! is tracked (the server answered within microseconds of the send) waits in a
//! small buffer for it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::IntCounter;
use rmcp::model::{
    ProgressNotificationParam, ProgressToken, ServerJsonRpcMessage, ServerNotification,
};
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

use crate::telemetry::events::ProgressReceived;
use crate::telemetry::spans::McpSpan;

/// Notifications kept for requests not tracked yet (oldest dropped first).
const EARLY_CAP: usize = 32;

/// One progress notification of a request in flight.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Progress so far; increases with every notification.
    pub progress: f64,
    /// The total, when the server knows it.
    pub total: Option<f64>,
    /// A human-readable status, when the server sent one.
    pub message: Option<String>,
}

/// A callback receiving the progress of a call; see
/// [`CallOptions::on_progress`](crate::CallOptions::on_progress).
#[derive(Clone)]
pub struct ProgressCallback(Arc<dyn Fn(Progress) + Send + Sync>);

impl ProgressCallback {
    /// Wraps `callback`.
    pub fn new(callback: impl Fn(Progress) + Send + Sync + 'static) -> ProgressCallback {
        ProgressCallback(Arc::new(callback))
    }
}

impl std::fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// Routes one session's progress notifications to the requests in flight.
#[derive(Debug, Default)]
pub(crate) struct ProgressRouter {
    state: Mutex<RouterState>,
    /// `mcp_client_notifications_total{mcp_method_name="notifications/progress"}`
    /// of the server: counted here, in order, as the transport yields them.
    counter: Option<IntCounter>,
}

#[derive(Debug, Default)]
struct RouterState {
    routes: HashMap<ProgressToken, Route>,
    early: VecDeque<ProgressNotificationParam>,
}

#[derive(Debug)]
struct Route {
    span: McpSpan,
    callback: Option<ProgressCallback>,
    /// The last progress delivered: the spec has it increase, so a stale one is dropped.
    last: Option<f64>,
}

impl ProgressRouter {
    /// A router counting every progress notification in `counter`.
    pub(crate) fn new(counter: IntCounter) -> ProgressRouter {
        ProgressRouter {
            state: Mutex::default(),
            counter: Some(counter),
        }
    }

    fn state(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes the progress of the request with `token` to `span` and to
    /// `callback`, until the returned guard is dropped. `None` (and no work)
    /// when there is neither a callback nor a recorded span.
    pub(crate) fn track(
        self: &Arc<Self>,
        token: &ProgressToken,
        span: &McpSpan,
        callback: Option<&ProgressCallback>,
    ) -> Option<Tracked> {
        let callback = callback.cloned();
        if callback.is_none() && !span.is_recording() {
            return None;
        }
        let early: Vec<ProgressNotificationParam> = {
            let mut state = self.state();
            state.routes.insert(
                token.clone(),
                Route {
                    span: span.clone(),
                    callback,
                    last: None,
                },
            );
            if state.early.iter().any(|p| &p.progress_token == token) {
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut state.early)
                    .into_iter()
                    .partition(|p| &p.progress_token == token);
                state.early = others.into();
                mine
            } else {
                Vec::new()
            }
        };
        for param in &early {
            self.deliver(param);
        }
        Some(Tracked {
            router: self.clone(),
            token: token.clone(),
        })
    }

    /// Counts one notification as the transport yields it, then delivers it.
    fn received(&self, param: &ProgressNotificationParam) {
        if let Some(counter) = &self.counter {
            counter.inc();
        }
        self.deliver(param);
    }

    /// Delivers one notification to its request (or keeps it for a request
    /// about to be tracked).
    fn deliver(&self, param: &ProgressNotificationParam) {
        let target = {
            let mut state = self.state();
            match state.routes.get_mut(&param.progress_token) {
                Some(route) => {
                    if route.last.is_some_and(|last| param.progress <= last) {
                        return;
                    }
                    route.last = Some(param.progress);
                    Some((route.span.clone(), route.callback.clone()))
                }
                None => {
                    if state.early.len() >= EARLY_CAP {
                        state.early.pop_front();
                    }
                    state.early.push_back(param.clone());
                    None
                }
            }
        };
        let Some((span, callback)) = target else {
            return;
        };
        if span.is_recording() {
            ProgressReceived {
                span: &span,
                progress: param.progress,
                total: param.total,
                message: param.message.as_deref(),
            }
            .emit();
        }
        if let Some(callback) = callback {
            (callback.0)(Progress {
                progress: param.progress,
                total: param.total,
                message: param.message.clone(),
            });
        }
    }
}

/// Keeps a request's progress routed; dropping it ends the routing.
#[derive(Debug)]
pub(crate) struct Tracked {
    router: Arc<ProgressRouter>,
    token: ProgressToken,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let route = self.router.state().routes.remove(&self.token);
        drop(route); // the span may close here: outside the lock
    }
}

/// A transport that hands progress notifications to a [`ProgressRouter`] as it
/// yields them (in order, before the answer that follows them).
pub(crate) struct Observed<T> {
    inner: T,
    progress: Arc<ProgressRouter>,
}

impl<T> Observed<T> {
    pub(crate) fn new(inner: T, progress: Arc<ProgressRouter>) -> Observed<T> {
        Observed { inner, progress }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Observed<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(ServerJsonRpcMessage::Notification(notification)) = &message
            && let ServerNotification::ProgressNotification(progress) = &notification.notification
        {
            self.progress.received(&progress.params);
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn param(token: u32, progress: f64) -> ProgressNotificationParam {
        ProgressNotificationParam::new(
            ProgressToken(NumberOrString::Number(token.into())),
            progress,
        )
    }

    fn collecting() -> (ProgressCallback, Arc<Mutex<Vec<f64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let callback = ProgressCallback::new(move |p| sink.lock().unwrap().push(p.progress));
        (callback, seen)
    }

    #[test]
    fn routes_to_the_tracked_request_in_order_dropping_stale_ones() {
        let router = Arc::new(ProgressRouter::default());
        let (callback, seen) = collecting();
        let token = param(7, 0.0).progress_token;
        let tracked = router.track(&token, &McpSpan::none(), Some(&callback));
        assert!(tracked.is_some());
        router.deliver(&param(7, 1.0));
        router.deliver(&param(8, 5.0)); // another request's
        router.deliver(&param(7, 3.0));
        router.deliver(&param(7, 2.0)); // stale: progress must increase
        assert_eq!(*seen.lock().unwrap(), vec![1.0, 3.0]);
        drop(tracked);
        router.deliver(&param(7, 4.0));
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "nothing after the request ended"
        );
        assert!(router.state().routes.is_empty());
    }

    #[test]
    fn a_notification_before_tracking_is_kept_for_the_request() {
        let router = Arc::new(ProgressRouter::default());
        router.deliver(&param(1, 0.5));
        let (callback, seen) = collecting();
        let token = param(1, 0.0).progress_token;
        let _tracked = router.track(&token, &McpSpan::none(), Some(&callback));
        assert_eq!(*seen.lock().unwrap(), vec![0.5]);
        assert!(router.state().early.is_empty());
    }

    #[test]
    fn nothing_is_tracked_without_a_callback_or_a_recorded_span() {
        let router = Arc::new(ProgressRouter::default());
        let token = param(1, 0.0).progress_token;
        assert!(router.track(&token, &McpSpan::none(), None).is_none());
        for i in 0..(EARLY_CAP as u32 * 2) {
            router.deliver(&param(i, 1.0));
        }
        assert_eq!(
            router.state().early.len(),
            EARLY_CAP,
            "the early buffer is bounded"
        );
    }
}
