//! API errors: `{"error": {"type": ErrorKind, "message": ...}}` with the status of DESIGN §4.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
        let body = json!({"error": {"type": self.kind.as_str(), "message": self.message}});
        let mut response = (status, axum::Json(body)).into_response();
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
