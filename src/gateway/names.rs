//! Names on the aggregate endpoint `/mcp`: tools and prompts are
//! `{server}__{name}` (DESIGN §10), kept within `^[a-zA-Z0-9_-]{1,64}$`, which
//! OpenAI-compatible models require.
//!
//! The rule, deterministic (docs/gateway.md, "The aggregate endpoint"):
//! - `{server}__{name}` when that is 1 to 64 characters of `[a-zA-Z0-9_-]`;
//! - otherwise `{server}__{head}_{hash}`: `head` is the name with every other
//!   character replaced by `_`, cut to fit 64 characters, and `hash` the first
//!   8 hex digits of the SHA-256 of the original name.
//!
//! Server names on the aggregate endpoint have no `__` and no `_` at either
//! end (`check-config` says so), so the first `__` splits a name one way. An
//! encoded name is looked up in the reverse map filled when the list was made.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Between the server and the name.
pub(crate) const SEPARATOR: &str = "__";
/// The longest name.
const MAX_NAME: usize = 64;
/// Reverse-map entries kept before the map starts over (it refills on the next list).
const MAX_ENTRIES: usize = 100_000;

fn valid(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The aggregate name of `server`'s tool or prompt `name`.
pub(crate) fn prefixed(server: &str, name: &str) -> String {
    let plain = format!("{server}{SEPARATOR}{name}");
    if valid(&plain) {
        return plain;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut hash = String::with_capacity(8);
    for byte in &digest.as_ref()[..4] {
        let _ = write!(hash, "{byte:02x}");
    }
    let room = MAX_NAME.saturating_sub(server.len() + SEPARATOR.len() + 1 + hash.len());
    let head: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(room)
        .collect();
    format!("{server}{SEPARATOR}{head}_{hash}")
}

/// Encoded names back to `(server, original name)`.
#[derive(Debug, Default)]
pub(crate) struct NameMap(Mutex<HashMap<String, (Arc<str>, String)>>);

impl NameMap {
    /// Remembers that `name` of `server` is listed as `listed`.
    pub(crate) fn remember(&self, listed: &str, server: &Arc<str>, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(listed.to_owned(), (server.clone(), name.to_owned()));
    }

    /// The server and original name of `listed`: from the map, else split at
    /// the first `__` when the prefix is a server `is_server` accepts.
    pub(crate) fn resolve(
        &self,
        listed: &str,
        is_server: impl Fn(&str) -> Option<Arc<str>>,
    ) -> Option<(Arc<str>, String)> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(listed)
            .cloned();
        if known.is_some() {
            return known;
        }
        let (server, name) = listed.split_once(SEPARATOR)?;
        Some((is_server(server)?, name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_prefixed_and_others_encoded_within_64() {
        assert_eq!(prefixed("demo", "echo"), "demo__echo");
        assert_eq!(prefixed("demo", "get-sum_2"), "demo__get-sum_2");
        let dotted = prefixed("demo", "files.read");
        assert!(dotted.starts_with("demo__files_read_"), "{dotted}");
        assert_eq!(dotted.len(), "demo__files_read_".len() + 8);
        let long = prefixed("everything", &"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(valid(&long));
        assert_ne!(
            prefixed("demo", "a.b"),
            prefixed("demo", "a/b"),
            "the hash tells them apart"
        );
        assert_eq!(
            prefixed("demo", "a.b"),
            prefixed("demo", "a.b"),
            "deterministic"
        );
    }

    #[test]
    fn names_resolve_from_the_map_or_by_their_prefix() {
        let map = NameMap::default();
        let servers = |s: &str| ["demo", "every-thing"].contains(&s).then(|| Arc::from(s));
        let encoded = prefixed("demo", "files.read");
        map.remember(&encoded, &Arc::from("demo"), "files.read");
        assert_eq!(
            map.resolve(&encoded, servers),
            Some((Arc::from("demo"), "files.read".to_owned()))
        );
        assert_eq!(
            map.resolve("every-thing__echo", servers),
            Some((Arc::from("every-thing"), "echo".to_owned()))
        );
        assert_eq!(
            map.resolve("demo___under", servers),
            Some((Arc::from("demo"), "_under".to_owned()))
        );
        assert_eq!(map.resolve("nobody__echo", servers), None);
        assert_eq!(map.resolve("echo", servers), None);
    }
}
