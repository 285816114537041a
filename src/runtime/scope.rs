//! Scope names: the caller's unit of state, usually an orchestrator thread id.

use super::error::Error;

/// The scope used when the caller gives none.
pub const DEFAULT_SCOPE: &str = "default";

/// Longest accepted scope name.
pub const MAX_SCOPE_LEN: usize = 200;

/// Checks a scope name: 1 to 200 characters of `[A-Za-z0-9._:@-]` (DESIGN §3).
/// `None` is the scope `default`.
pub fn validate_scope(scope: Option<&str>) -> Result<&str, Error> {
    let Some(scope) = scope else {
        return Ok(DEFAULT_SCOPE);
    };
    if scope.is_empty() {
        return Err(invalid("scope is empty"));
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err(invalid(&format!(
            "scope is {} bytes long; the limit is {MAX_SCOPE_LEN}",
            scope.len()
        )));
    }
    if let Some(bad) = scope
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')))
    {
        return Err(invalid(&format!(
            "scope contains {bad:?}; a scope is 1 to {MAX_SCOPE_LEN} characters of [A-Za-z0-9._:@-]"
        )));
    }
    Ok(scope)
}

/// The prefix of a gateway session's scope, `~s:{session id}` (DESIGN §10).
/// Named scopes cannot take it: `~` is not in their alphabet.
pub(crate) const SESSION_SCOPE_PREFIX: &str = "~s:";

/// Like [`validate_scope`], also accepting a gateway session scope.
pub(crate) fn validate_any_scope(scope: Option<&str>) -> Result<&str, Error> {
    match scope.and_then(|s| s.strip_prefix(SESSION_SCOPE_PREFIX)) {
        Some(id) => validate_scope(Some(id)).and(scope.ok_or_else(|| invalid("no scope"))),
        None => validate_scope(scope),
    }
}

fn invalid(message: &str) -> Error {
    Error::InvalidRequest {
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_thread_ids_and_defaults() {
        assert_eq!(validate_scope(None).unwrap(), "default");
        for ok in [
            "a",
            "thread-1",
            "user@example.com",
            "run:42.step_3",
            &"x".repeat(200),
        ] {
            assert_eq!(validate_scope(Some(ok)).unwrap(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "../etc",
            "a b",
            "new\nline",
            "é",
            "a/b",
            &"x".repeat(201),
            "\0",
        ] {
            let error = validate_scope(Some(bad)).unwrap_err();
            assert_eq!(
                error.kind(),
                super::super::ErrorKind::InvalidRequest,
                "{bad:?}"
            );
        }
    }
}
