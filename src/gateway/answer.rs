//! How an answer goes back (DESIGN §10): plain JSON when the result arrives
//! within 100 ms and nothing was sent before it; otherwise an SSE stream that
//! carries the messages before the answer (progress, logs, the server's
//! requests) and then the answer, with a keep-alive comment every
//! `gateway.keepalive_interval`.
//!
//! The request's future is polled by the handler, then by the SSE stream: no
//! task of its own. When the client goes away the response is dropped, and
//! with it the request's future, which cancels the upstream request (the
//! runtime's abandon guard): the disconnect cancellation of DESIGN §10.
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
use futures::future::BoxFuture;
use futures::stream::{self, Stream};
use serde_json::Value;
use tokio::sync::mpsc;

use super::outbox::Outgoing;

/// How long an answer may take and still go back as plain JSON.
pub(crate) const JSON_WITHIN: Duration = Duration::from_millis(100);

/// The `retry` of a priming event: how long a client that lost an SSE answer
/// waits before it reconnects (SEP-1699).
const PRIMING_RETRY: Duration = Duration::from_secs(1);

/// A request being answered: its answer, computed by polling it.
pub(crate) type Serving = BoxFuture<'static, Value>;

/// The answer to one request: `serving` computes it; `rx` carries what is
/// sent before it (progress, logs, the server's requests).
pub(crate) async fn respond(
    mut serving: Serving,
    mut rx: mpsc::Receiver<Outgoing>,
    keepalive: Duration,
    priming: Option<String>,
) -> Response {
    let within = tokio::time::sleep(JSON_WITHIN);
    tokio::pin!(within);
    let phase = tokio::select! {
        biased;
        answer = &mut serving => match rx.try_recv() {
            // Nothing was sent before it: plain JSON.
            Err(_) => return json(StatusCode::OK, &answer),
            Ok(Outgoing::Note(first)) => (Some(first), Phase::Answered(answer)),
        },
        Some(Outgoing::Note(first)) = rx.recv() => (Some(first), Phase::Running(serving)),
        () = &mut within => (None, Phase::Running(serving)),
    };
    primed(sse(phase.0, phase.1, rx, keepalive), priming)
}

/// Where an SSE answer is.
enum Phase {
    /// The request runs.
    Running(Serving),
    /// The answer is in; the messages sent before it go first.
    Answered(Value),
    /// The answer went out.
    Done,
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

/// An SSE answer: `first` (if any), then the messages `rx` carries while the
/// request runs, then the answer.
fn sse(
    first: Option<Value>,
    phase: Phase,
    rx: mpsc::Receiver<Outgoing>,
    keepalive: Duration,
) -> Response {
    let head = stream::iter(first.map(|v| Ok(event(&v))));
    let rest = stream::unfold((phase, rx), |(phase, mut rx)| async move {
        let (message, next) = match phase {
            Phase::Done => return None,
            Phase::Answered(answer) => match rx.try_recv() {
                Ok(Outgoing::Note(note)) => (note, Phase::Answered(answer)),
                Err(_) => (answer, Phase::Done),
            },
            Phase::Running(mut serving) => tokio::select! {
                biased;
                Some(Outgoing::Note(note)) = rx.recv() => (note, Phase::Running(serving)),
                answer = &mut serving => match rx.try_recv() {
                    Ok(Outgoing::Note(note)) => (note, Phase::Answered(answer)),
                    Err(_) => (answer, Phase::Done),
                },
            },
        };
        Some((Ok(event(&message)), (next, rx)))
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
