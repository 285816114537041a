//! API errors: `{"error": {"type": ErrorKind, "message": ..., "may_have_run": bool}}`
//! with the status of DESIGN §4.
//!
//! `may_have_run` is [`ErrorKind::tool_may_have_run`]: false when the call was
//! refused before the tool could run (a retry is safe whatever the tool does),
//! true when it may have run (retry with the same `Idempotency-Key`, or only if
//! the tool is idempotent).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::runtime::{Error, ErrorKind};

/// An error answered by the API.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// The bounded kind (the `type` field and the status).
    pub kind: ErrorKind,
    /// For people; never a secret.
    pub message: String,
    /// The upstream's `Retry-After`, passed on.
    pub retry_after: Option<String>,
}

/// The JSON body of an error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    may_have_run: bool,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A malformed request.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    /// The serialized JSON body: `{"error": {"type", "message", "may_have_run"}}`.
    pub(crate) fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: ErrorFields {
                kind: self.kind.as_str(),
                message: &self.message,
                may_have_run: self.kind.tool_may_have_run(),
            },
        };
        // Strings and a bool: serializing cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The answer with `status` rather than the kind's own (the JSON 404).
    pub(crate) fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        if let Some(value) = self
            .retry_after
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.kind == ErrorKind::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError {
            kind: error.kind(),
            message: error.to_string(),
            retry_after: error.retry_after().map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        self.into_response_with(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_says_whether_the_tool_may_have_run() {
        for kind in ErrorKind::ALL {
            let body: serde_json::Value =
                serde_json::from_slice(&ApiError::new(kind, "m\"x").body()).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"error": {"type": kind.as_str(), "message": "m\"x",
                    "may_have_run": kind.tool_may_have_run()}})
            );
        }
        let text = String::from_utf8(ApiError::new(ErrorKind::Timeout, "late").body()).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"type":"timeout","message":"late","may_have_run":true}}"#
        );
    }
}
