//! Per-server circuit breaker: after `failure_threshold` consecutive failures,
//! calls fail fast for `cool_down`; then one probe call decides.
//!
//! Admission is a [`BreakerPermit`]. Its owner settles it with the call's
//! [`Verdict`]; a permit dropped unsettled (the caller's future was dropped, an
//! HTTP client hung up mid-probe) counts as an abandoned probe, so the next call
//! probes instead of the breaker staying half-open for ever. No exit path can
//! skip the bookkeeping: it lives in `Drop`.
//!
//! The breaker emits its own state changes (gauge, log), so no caller has to.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::error::ErrorKind;
use crate::config::BreakerConfig;
use crate::telemetry::Telemetry;
use crate::telemetry::events::BreakerChanged;

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

/// What a finished call says about the server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server answered (a result, a tool error, a JSON-RPC error).
    Healthy,
    /// A failure that says the server is unwell.
    Unwell,
    /// The call ended before the server could say anything (shutdown, no pool
    /// slot, the caller went away): a probe must be tried again.
    None,
}

impl Verdict {
    /// The one breaker policy, for pooled calls and owned opens alike.
    pub(crate) fn of(outcome: Result<(), ErrorKind>) -> Verdict {
        match outcome {
            Ok(()) => Verdict::Healthy,
            Err(
                ErrorKind::ConnectFailed
                | ErrorKind::InitializeFailed
                | ErrorKind::Timeout
                | ErrorKind::TransportClosed
                | ErrorKind::HttpStatus
                | ErrorKind::RateLimited,
            ) => Verdict::Unwell,
            Err(ErrorKind::ShuttingDown | ErrorKind::PoolExhausted | ErrorKind::Cancelled) => {
                Verdict::None
            }
            Err(_) => Verdict::Healthy,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down passed; `probing` while a probe call is out.
    HalfOpen {
        probing: bool,
    },
}

/// One server's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Mirrors `Closed { failures: 0 }`: the common case answers without the lock.
    healthy: AtomicBool,
    server: Arc<str>,
    telemetry: Arc<Telemetry>,
}

/// Leave to make one call. Settle it with [`BreakerPermit::settle`]; dropped
/// unsettled, a probe counts as abandoned (the next call probes).
#[derive(Debug)]
pub(crate) struct BreakerPermit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl BreakerPermit<'_> {
    /// Records the call's verdict.
    pub(crate) fn settle(self, verdict: Verdict) {
        match verdict {
            Verdict::Healthy => self.breaker.on_success(),
            Verdict::Unwell => self.breaker.on_failure(),
            Verdict::None => return, // Drop releases an abandoned probe.
        }
        std::mem::forget(self);
    }
}

impl Drop for BreakerPermit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.on_abandoned_probe();
        }
    }
}

impl Breaker {
    pub(crate) fn new(
        config: BreakerConfig,
        server: Arc<str>,
        telemetry: Arc<Telemetry>,
    ) -> Breaker {
        Breaker {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            healthy: AtomicBool::new(true),
            server,
            telemetry,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        match &*self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
        }
    }

    /// Asks to start a call: a permit, or how long the cool-down has to go.
    pub(crate) fn admit(&self) -> Result<BreakerPermit<'_>, Duration> {
        let pass = |probe| BreakerPermit {
            breaker: self,
            probe,
        };
        if self.healthy.load(Ordering::Acquire) {
            return Ok(pass(false));
        }
        let mut inner = self.lock();
        match &mut *inner {
            Inner::Closed { .. } => Ok(pass(false)),
            Inner::HalfOpen { probing: true } => Err(Duration::ZERO),
            Inner::HalfOpen { probing } => {
                *probing = true;
                Ok(pass(true))
            }
            Inner::Open { until } => {
                let now = Instant::now();
                if now < *until {
                    return Err(*until - now);
                }
                *inner = Inner::HalfOpen { probing: true };
                drop(inner);
                self.changed(BreakerState::HalfOpen);
                Ok(pass(true))
            }
        }
    }

    fn on_success(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        let changed = !matches!(*inner, Inner::Closed { .. });
        *inner = Inner::Closed { failures: 0 };
        self.healthy.store(true, Ordering::Release);
        drop(inner);
        if changed {
            self.changed(BreakerState::Closed);
        }
    }

    fn on_failure(&self) {
        let mut inner = self.lock();
        self.healthy.store(false, Ordering::Release);
        let open = Inner::Open {
            until: Instant::now() + self.config.cool_down,
        };
        let opened = match &mut *inner {
            Inner::Closed { failures } => {
                *failures += 1;
                *failures >= self.config.failure_threshold
            }
            Inner::HalfOpen { .. } => true,
            Inner::Open { .. } => false,
        };
        if opened {
            *inner = open;
            drop(inner);
            self.changed(BreakerState::Open);
        }
    }

    /// A probe ended without a verdict: the next call probes.
    fn on_abandoned_probe(&self) {
        if let Inner::HalfOpen { probing } = &mut *self.lock() {
            *probing = false;
        }
    }

    fn changed(&self, state: BreakerState) {
        BreakerChanged {
            server: &self.server,
            state: state.gauge(),
            state_name: state.as_str(),
        }
        .emit(&self.telemetry);
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
        let config = BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(30),
        };
        let telemetry = Telemetry::new().expect("telemetry");
        Breaker::new(config, Arc::from("s"), Arc::new(telemetry))
    }

    fn fail(b: &Breaker) {
        b.admit().expect("admitted").settle(Verdict::Unwell);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_one_probe_decides() {
        let b = breaker(2);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit().unwrap_err(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        let probe = b.admit().expect("probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.admit().unwrap_err(),
            Duration::ZERO,
            "one probe at a time"
        );
        probe.settle(Verdict::Unwell);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        b.admit().expect("probe").settle(Verdict::Healthy);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let b = breaker(2);
        fail(&b);
        b.admit().expect("pass").settle(Verdict::Healthy);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_or_verdictless_probe_lets_the_next_call_probe() {
        let b = breaker(1);
        fail(&b);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(b.admit().expect("probe")); // the caller's future was dropped
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.admit().expect("next probe").settle(Verdict::None);
        b.admit().expect("and the next").settle(Verdict::Healthy);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_pass_changes_nothing() {
        let b = breaker(1);
        drop(b.admit().expect("pass"));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn one_policy_for_every_kind() {
        assert_eq!(Verdict::of(Ok(())), Verdict::Healthy);
        assert_eq!(Verdict::of(Err(ErrorKind::ConnectFailed)), Verdict::Unwell);
        assert_eq!(Verdict::of(Err(ErrorKind::Timeout)), Verdict::Unwell);
        assert_eq!(Verdict::of(Err(ErrorKind::Cancelled)), Verdict::None);
        assert_eq!(Verdict::of(Err(ErrorKind::PoolExhausted)), Verdict::None);
        assert_eq!(Verdict::of(Err(ErrorKind::ProtocolError)), Verdict::Healthy);
        assert_eq!(
            Verdict::of(Err(ErrorKind::SessionExpired)),
            Verdict::Healthy
        );
    }
}
