//! Downstream sessions: the gateway's own state per MCP client session (a
//! map entry, not an upstream session), their idle expiry, and the index
//! from `(server, scope)` to the sessions that used it, for notifications.
//!
//! A session ends once, by `DELETE` (`deleted`), idleness past
//! `gateway.session_idle_ttl` (`idle_timeout`) or shutdown (`shutdown`);
//! ending it cancels its requests in flight and closes its session scope
//! (`~s:{id}`) upstream. Named scopes outlive it. Ended ids are remembered
//! (bounded), so a client reusing one gets 404 and re-initializes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::session_id::ClientCaps;
use crate::runtime::Runtime;
use crate::telemetry::Metrics;

/// Ended session ids remembered, so their reuse gets 404.
const MAX_ENDED: usize = 100_000;

/// Why a downstream session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The client sent `DELETE`.
    Deleted,
    /// Unused past `gateway.session_idle_ttl`.
    IdleTimeout,
    /// The agent shut down.
    Shutdown,
}

impl EndReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Log levels, lowest first (`logging/setLevel`).
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// One downstream session.
pub(crate) struct Downstream {
    pub(crate) id: Arc<str>,
    pub(crate) server: Arc<str>,
    pub(crate) version: &'static str,
    pub(crate) caps: ClientCaps,
    opened: Instant,
    last_used: Mutex<Instant>,
    /// Requests in flight plus open GET streams: a busy session never idles out.
    busy: AtomicUsize,
    /// 0: no `logging/setLevel` yet; else 1 + the index in [`LOG_LEVELS`].
    log_level: AtomicU8,
    pub(crate) outbox: Outbox,
    /// The cancel tokens of its requests in flight, by id key.
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    /// The server's requests awaiting this client's answer, by id key.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// The `(server, scope)`s its requests ran in (for notifications).
    scopes: Mutex<HashSet<ServerScope>>,
    ended: AtomicBool,
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downstream")
            .field("id", &self.id)
            .field("server", &self.server)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map edit: a poisoned lock is consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Downstream {
    /// Marks the session used now, and busy until the guard drops.
    pub(crate) fn use_now(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        *lock(&self.last_used) = Instant::now();
        BusyGuard(self.clone())
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.busy.load(Ordering::Acquire) == 0).then(|| lock(&self.last_used).elapsed())
    }

    /// Applies `logging/setLevel`; false for an unknown level.
    pub(crate) fn set_log_level(&self, level: &str) -> bool {
        let Some(index) = LOG_LEVELS.iter().position(|l| *l == level) else {
            return false;
        };
        self.log_level.store(index as u8 + 1, Ordering::Release);
        true
    }

    /// True if a log message at `level` passes this session's `logging/setLevel`.
    pub(crate) fn wants_log(&self, level: &str) -> bool {
        let set = self.log_level.load(Ordering::Acquire);
        let at = LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        set == 0 || at + 1 >= usize::from(set)
    }

    /// Registers a request in flight; false if its id is already in flight.
    pub(crate) fn start_request(&self, key: &str, cancel: &CancellationToken) -> bool {
        let mut in_flight = lock(&self.in_flight);
        if in_flight.contains_key(key) {
            return false;
        }
        in_flight.insert(key.to_owned(), cancel.clone());
        true
    }

    /// Forgets a finished request.
    pub(crate) fn end_request(&self, key: &str) {
        lock(&self.in_flight).remove(key);
    }

    /// `notifications/cancelled`: cancels exactly the request `key`.
    pub(crate) fn cancel_request(&self, key: &str) -> bool {
        let token = lock(&self.in_flight).get(key).cloned();
        token.map(|t| t.cancel()).is_some()
    }

    /// Awaits the client's answer to a request of the server's with id `key`.
    pub(crate) fn expect_answer(&self, key: String) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(key, tx);
        rx
    }

    /// Hands the client's answer to whoever awaits it; false if nobody does.
    pub(crate) fn answered(&self, key: &str, body: Value) -> bool {
        let waiter = lock(&self.pending).remove(key);
        waiter.is_some_and(|tx| tx.send(body).is_ok())
    }

    /// Forgets an answer nobody will give (the request ended first).
    pub(crate) fn forget_answer(&self, key: &str) {
        lock(&self.pending).remove(key);
    }
}

/// Keeps a session busy (not idle) while held.
pub(crate) struct BusyGuard(Arc<Downstream>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *lock(&self.0.last_used) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a session cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The id ended here before (404).
    Ended,
    /// `gateway.max_sessions` are open (503).
    Full,
}

/// An upstream server and a scope.
type ServerScope = (Arc<str>, Arc<str>);

/// Session ids by the `(server, scope)` their requests ran in.
type ScopeIndex = HashMap<ServerScope, HashSet<Arc<str>>>;

/// Ended ids, for lookup and in order of ending (the oldest forgotten first).
type EndedIds = (HashSet<Arc<str>>, VecDeque<Arc<str>>);

/// Every downstream session of the gateway.
pub(crate) struct Sessions {
    map: Mutex<HashMap<Arc<str>, Arc<Downstream>>>,
    by_scope: Mutex<ScopeIndex>,
    ended: Mutex<EndedIds>,
    max: usize,
    pub(crate) idle_ttl: Duration,
    runtime: Runtime,
}

impl Sessions {
    pub(crate) fn new(runtime: Runtime, max: usize, idle_ttl: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            by_scope: Mutex::new(HashMap::new()),
            ended: Mutex::new((HashSet::new(), VecDeque::new())),
            max,
            idle_ttl,
            runtime,
        }
    }

    fn metrics(&self) -> &Metrics {
        self.runtime.metrics()
    }

    /// The session `id` of `server`, created from its (verified) claims when
    /// this replica has not seen it yet.
    pub(crate) fn get_or_create(
        &self,
        id: &str,
        server: &Arc<str>,
        version: &'static str,
        caps: ClientCaps,
    ) -> Result<Arc<Downstream>, Unavailable> {
        if lock(&self.ended).0.contains(id) {
            return Err(Unavailable::Ended);
        }
        let mut map = lock(&self.map);
        if let Some(session) = map.get(id) {
            return Ok(session.clone());
        }
        if map.len() >= self.max {
            return Err(Unavailable::Full);
        }
        let session = Arc::new(Downstream {
            id: Arc::from(id),
            server: server.clone(),
            version,
            caps,
            opened: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            log_level: AtomicU8::new(0),
            outbox: Outbox::default(),
            in_flight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            scopes: Mutex::new(HashSet::new()),
            ended: AtomicBool::new(false),
        });
        map.insert(session.id.clone(), session.clone());
        drop(map);
        self.metrics()
            .gateway_sessions_active
            .with_label_values(&[server.as_ref()])
            .inc();
        Ok(session)
    }

    /// The open session `id` (its id was verified when it was created).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Downstream>> {
        lock(&self.map).get(id).cloned()
    }

    /// True if `gateway.max_sessions` are open.
    pub(crate) fn is_full(&self) -> bool {
        lock(&self.map).len() >= self.max
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Every session of the route `server`.
    pub(crate) fn of_server(&self, server: &str) -> Vec<Arc<Downstream>> {
        lock(&self.map)
            .values()
            .filter(|s| s.server.as_ref() == server)
            .cloned()
            .collect()
    }

    /// Records that `session` ran a request on `server` in `scope`.
    pub(crate) fn bind(&self, session: &Downstream, server: &Arc<str>, scope: &Arc<str>) {
        let key = (server.clone(), scope.clone());
        if !lock(&session.scopes).insert(key.clone()) {
            return;
        }
        lock(&self.by_scope)
            .entry(key)
            .or_default()
            .insert(session.id.clone());
    }

    /// The sessions that ran requests in `(server, scope)`.
    pub(crate) fn bound(&self, server: &str, scope: &str) -> Vec<Arc<Downstream>> {
        let key = (Arc::from(server), Arc::from(scope));
        let ids: Vec<Arc<str>> = match lock(&self.by_scope).get(&key) {
            Some(ids) => ids.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let map = lock(&self.map);
        ids.iter().filter_map(|id| map.get(id).cloned()).collect()
    }

    /// Ends session `id` (and remembers the id as ended); false if it was not open here.
    pub(crate) fn end(&self, id: &str, reason: EndReason) -> bool {
        self.remember_ended(id);
        let Some(session) = lock(&self.map).remove(id) else {
            // Valid but never seen here (another replica's): its session
            // scope may still hold upstream sessions here.
            self.close_session_scope(id);
            return false;
        };
        self.finish(&session, reason);
        true
    }

    fn finish(&self, session: &Downstream, reason: EndReason) {
        if session.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let keys: Vec<ServerScope> = lock(&session.scopes).drain().collect();
        {
            let mut by_scope = lock(&self.by_scope);
            for key in keys {
                if let Some(ids) = by_scope.get_mut(&key) {
                    ids.remove(&session.id);
                    if ids.is_empty() {
                        by_scope.remove(&key);
                    }
                }
            }
        }
        for (_, token) in lock(&session.in_flight).drain() {
            token.cancel();
        }
        lock(&session.pending).clear();
        session.outbox.close();
        let server = session.server.as_ref();
        let metrics = self.metrics();
        metrics
            .gateway_sessions_active
            .with_label_values(&[server])
            .dec();
        metrics
            .gateway_sessions_closed
            .with_label_values(&[server, reason.as_str()])
            .inc();
        metrics
            .gateway_session_duration
            .with_label_values(&[server, reason.as_str()])
            .observe(session.opened.elapsed().as_secs_f64());
        self.close_session_scope(&session.id);
    }

    /// Closes the upstream sessions of the session scope `~s:{id}`, in the background.
    fn close_session_scope(&self, id: &str) {
        let runtime = self.runtime.clone();
        let scope = format!("~s:{id}");
        tokio::spawn(async move {
            let _ = runtime.close_scope(&scope).await;
        });
    }

    /// True if session `id` ended here.
    pub(crate) fn has_ended(&self, id: &str) -> bool {
        lock(&self.ended).0.contains(id)
    }

    fn remember_ended(&self, id: &str) {
        let mut ended = lock(&self.ended);
        let id: Arc<str> = Arc::from(id);
        if ended.0.insert(id.clone()) {
            ended.1.push_back(id);
        }
        while ended.1.len() > MAX_ENDED {
            if let Some(oldest) = ended.1.pop_front() {
                ended.0.remove(&oldest);
            }
        }
    }

    /// Ends every session idle past the TTL; returns how many ended.
    pub(crate) fn sweep(&self) -> usize {
        let idle: Vec<Arc<str>> = lock(&self.map)
            .values()
            .filter(|s| s.idle_for().is_some_and(|idle| idle >= self.idle_ttl))
            .map(|s| s.id.clone())
            .collect();
        idle.iter()
            .filter(|id| self.end(id, EndReason::IdleTimeout))
            .count()
    }

    /// Ends every session (`shutdown`).
    pub(crate) fn end_all(&self) -> usize {
        let all: Vec<Arc<Downstream>> = lock(&self.map).drain().map(|(_, s)| s).collect();
        for session in &all {
            self.finish(session, EndReason::Shutdown);
        }
        all.len()
    }
}
