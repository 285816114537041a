//! The admin listener: `/metrics`, `/healthz`, `/readyz`. It serves no calls,
//! so it may listen on a pod address without a token.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::state::AgentState;

/// The admin routes.
pub(crate) fn router() -> Router<AgentState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn metrics(State(state): State<AgentState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.runtime.metrics().render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// 200 once warm servers are ready; 503 before that and while draining.
async fn readyz(State(state): State<AgentState>) -> Response {
    if state.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response()
    } else if !state.runtime.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "warming"})),
        )
            .into_response()
    } else {
        axum::Json(json!({"status": "ready"})).into_response()
    }
}
