//! The retry policy of pooled calls: which failures may be tried again, and how
//! long to wait first.
//!
//! A retry happens only where it is safe: the request never reached a server
//! that could act on it ([`ErrorKind::tool_may_have_run`] is false:
//! `connect_failed`, `initialize_failed`, `session_expired`, `rate_limited`), or
//! it may have run and running it twice is harmless (a tool listed in
//! `idempotent_tools`, or any request other than `tools/call`). Backoff is
//! exponential with jitter, honours `Retry-After`, and never outlasts the call's
//! deadline (the caller checks).

use std::time::Duration;

use super::error::{Error, ErrorKind};
use crate::config::RetryConfig;

/// Every kind the retry policy can retry (`mcp_client_retries_total` has a
/// series for each from the start).
pub(crate) const RETRYABLE_KINDS: [ErrorKind; 7] = [
    ErrorKind::ConnectFailed,
    ErrorKind::InitializeFailed,
    ErrorKind::SessionExpired,
    ErrorKind::RateLimited,
    ErrorKind::TransportClosed,
    ErrorKind::HttpStatus,
    ErrorKind::Timeout,
];

/// Whether a failed attempt may be repeated; `idempotent` when running the
/// request twice is harmless.
pub(crate) fn safe_to_retry(kind: ErrorKind, idempotent: bool) -> bool {
    RETRYABLE_KINDS.contains(&kind) && (idempotent || !kind.tool_may_have_run())
}

/// How long to wait before attempt `attempt + 1`.
pub(crate) fn backoff(error: &Error, attempt: u32, retry: &RetryConfig) -> Duration {
    if error.kind() == ErrorKind::SessionExpired {
        return Duration::ZERO; // the fresh session is the fix; no reason to wait
    }
    let exponential = retry
        .initial_backoff
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(retry.max_backoff);
    let jittered = exponential.mul_f64(0.5 + fastrand::f64() * 0.5);
    let asked = error
        .retry_after()
        .and_then(|r| r.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    asked.map_or(jittered, |asked| asked.max(jittered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_where_safe() {
        assert!(safe_to_retry(ErrorKind::ConnectFailed, false));
        assert!(safe_to_retry(ErrorKind::SessionExpired, false));
        assert!(safe_to_retry(ErrorKind::RateLimited, false));
        assert!(!safe_to_retry(ErrorKind::TransportClosed, false));
        assert!(!safe_to_retry(ErrorKind::Timeout, false));
        assert!(safe_to_retry(ErrorKind::TransportClosed, true));
        assert!(!safe_to_retry(ErrorKind::ToolError, true));
        assert!(!safe_to_retry(ErrorKind::InvalidRequest, true));
        assert!(!safe_to_retry(ErrorKind::BreakerOpen, true));
        for kind in ErrorKind::ALL {
            let retried = safe_to_retry(kind, true);
            assert_eq!(retried, RETRYABLE_KINDS.contains(&kind), "{kind}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let retry = RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let closed = Error::TransportClosed {
            server: "s".into(),
            detail: String::new(),
        };
        for attempt in 1..=4 {
            let b = backoff(&closed, attempt, &retry);
            let cap =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(300));
            assert!(b <= cap && b >= cap / 2, "attempt {attempt}: {b:?}");
        }
        let limited = Error::RateLimited {
            server: "s".into(),
            retry_after: Some("2".into()),
        };
        assert_eq!(backoff(&limited, 1, &retry), Duration::from_secs(2));
        let expired = Error::SessionExpired {
            server: "s".into(),
            detail: String::new(),
        };
        assert_eq!(backoff(&expired, 1, &retry), Duration::ZERO);
    }
}
