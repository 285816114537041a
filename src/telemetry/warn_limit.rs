//! At most one warning per interval for a recurring failure (a collector that is
//! down must not produce a log line per call).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one warning through per `interval` and counts the ones it holds back.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimiter {
    /// A limiter letting one warning through per `interval`.
    pub(crate) fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Runs `log(suppressed_since_last)` if the interval has passed since the last one.
    pub(crate) fn warn(&self, log: impl FnOnce(u64)) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            *suppressed += 1;
            return;
        }
        let held_back = std::mem::take(suppressed);
        *last = Some(Instant::now());
        drop(state);
        log(held_back);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(60));
        let mut logged = Vec::new();
        for _ in 0..1000 {
            limiter.warn(|suppressed| logged.push(suppressed));
        }
        assert_eq!(logged, [0]);
        let fast = WarnLimiter::new(Duration::from_millis(10));
        fast.warn(|_| {});
        fast.warn(|_| {});
        std::thread::sleep(Duration::from_millis(15));
        let mut seen = None;
        fast.warn(|suppressed| seen = Some(suppressed));
        assert_eq!(seen, Some(1));
    }
}
