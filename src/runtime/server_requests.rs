//! Routes a server's own requests (sampling, elicitation) to the caller whose
//! request is in flight on the session, when that caller gave a route
//! ([`RequestHandle::route_server_requests`](super::RequestHandle::route_server_requests)).
//!
//! A server request carries no link to the request it serves on stdio (and over
//! HTTP rmcp does not expose the stream it came on), so the rule is DESIGN
//! §10's: exactly one routed request in flight on the session gets it;
//! otherwise the server's policy (`sampling`, `elicitation`) answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::request::ServerRequestRoute;

/// The routes of one session's requests in flight.
#[derive(Default)]
pub(crate) struct ServerRequestRoutes {
    routes: Mutex<Vec<(u64, ServerRequestRoute)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for ServerRequestRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequestRoutes")
            .field("routes", &self.lock().len())
            .finish()
    }
}

/// Keeps a request's route registered; dropping it removes the route.
pub(crate) struct RouteRegistration {
    routes: Arc<ServerRequestRoutes>,
    id: u64,
}

impl Drop for RouteRegistration {
    fn drop(&mut self) {
        let removed = {
            let mut routes = self.routes.lock();
            routes
                .iter()
                .position(|(id, _)| *id == self.id)
                .map(|at| routes.swap_remove(at))
        };
        drop(removed); // the route's captures drop outside the lock
    }
}

impl ServerRequestRoutes {
    /// Registers `route` (no work without one) until the registration drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        route: Option<&ServerRequestRoute>,
    ) -> Option<RouteRegistration> {
        let route = route?.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, route));
        Some(RouteRegistration {
            routes: self.clone(),
            id,
        })
    }

    /// The route to use: the only one registered, if exactly one is.
    pub(crate) fn only(&self) -> Option<ServerRequestRoute> {
        match self.lock().as_slice() {
            [(_, route)] => Some(route.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, ServerRequestRoute)>> {
        // Every write is one push or one swap_remove: a poisoned lock is consistent.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ClientResult;

    fn route() -> ServerRequestRoute {
        Arc::new(|_| Box::pin(async { Ok(ClientResult::empty(())) }))
    }

    #[test]
    fn only_a_single_registered_route_is_used() {
        let routes = Arc::new(ServerRequestRoutes::default());
        assert!(routes.register(None).is_none());
        assert!(routes.only().is_none());
        let first = routes.register(Some(&route()));
        assert!(routes.only().is_some());
        let second = routes.register(Some(&route()));
        assert!(routes.only().is_none(), "two in flight: the policy answers");
        drop(first);
        assert!(routes.only().is_some());
        drop(second);
        assert!(routes.only().is_none());
    }
}
