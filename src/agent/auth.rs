//! Bearer-token check for the API, in constant time.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AgentState;
use crate::runtime::ErrorKind;

/// Refuses requests without the configured token (when one is configured).
pub(crate) fn check(state: &AgentState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.token.as_ref() else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(token) if token_matches(token, expected.expose()) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorKind::Unauthorized, "wrong bearer token")),
        None => Err(ApiError::new(
            ErrorKind::Unauthorized,
            "missing `Authorization: Bearer <token>` header",
        )),
    }
}

/// Compares in time that depends on the lengths only, not on where they differ.
fn token_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn compares_whole_tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
    }
}
