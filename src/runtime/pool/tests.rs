//! The pool's capacity accounting under paused time, against the builtin demo
//! server (in-process, over an in-memory pipe).
//!
//! Paused time works with the builtin server from the start: its `initialize` and
//! close are messages through a `tokio::io::duplex` pipe between tasks of this
//! runtime, with no socket, thread or child process, so the runtime is never idle
//! while one is under way and the clock cannot jump past a `connect_timeout`.
//! Time moves only when every task waits: at `tokio::time::advance` and `settle`,
//! or at a timer of the pool itself (the queue timeout). Nothing here runs the
//! background sweeper; the tests call `Pool::sweep` themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::capacity::Capacity;
use super::{Checkout, Pool};
use crate::config::{Config, ServerConfig};
use crate::runtime::error::{Error, ErrorKind};
use crate::runtime::server::ServerEntry;
use crate::runtime::session::Session;
use crate::runtime::transport::{Connector, http};
use crate::telemetry::Telemetry;

const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// A builtin demo server capped at `max_sessions` (`None`: the pool's cap).
fn demo(max_sessions: Option<usize>) -> ServerConfig {
    ServerConfig {
        max_sessions,
        ..ServerConfig::builtin()
    }
}

/// A pool of `servers` under a global cap of `max_sessions`, built as
/// `Runtime::start` builds it, without the background sweeper and warm opens.
fn pool<const N: usize>(max_sessions: usize, servers: [(&str, ServerConfig); N]) -> Arc<Pool> {
    let mut config = Config::default();
    config.pool.max_sessions = max_sessions;
    config.pool.queue_timeout = QUEUE_TIMEOUT;
    config.pool.idle_ttl = Duration::from_secs(600);
    config.pool.max_lifetime = Duration::from_secs(3600);
    config.servers = servers
        .into_iter()
        .map(|(name, spec)| (name.to_owned(), spec))
        .collect();
    pool_of(&config)
}

fn pool_of(config: &Config) -> Arc<Pool> {
    let telemetry = Arc::new(Telemetry::new().unwrap());
    let tracker = TaskTracker::new();
    let connector = Connector {
        http: http::shared_client().unwrap(),
        tracker: tracker.clone(),
    };
    let servers: BTreeMap<String, Arc<ServerEntry>> = config
        .servers
        .iter()
        .map(|(name, spec)| {
            let entry = ServerEntry::new(
                name,
                spec,
                &config.pool,
                telemetry.clone(),
                Default::default(),
            );
            (name.clone(), Arc::new(entry))
        })
        .collect();
    Arc::new(Pool::new(
        servers,
        config.pool.max_sessions,
        config.pool.queue_timeout,
        config.pool.max_lifetime,
        connector,
        tracker,
        telemetry,
    ))
}

async fn acquire(pool: &Arc<Pool>, server: &str, scope: &str) -> (Arc<Session>, Checkout) {
    let entry = pool.server(server).unwrap().clone();
    pool.acquire(&entry, scope).await.unwrap()
}

/// Opens the session of `(server, scope)` and leaves it idle.
async fn open_idle(pool: &Arc<Pool>, server: &str, scope: &str) -> Arc<Session> {
    acquire(pool, server, scope).await.0
}

/// Marks a request on `session` as just finished, as every call does.
fn use_now(session: &Session) {
    drop(session.begin_request());
}

/// Lets every ready task run (background closes, a waiter registering).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Waits (bounded) until `session`'s close has finished.
async fn closed(session: &Session) {
    tokio::time::timeout(Duration::from_secs(10), session.ended())
        .await
        .expect("the session closes");
}

fn closes(pool: &Pool, server: &str, reason: &str) -> u64 {
    pool.telemetry
        .metrics
        .sessions_closed
        .with_label_values(&[server, "inproc", reason])
        .get()
}

fn opens(pool: &Pool, server: &str) -> u64 {
    pool.telemetry
        .metrics
        .sessions_opened
        .with_label_values(&[server, "inproc", "ok"])
        .get()
}

/// Shuts the pool down and checks it left nothing behind.
async fn finish(pool: &Arc<Pool>) {
    let drained = pool.shutdown(Duration::from_secs(5)).await;
    assert!(!drained.timed_out);
    assert_eq!(pool.map_sizes(), (0, 0, 0));
}

// === reserve ===

#[test]
fn a_unit_comes_back_when_its_reservation_drops() {
    let capacity = Capacity::new(2);
    let first = capacity.try_reserve().unwrap();
    let _second = capacity.try_reserve().unwrap();
    assert!(capacity.try_reserve().is_none(), "at the cap");
    assert_eq!(capacity.reserved(), 2);
    drop(first);
    assert_eq!(capacity.reserved(), 1);
    assert!(capacity.try_reserve().is_some());
}

#[test]
fn a_listener_is_woken_by_a_change_after_it_started_listening_only() {
    let capacity = Capacity::new(1);
    let unit = capacity.try_reserve().unwrap();
    let listener = capacity.listen();
    drop(unit);
    assert!(
        listener.changed().now_or_never().is_some(),
        "the freed unit wakes it"
    );
    let later = capacity.listen();
    assert!(
        later.changed().now_or_never().is_none(),
        "its look sees the change instead"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_acquires_of_one_key_open_one_session() {
    let pool = pool(4, [("demo", demo(None))]);
    let started = Instant::now();
    let acquires = (0..8).map(|_| acquire(&pool, "demo", "A"));
    let acquired = futures::future::join_all(acquires).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no clock jump: see the module docs"
    );

    let first = &acquired[0].0;
    assert!(acquired.iter().all(|(s, _)| Arc::ptr_eq(s, first)));
    assert_eq!(opens(&pool, "demo"), 1);
    assert_eq!(pool.map_sizes(), (1, 0, 1), "one slot, one unit");
    let busy = pool.server("demo").unwrap().slots().slots().next().cloned();
    assert!(
        busy.unwrap().idle_session().is_none(),
        "checked out 8 times"
    );

    drop(acquired);
    let idle = pool
        .server("demo")
        .unwrap()
        .slots()
        .slots()
        .all(|slot| slot.idle_session().is_some());
    assert!(idle, "every checkout dropped");
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_open_fails_every_caller_and_frees_its_unit() {
    let missing = ServerConfig::stdio("/nonexistent/mcpwatch-pool-test", Vec::<String>::new());
    let pool = pool(4, [("gone", missing)]);
    let entry = pool.server("gone").unwrap().clone();
    let acquires = (0..4).map(|_| pool.acquire(&entry, "A"));
    let failed = futures::future::join_all(acquires).await;

    let kinds: Vec<_> = failed
        .iter()
        .map(|r| r.as_ref().err().map(Error::kind))
        .collect();
    assert_eq!(
        kinds,
        vec![Some(ErrorKind::ConnectFailed); 4],
        "one open, its error for all"
    );
    assert_eq!(
        pool.map_sizes(),
        (0, 0, 0),
        "the failed slot left and freed its unit"
    );
    finish(&pool).await;
}

// === eviction ===

#[tokio::test(start_paused = true)]
async fn at_the_server_cap_the_least_recently_used_idle_session_is_evicted() {
    let pool = pool(10, [("demo", demo(Some(2)))]);
    let oldest = open_idle(&pool, "demo", "A").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let unused = open_idle(&pool, "demo", "B").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    use_now(&oldest);
    tokio::time::advance(Duration::from_secs(1)).await;

    let (newest, _checkout) = acquire(&pool, "demo", "C").await;
    closed(&unused).await;
    assert_eq!(closes(&pool, "demo", "evicted"), 1);
    assert!(!oldest.is_closed(), "used more recently than B, so kept");
    assert!(!newest.is_closed());
    assert_eq!(pool.map_sizes(), (2, 0, 2));
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn at_the_global_cap_the_least_recently_used_idle_session_of_any_server_is_evicted() {
    let pool = pool(2, [("one", demo(None)), ("two", demo(None))]);
    let other_server = open_idle(&pool, "two", "X").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let same_server = open_idle(&pool, "one", "Y").await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let (_, _checkout) = acquire(&pool, "one", "Z").await;
    closed(&other_server).await;
    assert_eq!(closes(&pool, "two", "evicted"), 1);
    assert!(!same_server.is_closed());
    assert_eq!(pool.map_sizes(), (2, 0, 2));
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_checked_out_session_is_never_evicted() {
    let pool = pool(10, [("demo", demo(Some(2)))]);
    let (busy, _busy_checkout) = acquire(&pool, "demo", "A").await;
    tokio::time::advance(Duration::from_secs(60)).await;
    let idle = open_idle(&pool, "demo", "B").await;

    let (_, _checkout) = acquire(&pool, "demo", "C").await;
    closed(&idle).await;
    assert!(!busy.is_closed(), "idle longest, but checked out");
    assert_eq!(closes(&pool, "demo", "evicted"), 1);
    finish(&pool).await;
}

// === waiters woken ===

type Acquired = Result<(Arc<Session>, Checkout), Error>;

/// Starts an acquire of `(server, scope)` in its own task; it answers with the
/// outcome and how long it took.
fn spawn_acquire(pool: &Arc<Pool>, server: &str, scope: &str) -> JoinHandle<(Acquired, Duration)> {
    let pool = pool.clone();
    let entry = pool.server(server).unwrap().clone();
    let scope = scope.to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = pool.acquire(&entry, &scope).await;
        (outcome, started.elapsed())
    })
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_with_every_session_busy_a_waiter_gets_the_slot_when_a_checkout_drops() {
    let pool = pool(1, [("demo", demo(None))]);
    let (busy, checkout) = acquire(&pool, "demo", "A").await;
    let waiter = spawn_acquire(&pool, "demo", "B");
    settle().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    assert!(!waiter.is_finished(), "every session is busy");

    drop(checkout);
    let (outcome, waited) = waiter.await.unwrap();
    let (session, _checkout) = outcome.unwrap();
    assert_eq!(&*session.scope, "B");
    assert!(
        waited >= Duration::from_secs(2) && waited < QUEUE_TIMEOUT,
        "{waited:?}"
    );
    closed(&busy).await;
    assert_eq!(closes(&pool, "demo", "evicted"), 1, "A made room once idle");
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gets_the_slot_when_a_busy_session_is_taken_out() {
    let pool = pool(1, [("demo", demo(None))]);
    let (busy, _checkout) = acquire(&pool, "demo", "A").await;
    let waiter = spawn_acquire(&pool, "demo", "B");
    settle().await;
    assert!(!waiter.is_finished());

    let taken = pool.take_pooled(|_, scope| scope == "A");
    let (outcome, waited) = waiter.await.unwrap();
    assert!(outcome.is_ok());
    assert!(waited < QUEUE_TIMEOUT, "{waited:?}");
    assert_eq!(
        closes(&pool, "demo", "evicted"),
        0,
        "room came from the removal"
    );
    for session in taken {
        session
            .close(
                crate::runtime::CloseReason::Explicit,
                None,
                super::CLOSE_GRACE,
            )
            .await;
    }
    assert!(busy.is_closed());
    drop(outcome);
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_with_every_session_busy_a_waiter_gets_pool_exhausted_after_queue_timeout() {
    let pool = pool(1, [("demo", demo(None))]);
    let (_busy, _checkout) = acquire(&pool, "demo", "A").await;
    let entry = pool.server("demo").unwrap().clone();

    let started = Instant::now();
    let error = pool.acquire(&entry, "B").await.map(|_| ()).unwrap_err();
    let elapsed = started.elapsed();
    let Error::PoolExhausted { server, waited } = error else {
        panic!("not pool_exhausted: {error:?}");
    };
    assert_eq!(server, "demo");
    assert!(waited >= QUEUE_TIMEOUT && elapsed < QUEUE_TIMEOUT + Duration::from_millis(10));
    assert_eq!(
        pool.map_sizes(),
        (1, 0, 1),
        "the waiter left nothing behind"
    );
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_waiter_fails_with_shutting_down_at_shutdown() {
    let pool = pool(1, [("demo", demo(None))]);
    let (_busy, checkout) = acquire(&pool, "demo", "A").await;
    let waiter = spawn_acquire(&pool, "demo", "B");
    settle().await;

    let shutdown = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown(Duration::from_secs(5)).await })
    };
    let (outcome, waited) = waiter.await.unwrap();
    assert_eq!(
        outcome.map(|_| ()).unwrap_err().kind(),
        ErrorKind::ShuttingDown
    );
    assert!(waited < QUEUE_TIMEOUT, "{waited:?}");
    drop(checkout);
    assert!(!shutdown.await.unwrap().timed_out);
    assert_eq!(pool.map_sizes(), (0, 0, 0));
}

// === sweep ===

#[tokio::test(start_paused = true)]
async fn the_sweep_closes_sessions_idle_past_their_ttl_and_frees_their_units() {
    let ttl = Duration::from_secs(10);
    let spec = ServerConfig {
        idle_ttl: Some(ttl),
        ..demo(None)
    };
    let pool = pool(4, [("demo", spec)]);
    let idle = open_idle(&pool, "demo", "A").await;
    let (busy, _checkout) = acquire(&pool, "demo", "B").await;

    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    pool.sweep();
    assert_eq!(pool.map_sizes(), (2, 0, 2), "not yet past the TTL");

    tokio::time::advance(Duration::from_millis(1)).await;
    pool.sweep();
    assert_eq!(pool.map_sizes(), (1, 0, 1), "its unit is free at once");
    closed(&idle).await;
    assert_eq!(closes(&pool, "demo", "idle_timeout"), 1);
    assert!(!busy.is_closed(), "a checked-out session is not idle");
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn the_sweep_closes_a_session_past_max_lifetime_at_its_first_idle_moment() {
    let mut config = Config::default();
    config.pool.max_lifetime = Duration::from_secs(60);
    config.servers.insert("demo".to_owned(), demo(None));
    let pool = pool_of(&config);
    let (session, checkout) = acquire(&pool, "demo", "A").await;

    tokio::time::advance(Duration::from_secs(61)).await;
    use_now(&session);
    pool.sweep();
    assert_eq!(pool.map_sizes(), (1, 0, 1), "never cut while in use");

    drop(checkout);
    pool.sweep();
    assert_eq!(pool.map_sizes(), (0, 0, 0));
    closed(&session).await;
    assert_eq!(closes(&pool, "demo", "max_lifetime"), 1);
    finish(&pool).await;
}

// === take_pooled ===

#[tokio::test(start_paused = true)]
async fn take_pooled_removes_the_selected_sessions_and_frees_their_units() {
    let pool = pool(4, [("one", demo(None)), ("two", demo(None))]);
    open_idle(&pool, "one", "A").await;
    let (_, _checkout) = acquire(&pool, "one", "B").await;
    open_idle(&pool, "two", "A").await;

    let taken = pool.take_pooled(|server, _| server == "one");
    assert_eq!(taken.len(), 2, "busy sessions are taken too");
    assert!(taken.iter().all(|s| !s.is_closed()), "taken, not closed");
    assert_eq!(pool.map_sizes(), (1, 0, 1));
    let rest = pool.take_pooled(|_, _| true);
    assert_eq!(rest.len(), 1);
    assert_eq!(pool.map_sizes(), (0, 0, 0));

    for session in taken.iter().chain(&rest) {
        session
            .close(
                crate::runtime::CloseReason::Explicit,
                None,
                super::CLOSE_GRACE,
            )
            .await;
    }
    assert_eq!(closes(&pool, "one", "explicit"), 2);
    finish(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn take_pooled_removes_a_slot_still_opening_and_its_session_closes_as_it_opens() {
    let pool = pool(4, [("demo", demo(None))]);
    let entry = pool.server("demo").unwrap().clone();
    let mut opening = Box::pin(pool.acquire(&entry, "A"));
    assert!(
        (&mut opening).now_or_never().is_none(),
        "the open runs in its task"
    );
    assert_eq!(pool.map_sizes(), (1, 0, 1));

    assert!(pool.take_pooled(|_, _| true).is_empty(), "no session yet");
    assert_eq!(pool.map_sizes(), (0, 0, 0));
    let (session, _checkout) = opening.await.unwrap();
    closed(&session).await;
    assert_eq!(closes(&pool, "demo", "scope_closed"), 1);
    assert_eq!(pool.map_sizes(), (0, 0, 0));
    finish(&pool).await;
}
