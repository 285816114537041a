//! The runtime's failures as JSON-RPC errors (DESIGN §10): an upstream's own
//! JSON-RPC error passes through as sent; every other failure gets code
//! -32001 (`timeout`, what the SDKs call "request timed out"), -32602
//! (`invalid_request`) or -32010, with `data.type` to branch on. -32000 is
//! avoided: both SDKs use it for a closed connection.

use serde_json::{Map, Value, json};

use crate::runtime::{Error, ErrorKind};

/// A timeout (the SDKs' "request timed out").
pub(crate) const TIMEOUT: i32 = -32001;
/// Any other failure of the runtime.
pub(crate) const RUNTIME_ERROR: i32 = -32010;

/// The `error` object answering a request that failed with `error`.
pub(crate) fn rpc_error(error: &Error, server: &str) -> (i32, String, Option<Value>) {
    if let Error::Rpc {
        code,
        message,
        data,
        ..
    } = error
    {
        return (*code, message.clone(), data.clone());
    }
    let kind = error.kind();
    let code = match kind {
        ErrorKind::Timeout => TIMEOUT,
        ErrorKind::InvalidRequest => super::jsonrpc::INVALID_PARAMS,
        _ => RUNTIME_ERROR,
    };
    let mut data = Map::new();
    data.insert("type".to_owned(), json!(kind.as_str()));
    data.insert("server".to_owned(), json!(server));
    data.insert("may_have_run".to_owned(), json!(kind.tool_may_have_run()));
    if let Some(ms) = retry_after_ms(error) {
        data.insert("retry_after_ms".to_owned(), json!(ms));
    }
    (code, error.to_string(), Some(Value::Object(data)))
}

/// When the caller may try again: the breaker's cool-down, or the upstream's
/// `Retry-After` in seconds.
fn retry_after_ms(error: &Error) -> Option<u64> {
    if let Error::BreakerOpen { retry_in, .. } = error {
        return Some(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX));
    }
    let seconds: u64 = error.retry_after()?.trim().parse().ok()?;
    Some(seconds.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn upstream_errors_pass_through_and_ours_are_typed() {
        let upstream = Error::Rpc {
            server: "s".into(),
            code: -32042,
            message: "custom".into(),
            data: Some(json!({"vendor": 1})),
        };
        assert_eq!(
            rpc_error(&upstream, "s"),
            (-32042, "custom".into(), Some(json!({"vendor": 1})))
        );
        let timeout = Error::Timeout {
            server: "s".into(),
            method: "tools/call".into(),
            after: Duration::from_secs(1),
        };
        let (code, _, data) = rpc_error(&timeout, "s");
        assert_eq!(code, TIMEOUT);
        assert_eq!(
            data.unwrap(),
            json!({"type": "timeout", "server": "s", "may_have_run": true})
        );
        let open = Error::BreakerOpen {
            server: "s".into(),
            retry_in: Duration::from_millis(1500),
        };
        let (code, _, data) = rpc_error(&open, "s");
        assert_eq!(code, RUNTIME_ERROR);
        assert_eq!(
            data.unwrap(),
            json!({"type": "breaker_open", "server": "s", "may_have_run": false, "retry_after_ms": 1500})
        );
    }
}
