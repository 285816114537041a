//! The protocol revisions the gateway speaks, and their negotiation.

/// The session revisions (`initialize`, `Mcp-Session-Id`), oldest first.
pub(crate) const SESSION_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// The stateless revision: no `initialize`, the version in every request's `_meta`.
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";

/// The only revision that accepts JSON-RPC batches.
pub(crate) const BATCH_VERSION: &str = "2025-03-26";

/// Most entries in one batch.
pub(crate) const MAX_BATCH: usize = 32;

/// The `_meta` key carrying a stateless request's protocol version.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

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
}
