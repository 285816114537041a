//! `Idempotency-Key`: a retried request with the same key joins the call in
//! flight or gets its kept answer, instead of running the tool again.
//!
//! # Rules
//!
//! * The first request with a key starts the call in its own task, so an
//!   orchestrator whose first attempt timed out on its side (and hung up) still
//!   finds the answer on retry.
//! * A retry while the call is in flight joins it and gets its answer.
//! * When the call finishes, its task settles the entry (not a waiting caller,
//!   who may have gone): an answer where the tool may have run (a result, a
//!   `tool_error`, or an error whose [`ErrorKind::tool_may_have_run`] is true:
//!   `timeout`, `transport_closed`, `http_status`, ...) is kept for
//!   `agent.idempotency_ttl` and replayed to every retry; an error where the tool
//!   never ran (`connect_failed`, `breaker_open`, ...) is forgotten, so a retry
//!   runs the call. A task dropped before its call finished (agent stopping)
//!   settles with `cancelled`, which is kept: the tool may have run.
//! * A key reused with a different request is refused (400), as payment APIs do.
//!
//! # Cost and memory
//!
//! The TTL is one constant, so kept answers expire in the order they finished.
//! Beside the map, a FIFO queue holds one record `(expires, key, id)` per kept
//! entry, pushed when the entry is settled. Each request first pops the expired
//! records at the queue's head; when the map is full, it pops the oldest kept
//! entries. Each record is pushed once and popped once, so expiry and eviction
//! cost O(1) amortized per request, under a mutex held for a map lookup or two.
//!
//! Memory is bounded: at most `MAX_KEYS` entries once a new key needs room (the
//! oldest kept answers go first), plus the entries in flight, which are never
//! evicted (evicting one would let its retry run the tool a second time). Those
//! are at most `agent.max_in_flight`: an entry is created by an admitted request,
//! and its task holds that request's admission slot until the call finishes (the
//! API moves the slot into the call), even when the caller hung up. Waiting
//! retries hold a channel receiver each, not an entry.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::error::ApiError;
use crate::runtime::ErrorKind;

/// Most keys remembered at once; the oldest kept answers go first beyond it.
const MAX_KEYS: usize = 100_000;

/// Longest accepted key.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A call's answer: status and JSON body (and a `Retry-After`), and the error
/// kind that decides whether it is kept.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body, serialized.
    pub body: axum::body::Bytes,
    /// `Retry-After` to pass on.
    pub retry_after: Option<String>,
    /// The error's kind; `None` for a tool's result (an `isError` one included).
    pub error: Option<ErrorKind>,
}

impl Answer {
    /// A tool's result (200), serialized.
    pub(crate) fn result(body: impl Into<axum::body::Bytes>) -> Answer {
        Answer {
            status: 200,
            body: body.into(),
            retry_after: None,
            error: None,
        }
    }

    /// Whether the tool may have run: a result, or an error of such a kind.
    /// Only such answers are kept for retries.
    pub(crate) fn may_have_run(&self) -> bool {
        self.error.is_none_or(ErrorKind::tool_may_have_run)
    }

    /// The answer of a call whose task ended before the call did.
    fn unfinished() -> Answer {
        Answer::from(ApiError::new(
            ErrorKind::Cancelled,
            "the call's task stopped before the call finished (the agent is stopping)",
        ))
    }
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Answer {
        Answer {
            status: error.kind.http_status(),
            body: error.body().into(),
            retry_after: error.retry_after,
            error: Some(error.kind),
        }
    }
}

/// Answers by idempotency key.
pub(crate) struct IdempotencyStore {
    ttl: Duration,
    max_keys: usize,
    keys: Arc<Mutex<Keys>>,
}

/// The entries, and the kept ones in expiry order.
#[derive(Default)]
struct Keys {
    entries: HashMap<Arc<str>, Entry>,
    /// One record per kept entry, oldest first (finish order is expiry order).
    kept: VecDeque<Kept>,
    next_id: u64,
}

struct Entry {
    /// Tells this entry from a later one under the same key.
    id: u64,
    fingerprint: u64,
    state: EntryState,
}

enum EntryState {
    /// The call is running; its answer arrives on the channel.
    Running(watch::Receiver<Option<Answer>>),
    /// The call finished and may have run the tool: replayed until expiry.
    Kept(Answer),
}

/// When a kept entry expires.
struct Kept {
    expires: Instant,
    key: Arc<str>,
    id: u64,
}

/// What a request finds under its key.
enum Found {
    Kept(Answer),
    Running(watch::Receiver<Option<Answer>>),
    /// Nothing: this request starts the call, settled by this guard.
    New(Settle, watch::Receiver<Option<Answer>>),
}

impl IdempotencyStore {
    /// A store keeping answers for `ttl`.
    pub(crate) fn new(ttl: Duration) -> IdempotencyStore {
        IdempotencyStore::with_max_keys(ttl, MAX_KEYS)
    }

    fn with_max_keys(ttl: Duration, max_keys: usize) -> IdempotencyStore {
        IdempotencyStore {
            ttl,
            max_keys,
            keys: Arc::default(),
        }
    }

    /// Runs `call` once per key: the first request with `key` starts it (in its
    /// own task), later ones with the same key and body join it or get its
    /// kept answer (see the module docs for which answers are kept).
    pub(crate) async fn run(
        &self,
        key: &str,
        body: &impl Hash,
        call: impl Future<Output = Answer> + Send + 'static,
    ) -> Result<Answer, ApiError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let answer = match self.find(key, hasher.finish())? {
            Found::Kept(answer) => return Ok(answer),
            Found::Running(answer) => answer,
            Found::New(settle, answer) => {
                // Spawned with the lock released: a task dropped at once (the
                // runtime stopping) settles, and so takes the lock, in its drop.
                tokio::spawn(async move {
                    let answer = call.await;
                    settle.settle(answer);
                });
                answer
            }
        };
        Ok(wait(answer).await)
    }

    /// Expires what is due, then looks `key` up, or makes its entry.
    fn find(&self, key: &str, fingerprint: u64) -> Result<Found, ApiError> {
        let mut keys = lock(&self.keys);
        keys.expire(Instant::now());
        match keys.entries.get(key) {
            Some(entry) if entry.fingerprint != fingerprint => Err(ApiError::invalid(
                "Idempotency-Key was already used with a different request body",
            )),
            Some(Entry {
                state: EntryState::Kept(answer),
                ..
            }) => Ok(Found::Kept(answer.clone())),
            Some(Entry {
                state: EntryState::Running(answer),
                ..
            }) => Ok(Found::Running(answer.clone())),
            None => {
                keys.make_room(self.max_keys);
                let (sender, answer) = watch::channel(None);
                let key: Arc<str> = Arc::from(key);
                let id = keys.next_id;
                keys.next_id += 1;
                let state = EntryState::Running(answer.clone());
                let entry = Entry {
                    id,
                    fingerprint,
                    state,
                };
                keys.entries.insert(key.clone(), entry);
                let settle = Settle {
                    keys: self.keys.clone(),
                    ttl: self.ttl,
                    key,
                    id,
                    sender,
                };
                Ok(Found::New(settle, answer))
            }
        }
    }

    /// Entries in the map and kept-entry records in the queue (for tests).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let keys = lock(&self.keys);
        (keys.entries.len(), keys.kept.len())
    }
}

impl Keys {
    /// Drops the kept entries whose time has come: the queue's head.
    fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.kept.front()
            && oldest.expires <= now
        {
            self.drop_oldest_kept();
        }
    }

    /// Drops the oldest kept entries until a new one fits under `max_keys`
    /// (entries in flight are never dropped; see the module docs).
    fn make_room(&mut self, max_keys: usize) {
        while self.entries.len() >= max_keys && self.drop_oldest_kept() {}
    }

    /// Drops the oldest kept entry; false when none is kept.
    fn drop_oldest_kept(&mut self) -> bool {
        let Some(oldest) = self.kept.pop_front() else {
            return false;
        };
        if self
            .entries
            .get(&oldest.key)
            .is_some_and(|entry| entry.id == oldest.id)
        {
            self.entries.remove(&oldest.key);
        }
        true
    }
}

/// Held by the task running a new key's call: settles the entry with the
/// call's answer, or, dropped before that (the task stopped), with `cancelled`.
struct Settle {
    keys: Arc<Mutex<Keys>>,
    ttl: Duration,
    key: Arc<str>,
    id: u64,
    /// Holds the answer once settled; the entry's waiters watch it.
    sender: watch::Sender<Option<Answer>>,
}

impl Settle {
    /// Keeps `answer` until the TTL passes if the tool may have run, else
    /// forgets the entry; then hands the answer to the waiting callers.
    fn settle(&self, answer: Answer) {
        {
            let mut keys = lock(&self.keys);
            let keys = &mut *keys;
            if let Some(entry) = keys.entries.get_mut(&self.key)
                && entry.id == self.id
            {
                if answer.may_have_run() {
                    entry.state = EntryState::Kept(answer.clone());
                    keys.kept.push_back(Kept {
                        expires: Instant::now() + self.ttl,
                        key: self.key.clone(),
                        id: self.id,
                    });
                } else {
                    keys.entries.remove(&self.key);
                }
            }
        }
        // After the entry: a caller that has its answer and retries finds
        // the kept answer, or no entry.
        self.sender.send_replace(Some(answer));
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.sender.borrow().is_none() {
            self.settle(Answer::unfinished());
        }
    }
}

/// The answer on `channel`, once its call has settled.
async fn wait(mut channel: watch::Receiver<Option<Answer>>) -> Answer {
    match channel.wait_for(Option::is_some).await {
        Ok(answer) => (*answer).clone().unwrap_or_else(Answer::unfinished),
        // The sender holds an answer before it is dropped (`Settle`'s drop).
        Err(_) => Answer::unfinished(),
    }
}

fn lock(keys: &Mutex<Keys>) -> std::sync::MutexGuard<'_, Keys> {
    keys.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answer(n: usize) -> Answer {
        Answer::result(n.to_string())
    }

    fn error(kind: ErrorKind) -> Answer {
        Answer::from(ApiError::new(kind, "as asked"))
    }

    async fn body_of(store: &IdempotencyStore, key: &str, n: usize) -> axum::body::Bytes {
        store
            .run(key, &1, async move { answer(n) })
            .await
            .unwrap()
            .body
    }

    #[tokio::test]
    async fn same_key_runs_once_and_other_bodies_are_refused() {
        let store = Arc::new(IdempotencyStore::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut joins = Vec::new();
        for _ in 0..5 {
            let (store, runs) = (store.clone(), runs.clone());
            joins.push(tokio::spawn(async move {
                store
                    .run("k", &"body", async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        answer(runs.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
                    .unwrap()
                    .body
            }));
        }
        for join in joins {
            assert_eq!(join.await.unwrap(), axum::body::Bytes::from("0"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let error = store
            .run("k", &"other body", async { answer(9) })
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(store.run("", &"b", async { answer(1) }).await.is_err());
        assert!(store.run("a b", &"b", async { answer(1) }).await.is_err());
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(store.run(&long, &"b", async { answer(1) }).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_after_the_ttl() {
        let store = IdempotencyStore::new(Duration::from_secs(10));
        assert_eq!(body_of(&store, "k", 1).await, "1");
        assert_eq!(body_of(&store, "k", 2).await, "1");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(body_of(&store, "k", 3).await, "3");
    }

    /// Answers where the tool may have run are replayed; the others are
    /// forgotten, so the retry runs the call.
    #[tokio::test]
    async fn only_answers_where_the_tool_may_have_run_are_kept() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        for kind in ErrorKind::ALL {
            let key = kind.as_str();
            let first = store.run(key, &1, async move { error(kind) }).await;
            assert_eq!(first.unwrap().error, Some(kind));
            let retry = store.run(key, &1, async { answer(7) }).await.unwrap();
            let expected = if kind.tool_may_have_run() {
                Some(kind)
            } else {
                None
            };
            assert_eq!(retry.error, expected, "{key}");
        }
        let kept: Vec<&str> = ErrorKind::ALL
            .iter()
            .filter(|kind| kind.tool_may_have_run())
            .map(|kind| kind.as_str())
            .collect();
        // Issue 12's list of answers kept because the tool may have run.
        let expected = [
            "cancelled",
            "tool_error",
            "timeout",
            "transport_closed",
            "http_status",
            "response_too_large",
            "protocol_error",
        ];
        assert_eq!(kept, expected);
        // The never-ran keys now hold their retries' results.
        assert_eq!(store.sizes(), (ErrorKind::ALL.len(), ErrorKind::ALL.len()));
        let tool_error = Answer::result(r#"{"result":{"isError":true}}"#);
        assert!(tool_error.may_have_run());
    }

    #[tokio::test]
    async fn callers_that_joined_a_never_ran_call_share_its_answer_then_a_retry_runs() {
        let store = Arc::new(IdempotencyStore::new(Duration::from_secs(60)));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let store = store.clone();
            async move {
                let call = async move {
                    let _ = released.await;
                    error(ErrorKind::ConnectFailed)
                };
                store.run("k", &1, call).await.unwrap()
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(store.sizes(), (1, 0), "in flight");
        let joined = tokio::spawn({
            let store = store.clone();
            async move { store.run("k", &1, async { answer(2) }).await.unwrap() }
        });
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().error, Some(ErrorKind::ConnectFailed));
        assert_eq!(joined.await.unwrap().error, Some(ErrorKind::ConnectFailed));
        assert_eq!(store.sizes(), (0, 0), "forgotten");
        assert_eq!(body_of(&store, "k", 3).await, "3");
    }

    /// The task running the call sets the expiry when the call finishes, so an
    /// entry whose caller hung up expires `ttl` after the call's end.
    #[tokio::test(start_paused = true)]
    async fn an_entry_whose_caller_hung_up_expires_after_the_ttl() {
        let store = IdempotencyStore::new(Duration::from_secs(10));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            answer(1)
        };
        let caller = tokio::time::timeout(Duration::from_secs(1), store.run("k", &1, slow));
        assert!(caller.await.is_err(), "the caller hung up after 1 s");
        assert_eq!(store.sizes(), (1, 0), "the call runs on");
        tokio::time::sleep(Duration::from_secs(4)).await;
        tokio::task::yield_now().await;
        assert_eq!(store.sizes(), (1, 1), "finished at 5 s: kept until 15 s");
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert_eq!(body_of(&store, "k", 2).await, "1", "at 14.9 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(body_of(&store, "other", 3).await, "3");
        assert_eq!(store.sizes(), (1, 1), "`k` expired at 15 s");
        assert_eq!(body_of(&store, "k", 4).await, "4", "and runs again");
    }

    /// Expiry follows finish order, not start order.
    #[tokio::test(start_paused = true)]
    async fn kept_answers_expire_in_the_order_their_calls_finished() {
        let store = Arc::new(IdempotencyStore::new(Duration::from_secs(10)));
        let slow = tokio::spawn({
            let store = store.clone();
            async move {
                let call = async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    answer(1)
                };
                store.run("slow", &1, call).await.unwrap()
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(body_of(&store, "fast", 1).await, "1");
        slow.await.unwrap();
        // fast: kept until 11 s; slow: until 13 s. Now 3 s.
        tokio::time::sleep(Duration::from_millis(8_500)).await;
        assert_eq!(body_of(&store, "slow", 2).await, "1", "at 11.5 s");
        assert_eq!(store.sizes(), (1, 1), "only `fast` expired");
        assert_eq!(body_of(&store, "fast", 2).await, "2");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(body_of(&store, "slow", 3).await, "3", "at 13.5 s");
    }

    #[tokio::test]
    async fn a_full_store_drops_its_oldest_kept_answers_never_a_call_in_flight() {
        let store = Arc::new(IdempotencyStore::with_max_keys(Duration::from_secs(60), 3));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let store = store.clone();
            async move {
                let call = async move {
                    let _ = released.await;
                    answer(0)
                };
                store.run("running", &1, call).await.unwrap().body
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(body_of(&store, "a", 1).await, "1");
        assert_eq!(body_of(&store, "b", 1).await, "1");
        assert_eq!(body_of(&store, "c", 1).await, "1");
        assert_eq!(store.sizes(), (3, 2), "`a` made room for `c`");
        assert_eq!(body_of(&store, "b", 2).await, "1", "`b` is kept");
        assert_eq!(body_of(&store, "a", 2).await, "2", "`a` ran again");
        for n in 0..50 {
            assert_eq!(
                body_of(&store, &format!("more-{n}"), n).await,
                n.to_string()
            );
            assert_eq!(store.sizes(), (3, 2));
        }
        let joined = store.run("running", &1, async { answer(9) });
        release.send(()).unwrap();
        assert_eq!(joined.await.unwrap().body, "0", "never dropped");
        assert_eq!(running.await.unwrap(), "0");
        assert_eq!(store.sizes(), (3, 3));
    }

    #[tokio::test]
    async fn calls_in_flight_may_outnumber_the_cap_until_they_finish() {
        let store = Arc::new(IdempotencyStore::with_max_keys(Duration::from_secs(60), 2));
        let mut releases = Vec::new();
        let mut callers = Vec::new();
        for n in 0..3 {
            let (release, released) = tokio::sync::oneshot::channel::<()>();
            releases.push(release);
            let store = store.clone();
            callers.push(tokio::spawn(async move {
                let call = async move {
                    let _ = released.await;
                    answer(n)
                };
                store.run(&n.to_string(), &1, call).await.unwrap()
            }));
        }
        tokio::task::yield_now().await;
        assert_eq!(store.sizes(), (3, 0));
        for release in releases {
            release.send(()).unwrap();
        }
        for caller in callers {
            caller.await.unwrap();
        }
        assert_eq!(store.sizes(), (3, 3));
        assert_eq!(body_of(&store, "new", 1).await, "1");
        assert_eq!(store.sizes(), (2, 2), "two kept answers dropped for `new`");
    }

    /// A call task dropped before its call finished (the runtime stopping)
    /// settles its entry with `cancelled`, which is kept: the tool may have run.
    #[test]
    fn a_call_task_dropped_midway_settles_with_cancelled() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        let stopping = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        stopping.block_on(async {
            let caller = tokio::time::timeout(
                Duration::from_millis(20),
                store.run("k", &1, std::future::pending::<Answer>()),
            );
            assert!(caller.await.is_err());
        });
        assert_eq!(store.sizes(), (1, 0));
        drop(stopping);
        assert_eq!(store.sizes(), (1, 1));
        let after = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let retry = after.block_on(store.run("k", &1, async { answer(1) }));
        let retry = retry.unwrap();
        assert_eq!(
            (retry.status, retry.error),
            (499, Some(ErrorKind::Cancelled))
        );
    }
}
