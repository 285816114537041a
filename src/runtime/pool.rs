//! Sessions keyed by `(server, scope)`: single-flight open, global and per-server
//! caps with LRU eviction of idle sessions, a bounded wait when every session is
//! busy, idle TTL and max lifetime, and the one `retire` path that takes a session
//! out of every map before closing it.
//!
//! Locking: each server's slot map has its own mutex, held only for map lookups
//! and edits (never across an await). A slot's checkouts (callers using it) are
//! added only under that lock, so an evictor that sees a slot idle under the lock
//! knows nobody can start using the session before it is removed.
//!
//! Capacity is accounted by ownership, not by hand. The global count, its cap
//! and the waiters belong to one [`Capacity`]; each unit of it is a guard held by
//! a slot's entry in its server's map ([`SlotMap`]). Every way out of a map
//! (eviction, the sweeper, `retire`, `take_pooled`, a failed open) drops the
//! entry, and the drop frees the unit and wakes the waiters, so no path can
//! forget either, and "units reserved == slots in the maps" holds at every
//! moment outside a map's lock. A [`Checkout`] going idle wakes the waiters too,
//! since an idle session can be evicted. A waiter registers before it looks for
//! room (`Capacity::listen`), so a change between its look and its wait is not
//! missed; a caller that finds its slot never touches the waiter machinery.

mod capacity;
mod slot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{Error, ErrorKind};
use super::server::ServerEntry;
use super::session::{CloseOutcome, CloseReason, Session};
use super::transport::Connector;
use crate::telemetry::Telemetry;
use crate::telemetry::events::{OpenFailed, SessionOpened};
use crate::telemetry::spans::{self, McpSpan};
use capacity::Capacity;
use slot::{Cap, Claim, Slot};
pub(crate) use slot::{Checkout, SlotMap};

/// How long a close may take before the stdio process group is killed.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// All sessions of a runtime.
pub(crate) struct Pool {
    pub(crate) servers: BTreeMap<String, Arc<ServerEntry>>,
    owned: Mutex<HashMap<u64, Arc<Session>>>,
    /// `pool.max_sessions`, the units held by the slots of every server, and
    /// the callers waiting for one.
    capacity: Arc<Capacity>,
    queue_timeout: Duration,
    max_lifetime: Duration,
    next_id: AtomicU64,
    connector: Connector,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) telemetry: Arc<Telemetry>,
}

/// What `Pool::shutdown` did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Drained {
    pub(crate) sessions_closed: usize,
    pub(crate) forced_kills: usize,
    pub(crate) timed_out: bool,
}

impl Pool {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        servers: BTreeMap<String, Arc<ServerEntry>>,
        max_total: usize,
        queue_timeout: Duration,
        max_lifetime: Duration,
        connector: Connector,
        tracker: TaskTracker,
        telemetry: Arc<Telemetry>,
    ) -> Pool {
        Pool {
            servers,
            owned: Mutex::new(HashMap::new()),
            capacity: Capacity::new(max_total),
            queue_timeout,
            max_lifetime,
            next_id: AtomicU64::new(1),
            connector,
            shutdown: CancellationToken::new(),
            tracker,
            telemetry,
        }
    }

    pub(crate) fn server(&self, name: &str) -> Result<&Arc<ServerEntry>, Error> {
        self.servers.get(name).ok_or_else(|| Error::UnknownServer {
            server: name.to_owned(),
        })
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The pooled session for `(server, scope)`, opened if needed (single flight).
    /// Waits up to `pool.queue_timeout` for a slot when every session is busy at a cap.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        entry: &Arc<ServerEntry>,
        scope: &str,
    ) -> Result<(Arc<Session>, Checkout), Error> {
        let claim = match self.try_claim(entry, scope)? {
            Some(claim) => claim,
            // Boxed: the rare wait would otherwise enlarge every call's future.
            None => Box::pin(self.wait_for_room(entry, scope)).await?,
        };
        let slot = claim.checkout.slot();
        if claim.created {
            // Created here, in the caller's context, so the caller's span is its parent.
            let span = spans::initialize(entry.span_target(scope));
            self.spawn_open(entry.clone(), Arc::from(scope), slot.clone(), span);
        }
        let session = match slot.opened() {
            Some(session) => session,
            // Boxed: waiting for an open is rare, and would enlarge every call's future.
            None => Box::pin(slot.ready()).await?,
        };
        Ok((session, claim.checkout))
    }

    /// Checks out the slot of `(entry, scope)`, evicting the least recently used
    /// idle session when a cap leaves no room. `None` if every session under the
    /// cap is busy (or still opening).
    fn try_claim(
        self: &Arc<Self>,
        entry: &Arc<ServerEntry>,
        scope: &str,
    ) -> Result<Option<Claim>, Error> {
        loop {
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let checked = entry
                .slots()
                .check_out(scope, entry.max_sessions, &self.capacity);
            match checked {
                Ok(claim) => return Ok(Some(claim)),
                Err(cap) if self.evict_lru(entry, cap) => {}
                Err(_) => return Ok(None),
            }
        }
    }

    /// Waits, up to `pool.queue_timeout`, until a slot frees or a session goes
    /// idle, then claims the slot of `(entry, scope)`.
    async fn wait_for_room(
        self: &Arc<Self>,
        entry: &Arc<ServerEntry>,
        scope: &str,
    ) -> Result<Claim, Error> {
        let started = Instant::now();
        loop {
            let listener = self.capacity.listen();
            if let Some(claim) = self.try_claim(entry, scope)? {
                return Ok(claim);
            }
            let waited = started.elapsed();
            let Some(left) = self
                .queue_timeout
                .checked_sub(waited)
                .filter(|d| !d.is_zero())
            else {
                return Err(Error::PoolExhausted {
                    server: entry.name.to_string(),
                    waited,
                });
            };
            tokio::select! {
                () = listener.changed() => {}
                () = tokio::time::sleep(left) => {}
                () = self.shutdown.cancelled() => {}
            }
        }
    }

    /// Opens a pooled session in its own task, so that a caller giving up (its
    /// deadline, its HTTP client hanging up) never leaves a half-open session.
    fn spawn_open(
        self: &Arc<Self>,
        entry: Arc<ServerEntry>,
        scope: Arc<str>,
        slot: Arc<Slot>,
        span: McpSpan,
    ) {
        let pool = self.clone();
        self.tracker.spawn(async move {
            let result = tokio::select! {
                result = pool.open_session(&entry, scope.clone(), false, span) => result,
                () = pool.shutdown.cancelled() => Err(Error::ShuttingDown),
            };
            match result {
                Ok(session) => pool.publish(&slot, session).await,
                Err(error) => {
                    // Out of the map first, so that a waiter woken by the error
                    // that tries again opens anew.
                    entry
                        .slots()
                        .remove_if(&scope, |listed| Arc::ptr_eq(listed, &slot));
                    slot.set_failed(error);
                }
            }
        });
    }

    /// Hands a freshly opened session to its slot's callers, and closes it at once
    /// if the slot left the map while it opened (closed scope, shutdown).
    async fn publish(&self, slot: &Arc<Slot>, session: Arc<Session>) {
        slot.set_ready(session.clone());
        let reason = if self.is_shutting_down() {
            self.forget(&session);
            CloseReason::Shutdown
        } else if session.server.slots().lists(&session.scope, slot) {
            return;
        } else {
            CloseReason::ScopeClosed
        };
        session.close(reason, None, CLOSE_GRACE).await;
    }

    /// Connects and initializes one session, emitting the opened or failed event.
    pub(crate) async fn open_session(
        &self,
        entry: &Arc<ServerEntry>,
        scope: Arc<str>,
        owned: bool,
        span: McpSpan,
    ) -> Result<Arc<Session>, Error> {
        let started = Instant::now();
        let connected = self.connector.connect(entry, &scope).await;
        match connected {
            Ok(connection) => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let session = Arc::new(Session::new(id, entry.clone(), scope, owned, connection));
                SessionOpened {
                    server: &entry.name,
                    network_transport: entry.kind.network_transport(),
                    scope: &session.scope,
                    protocol_version: &session.protocol_version,
                    session_id: session.mcp_session_id().as_deref(),
                    span: &span,
                    duration: started.elapsed(),
                }
                .emit(&self.telemetry);
                if owned {
                    self.owned
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id, session.clone());
                }
                Ok(session)
            }
            Err(error) => {
                OpenFailed {
                    server: &entry.name,
                    transport: entry.kind.as_str(),
                    network_transport: entry.kind.network_transport(),
                    scope: &scope,
                    error_type: error.kind(),
                    message: &error.to_string(),
                    span: &span,
                    duration: started.elapsed(),
                }
                .emit(&self.telemetry);
                Err(error)
            }
        }
    }

    /// The one way a session ends: out of every map, then closed.
    pub(crate) async fn retire(
        &self,
        session: &Arc<Session>,
        reason: CloseReason,
        error: Option<ErrorKind>,
    ) -> CloseOutcome {
        self.forget(session);
        session.close(reason, error, CLOSE_GRACE).await
    }

    /// Takes a session out of every map without closing it.
    pub(crate) fn forget(&self, session: &Arc<Session>) {
        if session.owned {
            self.owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&session.id);
            return;
        }
        session
            .server
            .slots()
            .remove_if(&session.scope, |slot| slot.holds(session));
    }

    /// Retires a session in the background (eviction, sweeps, leak repair).
    pub(crate) fn retire_in_background(
        self: &Arc<Self>,
        session: Arc<Session>,
        reason: CloseReason,
        error: Option<ErrorKind>,
    ) {
        self.forget(&session);
        self.close_in_background(session, reason, error);
    }

    /// Closes a session already out of every map, in a task of the pool.
    fn close_in_background(
        &self,
        session: Arc<Session>,
        reason: CloseReason,
        error: Option<ErrorKind>,
    ) {
        self.tracker.spawn(async move {
            session.close(reason, error, CLOSE_GRACE).await;
        });
    }

    /// Closes the least recently used idle session under `cap`. False if every
    /// session there is busy (or still opening).
    fn evict_lru(&self, entry: &Arc<ServerEntry>, cap: Cap) -> bool {
        let Some(session) = self.least_recently_used(entry, cap) else {
            return false;
        };
        // Idle when chosen, but only the look under the lock counts.
        let removed = session.server.slots().remove_if(&session.scope, |slot| {
            slot.holds(&session) && slot.idle_session().is_some()
        });
        if removed.is_some() {
            self.close_in_background(session, CloseReason::Evicted, None);
        }
        true // evicted, or it got busy or went away: the caller looks again
    }

    /// The idle session unused for longest, on `entry` (its own cap) or on any
    /// server (the global cap).
    fn least_recently_used(&self, entry: &Arc<ServerEntry>, cap: Cap) -> Option<Arc<Session>> {
        let servers: Vec<&Arc<ServerEntry>> = match cap {
            Cap::Server => vec![entry],
            Cap::Global => self.servers.values().collect(),
        };
        let mut idle = Vec::new();
        for server in servers {
            idle.extend(
                server
                    .slots()
                    .slots()
                    .filter_map(|s| s.idle_session())
                    .cloned(),
            );
        }
        idle.into_iter().max_by_key(|session| session.idle())
    }

    /// One pass of the sweeper: closes idle sessions past their TTL, sessions past
    /// `max_lifetime` once idle, and sessions whose server went away.
    pub(crate) fn sweep(self: &Arc<Self>) {
        for entry in self.servers.values() {
            let mut expired = Vec::new();
            entry.slots().remove_where(|_, slot| {
                let Some(session) = slot.idle_session() else {
                    return false;
                };
                let Some(reason) = self.expiry(entry, session) else {
                    return false;
                };
                expired.push((session.clone(), reason));
                true
            });
            for (session, reason) in expired {
                let error =
                    (reason == CloseReason::ServerExit).then_some(ErrorKind::TransportClosed);
                self.close_in_background(session, reason, error);
            }
        }
    }

    /// Why an idle session of `entry` should close now, if it should.
    fn expiry(&self, entry: &ServerEntry, session: &Session) -> Option<CloseReason> {
        if session.transport_closed() {
            Some(CloseReason::ServerExit)
        } else if session.idle() >= entry.idle_ttl {
            Some(CloseReason::IdleTimeout)
        } else if session.age() >= self.max_lifetime {
            Some(CloseReason::MaxLifetime)
        } else {
            None
        }
    }

    /// How often the sweeper runs: often enough for the shortest TTL.
    pub(crate) fn sweep_interval(&self) -> Duration {
        let shortest = self
            .servers
            .values()
            .map(|e| e.idle_ttl)
            .chain([self.max_lifetime])
            .min()
            .unwrap_or_default();
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Removes and returns the pooled sessions matching `select(server, scope)`
    /// (busy ones included; slots still opening are removed, and their session
    /// closes as it opens). Their capacity is free at once.
    pub(crate) fn take_pooled(&self, select: impl Fn(&str, &str) -> bool) -> Vec<Arc<Session>> {
        let mut taken = Vec::new();
        for entry in self.servers.values() {
            let removed = entry
                .slots()
                .remove_where(|scope, _| select(&entry.name, scope));
            taken.extend(removed.iter().filter_map(|slot| slot.session().cloned()));
        }
        taken
    }

    /// Every live session, pooled and owned.
    pub(crate) fn all_sessions(&self) -> Vec<Arc<Session>> {
        let mut sessions: Vec<Arc<Session>> = self
            .servers
            .values()
            .flat_map(|entry| {
                entry
                    .slots()
                    .slots()
                    .filter_map(|slot| slot.session().cloned())
                    .collect::<Vec<_>>()
            })
            .collect();
        sessions.extend(
            self.owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned(),
        );
        sessions.retain(|s| !s.is_closed());
        sessions
    }

    /// Sizes of the internal maps: (pooled slots, owned sessions, reserved capacity).
    pub(crate) fn map_sizes(&self) -> (usize, usize, usize) {
        let slots = self.servers.values().map(|e| e.slots().len()).sum();
        let owned = self
            .owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        (slots, owned, self.capacity.reserved())
    }

    /// Closes every session and waits for every task, within `deadline`. After it
    /// returns no stdio server of this pool is running, whatever happened.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> Drained {
        let started = Instant::now();
        self.shutdown.cancel();
        let mut sessions = self.take_pooled(|_, _| true);
        sessions.extend(
            self.owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .map(|(_, s)| s),
        );
        // Each close must finish (group killed, `closed` event emitted) before the
        // deadline below cuts it off: with grace == deadline the two timers race,
        // and a close cut off mid-way never emits its event (the gauge stays up).
        let grace = CLOSE_GRACE.min(deadline.mul_f64(0.9));
        let closes = futures::future::join_all(
            sessions
                .iter()
                .map(|s| s.close(CloseReason::Shutdown, None, grace)),
        );
        let mut drained = Drained {
            sessions_closed: sessions.len(),
            ..Drained::default()
        };
        let finished = match tokio::time::timeout(deadline, closes).await {
            Ok(outcomes) => {
                drained.forced_kills = outcomes.iter().filter(|o| o.forced_kill).count();
                true
            }
            Err(_) => {
                drained.timed_out = true;
                false
            }
        };
        // Whatever happened, no process group outlives shutdown. A finished close
        // already killed (and counted) its group, and its leader may not be reaped
        // yet, so only kills after unfinished closes count here.
        for session in &sessions {
            if session.kill_now() && !finished {
                drained.forced_kills += 1;
            }
        }
        self.tracker.close();
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, self.tracker.wait())
            .await
            .is_err()
        {
            drained.timed_out = true;
        }
        drained
    }
}
