//! Sessions keyed by `(server, scope)`: single-flight open, global and per-server
//! caps with LRU eviction of idle sessions, a bounded wait when every session is
//! busy, idle TTL and max lifetime, and the one `retire` path that takes a session
//! out of every map before closing it.
//!
//! Locking: each server's slot map has its own mutex, held only for map lookups
//! and edits (never across an await). A slot's `checkouts` (callers using it) are
//! incremented only under that lock, so an evictor that sees `checkouts == 0` under the
//! lock knows nobody can start using the session before it is removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::Error;
use super::server::ServerEntry;
use super::session::{CloseOutcome, CloseReason, Session};
use super::transport::Connector;
use crate::telemetry::Telemetry;
use crate::telemetry::events::{OpenFailed, SessionOpened};
use crate::telemetry::spans::{self, McpSpan};

/// How long a close may take before the stdio process group is killed.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A pooled session's place in its server's map, present from the start of its open.
pub(crate) struct Slot {
    checkouts: AtomicUsize,
    session: OnceLock<Arc<Session>>,
    state: watch::Sender<SlotState>,
}

#[derive(Clone)]
enum SlotState {
    Opening,
    Ready,
    Failed(Error),
}

impl Slot {
    fn new() -> Slot {
        Slot {
            checkouts: AtomicUsize::new(0),
            session: OnceLock::new(),
            state: watch::channel(SlotState::Opening).0,
        }
    }

    fn is_idle_session(&self) -> Option<&Arc<Session>> {
        self.session
            .get()
            .filter(|_| self.checkouts.load(Ordering::Acquire) == 0)
    }

    fn holds(&self, session: &Arc<Session>) -> bool {
        self.session.get().is_some_and(|s| Arc::ptr_eq(s, session))
    }
}

/// Keeps a slot in use; dropping it makes the session evictable again.
pub(crate) struct Checkout {
    slot: Arc<Slot>,
    freed: Arc<Notify>,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.slot.checkouts.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.freed.notify_waiters();
        }
    }
}

enum Reservation {
    Existing(Arc<Slot>),
    Created(Arc<Slot>),
    Full(Cap),
}

#[derive(Clone, Copy)]
enum Cap {
    Server,
    Global,
}

/// All sessions of a runtime.
pub(crate) struct Pool {
    pub(crate) servers: BTreeMap<String, Arc<ServerEntry>>,
    owned: Mutex<HashMap<u64, Arc<Session>>>,
    total: AtomicUsize,
    max_total: usize,
    queue_timeout: Duration,
    max_lifetime: Duration,
    slot_freed: Arc<Notify>,
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
            total: AtomicUsize::new(0),
            max_total,
            queue_timeout,
            max_lifetime,
            slot_freed: Arc::new(Notify::new()),
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
        let waited_since = Instant::now();
        loop {
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let (slot, created) = match self.reserve(entry, scope) {
                Reservation::Existing(slot) => (slot, false),
                Reservation::Created(slot) => (slot, true),
                Reservation::Full(cap) => {
                    if self.evict_lru(entry, cap) {
                        continue;
                    }
                    // Register for wake-ups before looking again, so a slot freed
                    // in between is not missed. (Only here: the hot path, a
                    // session that exists, never touches the Notify.)
                    let freed = self.slot_freed.notified();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    if !self.is_full(entry) {
                        continue;
                    }
                    let waited = waited_since.elapsed();
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
                    let _ = tokio::time::timeout(left, freed).await;
                    continue;
                }
            };
            let checkout = Checkout {
                slot: slot.clone(),
                freed: self.slot_freed.clone(),
            };
            if created {
                // Created here, in the caller's context, so the caller's span is its parent.
                let span = spans::initialize(entry.span_target(scope));
                self.spawn_open(entry.clone(), Arc::from(scope), slot.clone(), span);
            }
            return Ok((self.await_slot(&slot).await?, checkout));
        }
    }

    /// Whether a new key would find `entry` (or the pool) full right now.
    fn is_full(&self, entry: &ServerEntry) -> bool {
        entry.slots().len() >= entry.max_sessions
            || self.total.load(Ordering::Acquire) >= self.max_total
    }

    fn reserve(&self, entry: &ServerEntry, scope: &str) -> Reservation {
        let mut slots = entry.slots();
        if let Some(slot) = slots.get(scope) {
            slot.checkouts.fetch_add(1, Ordering::AcqRel);
            return Reservation::Existing(slot.clone());
        }
        if slots.len() >= entry.max_sessions {
            return Reservation::Full(Cap::Server);
        }
        let reserved = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if reserved.is_err() {
            return Reservation::Full(Cap::Global);
        }
        let slot = Arc::new(Slot::new());
        slot.checkouts.fetch_add(1, Ordering::AcqRel);
        slots.insert(Arc::from(scope), slot.clone());
        Reservation::Created(slot)
    }

    async fn await_slot(&self, slot: &Slot) -> Result<Arc<Session>, Error> {
        if let Some(session) = slot.session.get() {
            return Ok(session.clone());
        }
        let mut state = slot.state.subscribe();
        let outcome = state
            .wait_for(|s| !matches!(s, SlotState::Opening))
            .await
            .map(|s| s.clone());
        match outcome {
            Ok(SlotState::Ready) => slot.session.get().cloned().ok_or(Error::ShuttingDown),
            Ok(SlotState::Failed(error)) => Err(error),
            Ok(SlotState::Opening) | Err(_) => Err(Error::ShuttingDown),
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
                Ok(session) => {
                    let _ = slot.session.set(session.clone());
                    let still_listed = entry
                        .slots()
                        .get(&scope)
                        .is_some_and(|s| Arc::ptr_eq(s, &slot));
                    slot.state.send_replace(SlotState::Ready);
                    if !still_listed || pool.is_shutting_down() {
                        let reason = if pool.is_shutting_down() {
                            CloseReason::Shutdown
                        } else {
                            CloseReason::ScopeClosed
                        };
                        session.close(reason, None, CLOSE_GRACE).await;
                    }
                }
                Err(error) => {
                    pool.unlist(&entry, &scope, &slot);
                    slot.state.send_replace(SlotState::Failed(error));
                }
            }
        });
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
        let connected = self.connector.connect(entry).await;
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

    /// Removes `slot` from its server's map (if it is still there) and frees its capacity.
    fn unlist(&self, entry: &ServerEntry, scope: &str, slot: &Arc<Slot>) -> bool {
        let removed = {
            let mut slots = entry.slots();
            if slots.get(scope).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                slots.remove(scope)
            } else {
                None
            }
        };
        if removed.is_some() {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.slot_freed.notify_waiters();
        }
        removed.is_some()
    }

    /// The one way a session ends: out of every map, then closed.
    pub(crate) async fn retire(
        &self,
        session: &Arc<Session>,
        reason: CloseReason,
        error: Option<super::ErrorKind>,
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
        let slot = session
            .server
            .slots()
            .get(&session.scope)
            .filter(|s| s.holds(session))
            .cloned();
        if let Some(slot) = slot {
            self.unlist(&session.server, &session.scope, &slot);
        }
    }

    /// Retires a session in the background (eviction, sweeps, leak repair).
    pub(crate) fn retire_in_background(
        self: &Arc<Self>,
        session: Arc<Session>,
        reason: CloseReason,
        error: Option<super::ErrorKind>,
    ) {
        self.forget(&session);
        self.tracker.spawn(async move {
            session.close(reason, error, CLOSE_GRACE).await;
        });
    }

    /// Closes the least recently used idle session under `cap`. False if every
    /// session there is busy (or still opening).
    fn evict_lru(self: &Arc<Self>, entry: &Arc<ServerEntry>, cap: Cap) -> bool {
        let candidates: Vec<&Arc<ServerEntry>> = match cap {
            Cap::Server => vec![entry],
            Cap::Global => self.servers.values().collect(),
        };
        let mut best: Option<(Duration, Arc<Session>)> = None;
        for server in candidates {
            for slot in server.slots().values() {
                if let Some(session) = slot.is_idle_session() {
                    let idle = session.idle();
                    if best.as_ref().is_none_or(|(most, _)| idle > *most) {
                        best = Some((idle, session.clone()));
                    }
                }
            }
        }
        let Some((_, session)) = best else {
            return false;
        };
        let server = &session.server;
        let removed = {
            let mut slots = server.slots();
            let still_idle = slots
                .get(&session.scope)
                .is_some_and(|s| s.holds(&session) && s.is_idle_session().is_some());
            if still_idle {
                slots.remove(&session.scope)
            } else {
                None
            }
        };
        if removed.is_none() {
            return true; // it got busy or went away; the caller looks again
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.tracker.spawn(async move {
            session.close(CloseReason::Evicted, None, CLOSE_GRACE).await;
        });
        true
    }

    /// One pass of the sweeper: closes idle sessions past their TTL, sessions past
    /// `max_lifetime` once idle, and sessions whose server went away.
    pub(crate) fn sweep(self: &Arc<Self>) {
        for entry in self.servers.values() {
            let mut expired = Vec::new();
            {
                let mut slots = entry.slots();
                slots.retain(|_, slot| {
                    let Some(session) = slot.is_idle_session() else {
                        return true;
                    };
                    let reason = if session.transport_closed() {
                        CloseReason::ServerExit
                    } else if session.idle() >= entry.idle_ttl {
                        CloseReason::IdleTimeout
                    } else if session.age() >= self.max_lifetime {
                        CloseReason::MaxLifetime
                    } else {
                        return true;
                    };
                    expired.push((session.clone(), reason));
                    false
                });
            }
            for (session, reason) in expired {
                self.total.fetch_sub(1, Ordering::AcqRel);
                self.slot_freed.notify_waiters();
                let error = (reason == CloseReason::ServerExit)
                    .then_some(super::ErrorKind::TransportClosed);
                self.tracker.spawn(async move {
                    session.close(reason, error, CLOSE_GRACE).await;
                });
            }
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

    /// Removes and returns the pooled sessions matching `select(server, scope)`.
    pub(crate) fn take_pooled(&self, select: impl Fn(&str, &str) -> bool) -> Vec<Arc<Session>> {
        let mut taken = Vec::new();
        for entry in self.servers.values() {
            let mut removed = Vec::new();
            entry.slots().retain(|scope, slot| {
                if select(&entry.name, scope) {
                    removed.push(slot.clone());
                    false
                } else {
                    true
                }
            });
            for slot in removed {
                self.total.fetch_sub(1, Ordering::AcqRel);
                if let Some(session) = slot.session.get() {
                    taken.push(session.clone());
                }
            }
        }
        if !taken.is_empty() {
            self.slot_freed.notify_waiters();
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
                    .values()
                    .filter_map(|slot| slot.session.get().cloned())
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
        (slots, owned, self.total.load(Ordering::Acquire))
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
