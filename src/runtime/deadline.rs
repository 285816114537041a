//! One deadline type for a request, end to end: set once when the call starts,
//! read (never re-derived) by every step below it (pool wait, retries, backoff,
//! the send), so a timeout always reports the deadline the caller asked for.

use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use super::error::Error;

/// When a call must be over, and the budget it was given (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub(crate) fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// True if waiting `wait` more would pass it.
    pub(crate) fn would_pass_after(self, wait: Duration) -> bool {
        Instant::now() + wait >= self.at
    }

    /// The `timeout` error of `method` on `server`, naming the whole budget.
    pub(crate) fn timed_out(self, server: &str, method: &str) -> Error {
        Error::Timeout {
            server: server.to_owned(),
            method: method.to_owned(),
            after: self.budget,
        }
    }

    /// Runs `future` until the deadline; `Err(timed_out)` when it passes first.
    /// Not an `async fn`: the future is moved once, into the timeout, instead of
    /// into an async frame and then again into the timeout (measured: moving
    /// large request futures around was most of the request path's cost).
    pub(crate) fn bound<'a, T>(
        self,
        server: &'a str,
        method: &'a str,
        future: impl Future<Output = T> + 'a,
    ) -> impl Future<Output = Result<T, Error>> + 'a {
        tokio::time::timeout_at(self.at, future)
            .map(move |outcome| outcome.map_err(|_| self.timed_out(server, method)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_the_whole_budget_whatever_is_left() {
        let deadline = Deadline::after(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(deadline.would_pass_after(Duration::from_secs(2)));
        assert!(!deadline.would_pass_after(Duration::from_secs(1)));
        let late = deadline.bound("s", "tools/call", std::future::pending::<()>());
        match late.await {
            Err(Error::Timeout { after, .. }) => assert_eq!(after, Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
    }
}
