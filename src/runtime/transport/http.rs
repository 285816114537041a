//! Streamable HTTP: rmcp's transport over one shared keep-alive client, with
//! rmcp's silent re-initialization off so that mcpwatch sees (and counts) every
//! lost session.
//!
//! [`TrackingClient`] wraps the shared `reqwest::Client` to do two things rmcp
//! does not: remember the `Mcp-Session-Id` (for spans and the session list), and
//! turn an id-less JSON-RPC error answering a request into an error. rmcp drops
//! such errors (it cannot match them to a request), so the call would hang until
//! its deadline; server-everything answers every stale session that way (HTTP 400,
//! "No valid session ID provided").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ErrorData, JsonRpcMessage, RequestId};
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use sse_stream::{Error as SseError, Sse};

use super::Phase;
use crate::config::ServerConfig;
use crate::runtime::error::Error;

/// Requests one session may have in flight over HTTP.
const MAX_CONCURRENT_REQUESTS: usize = 64;

/// rmcp's own cap on a JSON (non-SSE) response body; below it, ours is checked here.
const RMCP_MAX_JSON_RESPONSE: usize = 16 * 1024 * 1024;

/// Session `DELETE`s in flight at once, in this process.
///
/// Closing many sessions at once (shutdown, `close_server`, a burst of evictions)
/// sends one `DELETE` per session. Each would check out a keep-alive connection,
/// find none idle (every session's GET stream holds its own connection, still
/// closing) and open a new one: two sockets per session at the worst moment on
/// each side (10,000 sessions shut down: 17,000 fds on the server, and at the fd
/// limit the `DELETE`s fail and the server keeps those sessions until its own idle
/// timeout). Queued behind this bound they reuse the connections of the ones before
/// them. rmcp bounds the whole `DELETE`, wait included, by 5 s.
const MAX_CONCURRENT_DELETES: usize = 64;

/// The permits of [`MAX_CONCURRENT_DELETES`].
static DELETES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_DELETES);

/// The session id the server issued, shared between the transport and the session.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionIdCell(Arc<Mutex<Option<Arc<str>>>>);

impl SessionIdCell {
    /// The current `Mcp-Session-Id`, if the server issued one.
    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .ok()
            .and_then(|id| id.as_deref().map(str::to_owned))
    }

    fn set(&self, id: &str) {
        if let Ok(mut slot) = self.0.lock()
            && slot.as_deref() != Some(id)
        {
            *slot = Some(Arc::from(id));
        }
    }
}

/// The shared HTTP client for every http and sse server of a runtime: keep-alive
/// connections, `TCP_NODELAY` (which avoids the delayed-ACK stalls that made rmcp
/// turn pooling off), same-origin 307/308 redirects only.
pub(crate) fn shared_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let keeps_body = matches!(attempt.status().as_u16(), 307 | 308);
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if keeps_body && same_origin && attempt.previous().len() < 10 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
}

/// The HTTP client and the transport config of one session (the caller builds
/// the rmcp transport, with the client wrapped for OAuth where configured).
pub(crate) fn parts(
    client: &reqwest::Client,
    spec: &ServerConfig,
    session_id: SessionIdCell,
) -> Result<(TrackingClient, StreamableHttpClientTransportConfig), String> {
    let headers: HashMap<HeaderName, HeaderValue> = header_map(spec)?
        .into_iter()
        .filter_map(|(name, value)| Some((name?, value)))
        .collect();
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(spec.url.clone().unwrap_or_default())
            .reinit_on_expired_session(false)
            .max_concurrent_requests(MAX_CONCURRENT_REQUESTS)
            .max_sse_event_size(spec.max_response_bytes)
            .custom_headers(headers);
    let mut reconnect = ExponentialBackoff::default();
    reconnect.max_times = Some(5);
    reconnect.base_duration = Duration::from_millis(500);
    reconnect.max_delay = Some(Duration::from_secs(8));
    config.retry_config = Arc::new(reconnect);
    let tracking = TrackingClient {
        inner: client.clone(),
        session_id,
        max_response_bytes: spec.max_response_bytes,
    };
    Ok((tracking, config))
}

/// `reqwest::Client` plus session-id tracking and id-less error detection.
#[derive(Clone)]
pub(crate) struct TrackingClient {
    inner: reqwest::Client,
    session_id: SessionIdCell,
    /// rmcp bounds SSE events by this, but JSON bodies only by its own 16 MiB.
    max_response_bytes: usize,
}

/// Marks the JSON-RPC error that stands in for a request's SSE answer whose event
/// exceeded `max_response_bytes` (`data.mcpwatch`); see [`too_large_limit`].
const TOO_LARGE_MARKER: &str = "response_too_large";

/// The limit, if `error` is the stand-in for an oversized SSE answer.
pub(crate) fn too_large_limit(error: &ErrorData) -> Option<usize> {
    let data = error.data.as_ref()?;
    (data.get("mcpwatch")?.as_str()? == TOO_LARGE_MARKER)
        .then(|| data.get("limit")?.as_u64())
        .flatten()
        .map(|limit| limit as usize)
}

/// rmcp ends a request's SSE answer whose event is over the limit with a stream
/// error that reaches the caller as `transport_closed` (and so would retire a
/// healthy session). This turns that error into a JSON-RPC error answering the
/// request, which [`too_large_limit`] recognizes, and ends the stream.
fn bound_sse_answer(
    stream: BoxStream<'static, Result<Sse, SseError>>,
    id: RequestId,
    limit: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    stream
        .scan(false, move |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let item = match item {
                Err(error) if super::rmcp_text::is_sse_event_too_large(&error) => {
                    *ended = true;
                    let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32603,
                        "message": format!("response larger than max_response_bytes ({limit} bytes)"),
                        "data": {"mcpwatch": TOO_LARGE_MARKER, "limit": limit}}});
                    Ok(Sse::default().event("message").data(answer.to_string()))
                }
                other => other,
            };
            futures::future::ready(Some(item))
        })
        .boxed()
}

/// An `io::Write` that fails once more than its budget is written: measuring a
/// message's JSON size stops at the limit.
struct Budget(usize);

impl std::io::Write for Budget {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self
            .0
            .checked_sub(buf.len())
            .ok_or_else(|| std::io::Error::other("over budget"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TrackingClient {
    fn check_reply(
        &self,
        message: &ClientJsonRpcMessage,
        session_attached: bool,
        reply: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        let reply = reply?;
        let session = match &reply {
            StreamableHttpPostResponse::Json(_, session)
            | StreamableHttpPostResponse::Sse(_, session) => session.as_deref(),
            _ => None,
        };
        if let Some(session) = session {
            self.session_id.set(session);
        }
        if let StreamableHttpPostResponse::Json(answer, _) = &reply
            && self.max_response_bytes < RMCP_MAX_JSON_RESPONSE
            && serde_json::to_writer(Budget(self.max_response_bytes), answer).is_err()
        {
            return Err(StreamableHttpError::ResponseBodyTooLarge {
                max_size: self.max_response_bytes,
            });
        }
        if let StreamableHttpPostResponse::Json(JsonRpcMessage::Error(error), _) = &reply
            && error.id.is_none()
            && matches!(message, JsonRpcMessage::Request(_))
        {
            if session_attached && super::rmcp_text::names_the_session(&error.error.message) {
                return Err(StreamableHttpError::SessionExpired);
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!(
                    "JSON-RPC error without an id: {} {}",
                    error.error.code.0, error.error.message
                )
                .into(),
            ));
        }
        Ok(reply)
    }
}

impl StreamableHttpClient for TrackingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let attached = session_id.is_some();
        let reply = self
            .inner
            .post_message(
                uri,
                message.clone(),
                session_id,
                auth_header,
                custom_headers,
            )
            .await;
        self.check_reply(&message, attached, reply)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let attached = session_id.is_some();
        // Only requests need the reply check; keep the clone off the other messages.
        let request = matches!(message, JsonRpcMessage::Request(_)).then(|| message.clone());
        let reply = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        match request {
            Some(request) => match self.check_reply(&request, attached, reply) {
                Ok(StreamableHttpPostResponse::Sse(stream, session)) => {
                    let JsonRpcMessage::Request(sent) = &request else {
                        return Ok(StreamableHttpPostResponse::Sse(stream, session));
                    };
                    let stream = bound_sse_answer(stream, sent.id.clone(), max_sse_event_size);
                    Ok(StreamableHttpPostResponse::Sse(stream, session))
                }
                other => other,
            },
            None => reply,
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        // The semaphore is never closed; were it, the DELETE would go unbounded.
        let _permit = DELETES.acquire().await.ok();
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// The configured extra headers (values are secrets: errors name the header only).
pub(crate) fn header_map(spec: &ServerConfig) -> Result<http::HeaderMap, String> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name `{name}`"))?;
        let value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("bad value for header `{name}`"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The kind of a streamable HTTP transport error.
pub(crate) fn classify(
    server: &str,
    error: &StreamableHttpError<reqwest::Error>,
    phase: Phase,
) -> Error {
    let server = server.to_owned();
    match error {
        StreamableHttpError::SessionExpired => Error::SessionExpired {
            server,
            detail: "the server no longer knows the session".to_owned(),
        },
        StreamableHttpError::HttpStatus(status) => {
            http_status(server, status.status, status.retry_after.clone())
        }
        StreamableHttpError::AuthRequired(_) => http_status(server, 401, None),
        StreamableHttpError::InsufficientScope(_) => http_status(server, 403, None),
        StreamableHttpError::ResponseBodyTooLarge { max_size } => Error::ResponseTooLarge {
            server,
            limit: *max_size,
        },
        StreamableHttpError::Client(inner) if inner.is_connect() => Error::ConnectFailed {
            server,
            detail: describe_reqwest(inner),
        },
        StreamableHttpError::Client(inner) => phase.closed(server, describe_reqwest(inner)),
        StreamableHttpError::UnexpectedServerResponse(text) => {
            match super::rmcp_text::http_status_in(text) {
                Some(status) => http_status(server, status, None),
                None => Error::Protocol {
                    server,
                    detail: text.to_string(),
                },
            }
        }
        StreamableHttpError::TransportChannelClosed
        | StreamableHttpError::UnexpectedEndOfStream => phase.closed(server, error.to_string()),
        other => Error::Protocol {
            server,
            detail: other.to_string(),
        },
    }
}

/// An upstream HTTP error status (429 is `rate_limited`).
fn http_status(server: String, status: u16, retry_after: Option<String>) -> Error {
    if status == 429 {
        return Error::RateLimited {
            server,
            retry_after,
        };
    }
    Error::HttpStatus {
        server,
        status,
        retry_after,
    }
}

/// The error with its causes: reqwest's own text hides them ("error sending request").
fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
