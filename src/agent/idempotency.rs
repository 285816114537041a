//! `Idempotency-Key`: a retried request with the same key joins the call in
//! flight or gets its stored answer, instead of running the tool again.
//!
//! The call behind a key runs in its own task, so an orchestrator whose first
//! attempt timed out on its side (and hung up) still finds the answer on retry.
//! A key reused with a different body is refused (400), as payment APIs do.
//! Answers are kept for `agent.idempotency_ttl`; at most `MAX_KEYS` are kept.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::error::ApiError;

/// Most keys remembered at once; the oldest answers go first beyond it.
const MAX_KEYS: usize = 100_000;

/// Longest accepted key.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A stored answer: status and JSON body (and a `Retry-After`).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body, serialized.
    pub body: axum::body::Bytes,
    /// `Retry-After` to pass on.
    pub retry_after: Option<String>,
}

type SharedAnswer = Shared<BoxFuture<'static, Answer>>;

struct Entry {
    fingerprint: u64,
    answer: SharedAnswer,
    expires: Option<Instant>,
}

/// Answers by idempotency key.
pub(crate) struct IdempotencyStore {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl IdempotencyStore {
    /// A store keeping answers for `ttl`.
    pub(crate) fn new(ttl: Duration) -> IdempotencyStore {
        IdempotencyStore {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `call` once per key: the first request with `key` starts it (in its own
    /// task), later ones with the same key and body join it or get its answer.
    pub(crate) async fn run(
        &self,
        key: &str,
        body: &impl Hash,
        call: impl std::future::Future<Output = Answer> + Send + 'static,
    ) -> Result<Answer, ApiError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let fingerprint = hasher.finish();
        let answer = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            entries.retain(|_, e| e.expires.is_none_or(|t| t > now));
            match entries.get(key) {
                Some(entry) if entry.fingerprint != fingerprint => {
                    return Err(ApiError::invalid(
                        "Idempotency-Key was already used with a different request body",
                    ));
                }
                Some(entry) => entry.answer.clone(),
                None => {
                    if entries.len() >= MAX_KEYS {
                        let oldest = entries
                            .iter()
                            .filter_map(|(k, e)| e.expires.map(|t| (t, k.clone())))
                            .min();
                        if let Some((_, oldest)) = oldest {
                            entries.remove(&oldest);
                        }
                    }
                    let shared = call.boxed().shared();
                    entries.insert(
                        key.to_owned(),
                        Entry {
                            fingerprint,
                            answer: shared.clone(),
                            expires: None,
                        },
                    );
                    tokio::spawn(shared.clone());
                    shared
                }
            }
        };
        let result = answer.await;
        if let Some(entry) = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(key)
            && entry.expires.is_none()
        {
            entry.expires = Some(Instant::now() + self.ttl);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answer(n: usize) -> Answer {
        Answer {
            status: 200,
            body: n.to_string().into(),
            retry_after: None,
        }
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
        assert_eq!(error.kind, crate::runtime::ErrorKind::InvalidRequest);
        assert!(store.run("", &"b", async { answer(1) }).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_after_the_ttl() {
        let store = IdempotencyStore::new(Duration::from_secs(10));
        assert_eq!(
            store.run("k", &1, async { answer(1) }).await.unwrap().body,
            axum::body::Bytes::from("1")
        );
        assert_eq!(
            store.run("k", &1, async { answer(2) }).await.unwrap().body,
            axum::body::Bytes::from("1")
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            store.run("k", &1, async { answer(3) }).await.unwrap().body,
            axum::body::Bytes::from("3")
        );
    }
}
