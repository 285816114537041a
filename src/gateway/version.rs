//! The protocol revisions the gateway speaks, and their negotiation.

use serde_json::Value;

/// The session revisions (`initialize`, `Mcp-Session-Id`), oldest first.
pub(crate) const SESSION_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// The stateless revision: no `initialize`, the version in every request's `_meta`.
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";

/// The only revision that accepts JSON-RPC batches.
pub(crate) const BATCH_VERSION: &str = "2025-03-26";

/// Most entries in one batch.
pub(crate) const MAX_BATCH: usize = 32;

/// The first revision whose SSE answers open with a priming event (SEP-1699).
const PRIMING_SINCE: &str = "2025-11-25";

/// True if SSE answers in a session of `version` open with a priming event:
/// from 2025-11-25 on. Older clients may read its empty data as a malformed
/// message.
pub(crate) fn primes_sse(version: &str) -> bool {
    SESSION_VERSIONS.contains(&version) && version >= PRIMING_SINCE
}

/// The `_meta` key carrying a stateless request's protocol version.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The methods whose 2026-07-28 results carry the caching hints `ttlMs` and
/// `cacheScope` (SEP-2549; the gateway writes `server/discover`'s itself).
const CACHEABLE_METHODS: [&str; 5] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Completes a forwarded result for a 2026-07-28 client. That revision
/// requires `resultType` on every result (SEP-2322), and `ttlMs` and
/// `cacheScope` on a complete cacheable one (SEP-2549); an upstream on a
/// session revision sends neither, and strict clients (mcp 2.x) reject the
/// result without them. Missing fields get the values rmcp's own server uses:
/// `"complete"`, `0` (immediately stale) and `"private"` (the answer depends
/// on the caller's scope). Fields the upstream sent are kept.
pub(crate) fn complete_stateless_result(method: &str, result: &mut Value) {
    let Value::Object(map) = result else {
        return;
    };
    map.entry("resultType")
        .or_insert_with(|| Value::from("complete"));
    let complete = map.get("resultType").and_then(Value::as_str) == Some("complete");
    if complete && CACHEABLE_METHODS.contains(&method) {
        map.entry("ttlMs").or_insert_with(|| Value::from(0));
        map.entry("cacheScope")
            .or_insert_with(|| Value::from("private"));
    }
}

/// The version answered to an `initialize` asking for `requested`: the
/// client's own when the gateway speaks it, else the newest session revision.
pub(crate) fn negotiate(requested: Option<&str>) -> &'static str {
    SESSION_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(SESSION_VERSIONS[SESSION_VERSIONS.len() - 1])
}

/// True if the gateway speaks `version` (a session revision or the stateless one).
pub(crate) fn is_known(version: &str) -> bool {
    version == STATELESS_VERSION || SESSION_VERSIONS.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_version_wins_when_spoken() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2024-11-05")), "2025-11-25");
        assert_eq!(negotiate(Some("2099-01-01")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
        assert!(is_known("2026-07-28") && is_known("2025-06-18") && !is_known("2024-11-05"));
    }

    #[test]
    fn only_2025_11_25_sessions_prime_their_sse_answers() {
        assert!(primes_sse("2025-11-25"));
        assert!(!primes_sse("2025-06-18") && !primes_sse("2025-03-26"));
        assert!(
            !primes_sse(STATELESS_VERSION),
            "no session, no stream to resume"
        );
    }

    #[test]
    fn stateless_results_get_their_required_fields_and_keep_the_upstream_ones() {
        use serde_json::json;
        let mut listed = json!({"tools": []});
        complete_stateless_result("tools/list", &mut listed);
        assert_eq!(
            listed,
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
        let mut called = json!({"content": [], "isError": false});
        complete_stateless_result("tools/call", &mut called);
        assert_eq!(
            called,
            json!({"content": [], "isError": false, "resultType": "complete"})
        );
        let mut upstream = json!({"contents": [], "resultType": "complete", "ttlMs": 60000, "cacheScope": "public"});
        let before = upstream.clone();
        complete_stateless_result("resources/read", &mut upstream);
        assert_eq!(upstream, before, "the upstream's own hints are kept");
        let mut interim = json!({"resultType": "input_required", "inputRequests": {}});
        let before = interim.clone();
        complete_stateless_result("tools/list", &mut interim);
        assert_eq!(interim, before, "no caching hints on an incomplete result");
    }
}
