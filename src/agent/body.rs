//! JSON request bodies with our own errors: 413 past `agent.max_body_bytes`,
//! 400 naming the problem (line, column and field) for anything malformed.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AgentState;
use crate::runtime::ErrorKind;

/// A JSON body parsed into `T`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AgentState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request<Body>,
        state: &AgentState,
    ) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|error| {
                if is_length_limit(&error) {
                    too_large(limit)
                } else {
                    ApiError::invalid(format!("cannot read the request body: {error}"))
                }
            })?;
        if bytes.is_empty() {
            return Err(ApiError::invalid(
                "the request body is empty; send a JSON object",
            ));
        }
        // The fast path: plain serde_json. Only a body that fails is parsed again
        // with serde_path_to_error, whose path tracking costs every field, for an
        // error that names where the problem is.
        if let Ok(value) = serde_json::from_slice(&bytes) {
            return Ok(JsonBody(value));
        }
        // serde_json's recursion limit (128) stays on: deeply nested JSON is an error, not a stack overflow.
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if path == "." || path.is_empty() {
                ApiError::invalid(format!("invalid JSON body: {inner}"))
            } else {
                ApiError::invalid(format!("invalid JSON body at `{path}`: {inner}"))
            }
        })?;
        deserializer
            .end()
            .map_err(|error| ApiError::invalid(format!("invalid JSON body: {error}")))?;
        Ok(JsonBody(value))
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is larger than agent.max_body_bytes ({limit} bytes)"),
    )
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.to_string().contains("length limit exceeded") {
            return true;
        }
        source = cause.source();
    }
    false
}
