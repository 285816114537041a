//! Per-server circuit breaker: after `failure_threshold` consecutive failures,
//! calls fail fast for `cool_down`; then one probe call decides.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Breaker state, as exported in `mcp_client_circuit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// One probe call is deciding.
    HalfOpen,
    /// Calls fail fast.
    Open,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub const fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// `closed`, `half_open` or `open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// What the breaker says about a call about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead.
    Pass,
    /// Go ahead as the one probe; report its outcome.
    Probe,
    /// Fail fast; the cool-down has this long to go.
    Reject(Duration),
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One server's breaker. Its state changes are returned to the caller, who emits them.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Mirrors `Closed { failures: 0 }`: the common case answers without the lock.
    healthy: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            healthy: AtomicBool::new(true),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::HalfOpen => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
        }
    }

    /// Asks to start a call. Returns the admission and a state change, if any.
    pub(crate) fn admit(&self) -> (Admission, Option<BreakerState>) {
        if self.healthy.load(Ordering::Acquire) {
            return (Admission::Pass, None);
        }
        let mut inner = self.lock();
        match &*inner {
            Inner::Closed { .. } => (Admission::Pass, None),
            Inner::HalfOpen => (Admission::Reject(Duration::ZERO), None),
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= *until {
                    *inner = Inner::HalfOpen;
                    (Admission::Probe, Some(BreakerState::HalfOpen))
                } else {
                    (Admission::Reject(*until - now), None)
                }
            }
        }
    }

    /// A call (or probe) succeeded.
    pub(crate) fn on_success(&self) -> Option<BreakerState> {
        if self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let mut inner = self.lock();
        let changed = !matches!(*inner, Inner::Closed { .. });
        *inner = Inner::Closed { failures: 0 };
        self.healthy.store(true, Ordering::Release);
        changed.then_some(BreakerState::Closed)
    }

    /// A call (or probe) failed in a way that says the server is unwell.
    pub(crate) fn on_failure(&self) -> Option<BreakerState> {
        let mut inner = self.lock();
        self.healthy.store(false, Ordering::Release);
        let open = Inner::Open {
            until: Instant::now() + self.config.cool_down,
        };
        match &mut *inner {
            Inner::Closed { failures } => {
                *failures += 1;
                if *failures >= self.config.failure_threshold {
                    *inner = open;
                    return Some(BreakerState::Open);
                }
                None
            }
            Inner::HalfOpen => {
                *inner = open;
                Some(BreakerState::Open)
            }
            Inner::Open { .. } => None,
        }
    }

    /// A probe ended without a verdict (e.g. the caller went away): let the next call probe.
    pub(crate) fn on_abandoned_probe(&self) {
        let mut inner = self.lock();
        if matches!(*inner, Inner::HalfOpen) {
            *inner = Inner::Open {
                until: Instant::now(),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave Inner half-written (every write is one
        // assignment), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(30),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_one_probe_decides() {
        let b = breaker(2);
        assert_eq!(b.on_failure(), None);
        assert_eq!(b.admit().0, Admission::Pass);
        assert_eq!(b.on_failure(), Some(BreakerState::Open));
        assert!(matches!(b.admit().0, Admission::Reject(left) if left == Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.admit(), (Admission::Probe, Some(BreakerState::HalfOpen)));
        assert!(
            matches!(b.admit().0, Admission::Reject(_)),
            "only one probe at a time"
        );
        assert_eq!(b.on_failure(), Some(BreakerState::Open));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.admit().0, Admission::Probe);
        assert_eq!(b.on_success(), Some(BreakerState::Closed));
        assert_eq!(b.admit().0, Admission::Pass);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let b = breaker(2);
        b.on_failure();
        assert_eq!(b.on_success(), None);
        assert_eq!(b.on_failure(), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_probe_lets_the_next_call_probe() {
        let b = breaker(1);
        b.on_failure();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.admit().0, Admission::Probe);
        b.on_abandoned_probe();
        assert_eq!(b.admit().0, Admission::Probe);
    }
}
