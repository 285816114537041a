//! How an answer goes back (DESIGN §10): plain JSON when the result arrives
//! within 100 ms and nothing was sent before it; otherwise an SSE stream that
//! carries the messages before the answer (progress, logs, the server's
//! requests) and then the answer, with a keep-alive comment every
//! `gateway.keepalive_interval`.
//!
//! The request runs in its own task. A [`CancelOnDrop`] held by the waiting
//! handler, then by the SSE stream, cancels it when the client goes away
//! (the disconnect cancellation of DESIGN §10).
//!
//! In a 2025-11-25 session an SSE answer opens with the priming event of
//! SEP-1699 (an event id, `retry`, empty data). The gateway replays nothing on
//! a `GET` with `Last-Event-ID`: a disconnect cancels the call.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::jsonrpc;
use super::outbox::Outgoing;

/// How long an answer may take and still go back as plain JSON.
pub(crate) const JSON_WITHIN: Duration = Duration::from_millis(100);

/// The `retry` of a priming event: how long a client that lost an SSE answer
/// waits before it reconnects (SEP-1699).
const PRIMING_RETRY: Duration = Duration::from_secs(1);

/// Cancels its token when dropped, unless disarmed.
pub(crate) struct CancelOnDrop(Option<CancellationToken>);

impl CancelOnDrop {
    pub(crate) fn new(token: CancellationToken) -> CancelOnDrop {
        CancelOnDrop(Some(token))
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

/// The answer to one request whose task sends to `rx`; an SSE answer opens
/// with a priming event of id `priming`, when given.
pub(crate) async fn respond(
    mut rx: mpsc::Receiver<Outgoing>,
    mut guard: CancelOnDrop,
    keepalive: Duration,
    priming: Option<String>,
) -> Response {
    match tokio::time::timeout(JSON_WITHIN, rx.recv()).await {
        Ok(Some(Outgoing::Final(answer))) => {
            guard.disarm();
            json(StatusCode::OK, &answer)
        }
        Ok(Some(Outgoing::Note(first))) => primed(sse(Some(first), rx, guard, keepalive), priming),
        Ok(None) => {
            guard.disarm();
            let answer = jsonrpc::error_answer(
                &Value::Null,
                jsonrpc::INTERNAL_ERROR,
                "the request ended without an answer",
                None,
            );
            json(StatusCode::INTERNAL_SERVER_ERROR, &answer)
        }
        Err(_) => primed(sse(None, rx, guard, keepalive), priming),
    }
}

/// An SSE `response` opened by the priming event `id` (SEP-1699): an event
/// id, a `retry` and an empty `data` line, before anything else. axum's
/// `Event` writes no empty `data` line, so the event goes as raw bytes.
fn primed(response: Response, id: Option<String>) -> Response {
    let Some(id) = id else {
        return response;
    };
    let priming = Bytes::from(format!(
        "id: {id}\nretry: {}\ndata: \n\n",
        PRIMING_RETRY.as_millis()
    ));
    response.map(|body| {
        let head = stream::once(async move { Ok::<Bytes, axum::Error>(priming) });
        Body::from_stream(futures::StreamExt::chain(head, body.into_data_stream()))
    })
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An SSE answer: `first` (if any), then what `rx` carries, up to the answer.
fn sse(
    first: Option<Value>,
    rx: mpsc::Receiver<Outgoing>,
    guard: CancelOnDrop,
    keepalive: Duration,
) -> Response {
    let head = stream::iter(first.map(|v| Ok(event(&v))));
    let rest = stream::unfold((rx, guard, false), |(mut rx, guard, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await? {
            Outgoing::Note(message) => Some((Ok(event(&message)), (rx, guard, false))),
            Outgoing::Final(answer) => {
                let mut guard = guard;
                guard.disarm();
                Some((Ok(event(&answer)), (rx, guard, true)))
            }
        }
    });
    stream_response(futures::StreamExt::chain(head, rest), keepalive)
}

/// An SSE response of `events`, with keep-alive comments.
pub(crate) fn stream_response(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    keepalive: Duration,
) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive))
        .into_response()
}

/// One SSE `message` event carrying a JSON-RPC message.
pub(crate) fn event(message: &Value) -> Event {
    Event::default().event("message").data(message.to_string())
}
