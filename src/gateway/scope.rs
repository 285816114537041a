//! Which scope a gateway request runs in (DESIGN §10), and the `_meta` a
//! request is forwarded with.
//!
//! Sources, in order: the `X-Mcpwatch-Scope` header, `params._meta` key
//! `mcpwatch/scope`, the path (`/scopes/{scope}/mcp/...`), the downstream
//! session (`~s:{id}`), `default`. The first three are named scopes: any two
//! present must agree. The session scope is used only when none is named.

use serde_json::{Map, Value};

use crate::runtime::{DEFAULT_SCOPE, validate_scope};

/// The `_meta` key naming the scope.
pub(crate) const META_SCOPE: &str = "mcpwatch/scope";
/// The prefix of mcpwatch's own `_meta` keys, stripped before forwarding.
const META_PREFIX: &str = "mcpwatch/";
/// The `_meta` key a result on a fresh session after a lost one carries.
pub(crate) const META_RECOVERED: &str = "mcpwatch/session_recovered";

/// The named sources of one request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScopeSources<'a> {
    pub(crate) header: Option<&'a str>,
    pub(crate) meta: Option<&'a str>,
    pub(crate) path: Option<&'a str>,
    /// The downstream session's id, when there is a session.
    pub(crate) session: Option<&'a str>,
}

/// Why a request's scope is refused (JSON-RPC -32602).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ScopeError {
    /// Two named sources disagree.
    #[error(
        "the scope sources disagree: {first_source} says {first:?}, {second_source} says {second:?}"
    )]
    Disagree {
        first_source: &'static str,
        first: String,
        second_source: &'static str,
        second: String,
    },
    /// A named scope is not a valid scope name.
    #[error("invalid scope from {source_name}: {message}")]
    Invalid {
        source_name: &'static str,
        message: String,
    },
}

impl ScopeSources<'_> {
    /// The scope to run in.
    pub(crate) fn resolve(&self) -> Result<String, ScopeError> {
        let named = [
            ("the X-Mcpwatch-Scope header", self.header),
            ("params._meta[\"mcpwatch/scope\"]", self.meta),
            ("the path", self.path),
        ];
        let mut chosen: Option<(&'static str, &str)> = None;
        for (source, value) in named {
            let Some(value) = value else { continue };
            validate_scope(Some(value)).map_err(|e| ScopeError::Invalid {
                source_name: source,
                message: e.to_string(),
            })?;
            match chosen {
                Some((first_source, first)) if first != value => {
                    return Err(ScopeError::Disagree {
                        first_source,
                        first: first.to_owned(),
                        second_source: source,
                        second: value.to_owned(),
                    });
                }
                Some(_) => {}
                None => chosen = Some((source, value)),
            }
        }
        Ok(match (chosen, self.session) {
            (Some((_, scope)), _) => scope.to_owned(),
            (None, Some(id)) => format!("~s:{id}"),
            (None, None) => DEFAULT_SCOPE.to_owned(),
        })
    }
}

/// The scope named in `params._meta`, if any (a non-string is an error).
pub(crate) fn meta_scope(params: Option<&Map<String, Value>>) -> Result<Option<&str>, ScopeError> {
    let Some(value) = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_SCOPE))
    else {
        return Ok(None);
    };
    value.as_str().map(Some).ok_or(ScopeError::Invalid {
        source_name: "params._meta[\"mcpwatch/scope\"]",
        message: "must be a string".to_owned(),
    })
}

/// The per-request keys of 2026-07-28 (SEP-2575): they describe the client's
/// request to the gateway, not the gateway's session upstream.
const PER_REQUEST_KEYS: [&str; 4] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/logLevel",
];

/// Prepares `params._meta` for forwarding: strips `mcpwatch/*` keys, the
/// 2026-07-28 per-request keys, the client's trace context (the gateway's
/// span context replaces it) and the progress token (the runtime sends its
/// own and maps progress back).
/// Returns the client's progress token.
pub(crate) fn prepare_meta(params: &mut Option<Map<String, Value>>) -> Option<Value> {
    let params = params.as_mut()?;
    let Some(Value::Object(meta)) = params.get_mut("_meta") else {
        return None;
    };
    meta.retain(|key, _| {
        !key.starts_with(META_PREFIX) && !PER_REQUEST_KEYS.contains(&key.as_str())
    });
    meta.remove("traceparent");
    meta.remove("tracestate");
    let token = meta.remove("progressToken");
    if meta.is_empty() {
        params.remove("_meta");
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_sources_must_agree_and_win_over_the_session() {
        let sources = |header, meta, path, session| ScopeSources {
            header,
            meta,
            path,
            session,
        };
        assert_eq!(
            sources(None, None, None, None).resolve().unwrap(),
            "default"
        );
        assert_eq!(
            sources(None, None, None, Some("abc")).resolve().unwrap(),
            "~s:abc"
        );
        assert_eq!(
            sources(Some("t1"), None, None, Some("abc"))
                .resolve()
                .unwrap(),
            "t1"
        );
        assert_eq!(
            sources(Some("t1"), Some("t1"), Some("t1"), None)
                .resolve()
                .unwrap(),
            "t1"
        );
        assert_eq!(sources(None, None, Some("p"), None).resolve().unwrap(), "p");
        assert!(matches!(
            sources(Some("t1"), Some("t2"), None, None).resolve(),
            Err(ScopeError::Disagree { .. })
        ));
        assert!(matches!(
            sources(None, Some("t1"), Some("t2"), None).resolve(),
            Err(ScopeError::Disagree { .. })
        ));
        assert!(matches!(
            sources(Some("~s:abc"), None, None, None).resolve(),
            Err(ScopeError::Invalid { .. })
        ));
    }

    #[test]
    fn forwarded_meta_keeps_only_what_is_not_ours() {
        let mut params = json!({"name": "echo", "_meta": {
            "mcpwatch/scope": "t1", "mcpwatch/x": 1, "traceparent": "00-a-b-01",
            "progressToken": 7, "vendor/key": "kept",
            "io.modelcontextprotocol/protocolVersion": "2026-07-28"}})
        .as_object()
        .cloned();
        assert_eq!(meta_scope(params.as_ref()).unwrap(), Some("t1"));
        assert_eq!(prepare_meta(&mut params), Some(json!(7)));
        assert_eq!(
            Value::Object(params.unwrap()),
            json!({"name": "echo", "_meta": {"vendor/key": "kept"}})
        );
        let mut only_ours = json!({"_meta": {"mcpwatch/scope": "t1"}})
            .as_object()
            .cloned();
        prepare_meta(&mut only_ours);
        assert_eq!(Value::Object(only_ours.unwrap()), json!({}));
    }
}
