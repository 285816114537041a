//! Legacy HTTP+SSE client transport (MCP protocol 2024-11-05).
//!
//! rmcp removed its own SSE client in 0.11, so this module provides one:
//!
//! 1. `GET` the SSE URL with `Accept: text/event-stream`.
//! 2. The server's first event is `endpoint`; its data is a (usually relative) URL,
//!    resolved against the SSE URL, to which every client message is `POST`ed.
//!    It must be same-origin with the SSE URL, so a hostile server cannot redirect
//!    our POSTs (and their auth headers) elsewhere.
//! 3. Server messages arrive as `message` events (or events without a name).
//! 4. There is no `DELETE`: closing the session means dropping the GET stream.

use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use http::{HeaderMap, HeaderValue, header};
use reqwest::Response;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    service::RoleClient,
    transport::Transport,
};
use sse_stream::{Sse, SseStream};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use url::Url;

/// Capacity of the channel between the background reader and [`Transport::receive`].
const CHANNEL_CAPACITY: usize = 32;

type EventStream = BoxStream<'static, Result<Sse, sse_stream::Error>>;

/// Settings for [`LegacySseTransport::connect`].
#[derive(Debug, Clone)]
pub(crate) struct SseOptions {
    /// The SSE URL (for example `http://host:3001/sse`).
    pub url: Url,
    /// Extra headers (for example `Authorization`) sent on the GET and on every POST.
    pub headers: HeaderMap,
    /// Upper bound for the GET plus the wait for the `endpoint` event.
    pub connect_timeout: Duration,
    /// Largest accepted SSE event, in bytes; a larger event ends the stream.
    pub max_event_bytes: usize,
}

impl SseOptions {
    /// Options for `url` with no extra headers, a 10 s connect timeout and a 16 MiB event limit.
    #[cfg(test)]
    pub(crate) fn new(url: Url) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            connect_timeout: Duration::from_secs(10),
            max_event_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Errors of the legacy SSE transport. Messages never contain header values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SseError {
    /// The HTTP request failed (connect, I/O or body error).
    #[error("SSE transport HTTP request failed: {0}")]
    Connect(#[source] reqwest::Error),
    /// The server answered with a non-success status.
    #[error("SSE server answered HTTP {status}")]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header, when present and printable.
        retry_after: Option<String>,
    },
    /// The stream ended, failed or timed out before the `endpoint` event arrived.
    #[error("SSE stream ended or timed out before the endpoint event")]
    NoEndpoint,
    /// The `endpoint` event was not a valid same-origin URL.
    #[error("bad SSE endpoint: {0}")]
    BadEndpoint(String),
    /// An SSE event exceeded [`SseOptions::max_event_bytes`].
    #[error("SSE event exceeded the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The SSE stream was not valid `text/event-stream` data.
    #[error("malformed SSE stream: {0}")]
    Malformed(String),
    /// The transport was closed (or the GET stream ended).
    #[error("SSE transport closed")]
    Closed,
    /// A client message could not be serialized.
    #[error("failed to encode JSON-RPC message: {0}")]
    Encode(#[source] serde_json::Error),
}

impl SseError {
    /// The kind of this error, in `phase`.
    pub(crate) fn classify(
        &self,
        server: &str,
        phase: super::Phase,
    ) -> crate::runtime::error::Error {
        use crate::runtime::error::Error;
        let server = server.to_owned();
        match self {
            SseError::Connect(_) => Error::ConnectFailed {
                server,
                detail: self.to_string(),
            },
            SseError::HttpStatus {
                status: 429,
                retry_after,
            } => Error::RateLimited {
                server,
                retry_after: retry_after.clone(),
            },
            SseError::HttpStatus {
                status,
                retry_after,
            } => Error::HttpStatus {
                server,
                status: *status,
                retry_after: retry_after.clone(),
            },
            SseError::EventTooLarge { limit } => Error::ResponseTooLarge {
                server,
                limit: *limit,
            },
            _ => phase.closed(server, self.to_string()),
        }
    }
}

/// A legacy HTTP+SSE client transport for rmcp, usable as `client_config.serve(transport)`.
///
/// A background task, owned by the transport, reads the GET stream; it is cancelled
/// (dropping the connection) on [`Transport::close`] and on `Drop`. The endpoint is checked
/// to be same-origin, but redirects of the POSTs follow the `reqwest::Client`'s redirect
/// policy: use one that stays same-origin (or `Policy::none()`) when sending credentials.
#[derive(Debug)]
pub(crate) struct LegacySseTransport {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    rx: mpsc::Receiver<ServerJsonRpcMessage>,
    cancel: CancellationToken,
    reader: Option<JoinHandle<()>>,
}

impl LegacySseTransport {
    /// Connects: GET the SSE URL, wait for the `endpoint` event (bounded by `options.connect_timeout`).
    pub(crate) async fn connect(
        client: reqwest::Client,
        options: SseOptions,
    ) -> Result<Self, SseError> {
        let SseOptions {
            url,
            headers,
            connect_timeout,
            max_event_bytes,
        } = options;
        let handshake = async {
            let mut get_headers = headers.clone();
            let accept = HeaderValue::from_static("text/event-stream");
            get_headers.insert(header::ACCEPT, accept);
            let response = client
                .get(url.clone())
                .headers(get_headers)
                .send()
                .await
                .map_err(SseError::Connect)?;
            let response = check_status(response)?;
            let mut events = bounded_events(response, max_event_bytes);
            while let Some(event) = events.next().await {
                let event = event.map_err(stream_error)?;
                match (event.event.as_deref(), event.data) {
                    (Some("endpoint"), Some(data)) => {
                        return Ok((resolve_endpoint(&url, &data)?, events));
                    }
                    (name, _) => tracing::warn!(?name, "ignoring SSE event before the endpoint"),
                }
            }
            Err(SseError::NoEndpoint)
        };
        let (endpoint, events) = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| SseError::NoEndpoint)??;
        tracing::debug!(%endpoint, "legacy SSE endpoint received");

        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let reader = tokio::spawn(read_events(events, tx, cancel.clone()));
        Ok(Self {
            client,
            endpoint,
            headers,
            rx,
            cancel,
            reader: Some(reader),
        })
    }

    /// The resolved URL that client messages are POSTed to.
    #[cfg(test)]
    pub(crate) fn endpoint(&self) -> &Url {
        &self.endpoint
    }
}

impl Transport<RoleClient> for LegacySseTransport {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let cancel = self.cancel.clone();
        let mut headers = self.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let request = serde_json::to_vec(&item)
            .map_err(SseError::Encode)
            .map(|body| {
                self.client
                    .post(self.endpoint.clone())
                    .headers(headers)
                    .body(body)
            });
        async move {
            if cancel.is_cancelled() {
                return Err(SseError::Closed);
            }
            let response = cancel
                .run_until_cancelled(request?.send())
                .await
                .ok_or(SseError::Closed)?
                .map_err(SseError::Connect)?;
            check_status(response).map(drop)
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        self.rx.recv().await
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.cancel.cancel();
        if let Some(reader) = self.reader.take() {
            // The reader only ends by cancellation or stream end; a JoinError means it was aborted.
            let _ = reader.await;
        }
        self.rx.close();
        Ok(())
    }
}

impl Drop for LegacySseTransport {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

/// Background task: forwards JSON-RPC messages from the SSE stream until it ends or is cancelled.
async fn read_events(
    mut events: EventStream,
    tx: mpsc::Sender<ServerJsonRpcMessage>,
    cancel: CancellationToken,
) {
    let pump = async {
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    let error = stream_error(e);
                    tracing::error!(%error, "legacy SSE stream failed; closing transport");
                    return;
                }
            };
            let (None | Some("message"), Some(data)) = (event.event.as_deref(), &event.data) else {
                tracing::debug!(name = ?event.event, "ignoring SSE event");
                continue;
            };
            match serde_json::from_str::<ServerJsonRpcMessage>(data) {
                Ok(message) => {
                    if tx.send(message).await.is_err() {
                        return; // the transport (receiver) is gone
                    }
                }
                Err(error) => tracing::warn!(%error, "skipping invalid JSON-RPC message from SSE"),
            }
        }
        tracing::debug!("legacy SSE stream ended");
    };
    cancel.run_until_cancelled(pump).await;
    // A legacy session lives exactly as long as its GET stream: fail further sends.
    cancel.cancel();
}

/// Maps a non-2xx response to [`SseError::HttpStatus`].
fn check_status(response: Response) -> Result<Response, SseError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Err(SseError::HttpStatus {
        status: status.as_u16(),
        retry_after,
    })
}

/// Resolves the `endpoint` event data against the SSE URL and enforces same-origin.
fn resolve_endpoint(sse_url: &Url, data: &str) -> Result<Url, SseError> {
    let endpoint = sse_url
        .join(data.trim())
        .map_err(|e| SseError::BadEndpoint(format!("invalid endpoint URL: {e}")))?;
    if endpoint.origin() != sse_url.origin() {
        return Err(SseError::BadEndpoint(format!(
            "endpoint origin {} differs from SSE origin {}",
            endpoint.origin().ascii_serialization(),
            sse_url.origin().ascii_serialization()
        )));
    }
    Ok(endpoint)
}

/// Turns a parser error back into ours (body and size-limit errors travel boxed inside it).
fn stream_error(error: sse_stream::Error) -> SseError {
    match error {
        sse_stream::Error::Body(inner) => match inner.downcast::<SseError>() {
            Ok(inner) => *inner,
            Err(other) => SseError::Malformed(other.to_string()),
        },
        other => SseError::Malformed(other.to_string()),
    }
}

/// Parses the response body as SSE, failing with [`SseError::EventTooLarge`] as soon as one
/// event's retained size (non-comment lines since the last blank line) exceeds `limit`,
/// before the parser buffers it.
fn bounded_events(response: Response, limit: usize) -> EventStream {
    let mut size = 0usize; // bytes of the current event so far
    let mut line = 0usize; // bytes of the current line so far
    let mut comment = false;
    let mut after_cr = false;
    let bytes = response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(SseError::Connect)?;
        for &b in chunk.iter() {
            if std::mem::take(&mut after_cr) && b == b'\n' {
                continue; // second half of a CRLF
            }
            match b {
                b'\r' | b'\n' => {
                    after_cr = b == b'\r';
                    size = match (line, comment) {
                        (0, _) => 0, // blank line: the event is complete
                        (_, true) => size,
                        (n, false) => size.saturating_add(n + 1),
                    };
                    (line, comment) = (0, false);
                }
                _ => {
                    comment |= line == 0 && b == b':';
                    line += 1;
                }
            }
            if size.saturating_add(line) > limit {
                return Err(SseError::EventTooLarge { limit });
            }
        }
        Ok(chunk)
    });
    SseStream::from_bytes_stream(bytes).boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
        time::Instant,
    };

    use axum::{
        Router,
        extract::State,
        http::{HeaderMap as AxHeaders, StatusCode},
        response::{
            IntoResponse,
            sse::{Event, Sse as AxSse},
        },
        routing::{get, post},
    };
    use rmcp::{
        ServiceExt,
        model::{CallToolRequestParams, ClientRequest, PingRequest, ServerResult},
    };
    use serde_json::{Value, json};

    use super::*;

    /// An in-process legacy SSE server: GET /sse sends `script` then relays responses;
    /// POST /message answers `post_status` and pushes the JSON-RPC response onto the stream.
    #[derive(Clone)]
    struct Fake {
        script: Vec<Event>,
        post_status: StatusCode,
        session: Arc<Mutex<Option<mpsc::Sender<Event>>>>,
        api_keys: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn new(script: Vec<Event>) -> Self {
            Self {
                script,
                post_status: StatusCode::ACCEPTED,
                session: Arc::default(),
                api_keys: Arc::default(),
            }
        }
        fn endpoint(path: &str) -> Event {
            Event::default().event("endpoint").data(path)
        }
        fn record_key(&self, headers: &AxHeaders) {
            let key = headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap().to_owned());
            self.api_keys.lock().unwrap().push(key.unwrap_or_default());
        }
        fn session(&self) -> mpsc::Sender<Event> {
            self.session
                .lock()
                .unwrap()
                .clone()
                .expect("no GET session")
        }
    }

    async fn sse_handler(State(fake): State<Fake>, headers: AxHeaders) -> impl IntoResponse {
        fake.record_key(&headers);
        let (tx, rx) = mpsc::channel(16);
        for event in fake.script.clone() {
            tx.send(event).await.unwrap();
        }
        *fake.session.lock().unwrap() = Some(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
        });
        AxSse::new(stream)
    }

    async fn message_handler(
        State(fake): State<Fake>,
        headers: AxHeaders,
        body: String,
    ) -> impl IntoResponse {
        fake.record_key(&headers);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        if fake.post_status != StatusCode::ACCEPTED {
            return (fake.post_status, [(header::RETRY_AFTER, "7")]).into_response();
        }
        let request: Value = serde_json::from_str(&body).unwrap();
        let (Some(id), Some(method)) = (request.get("id"), request["method"].as_str()) else {
            return StatusCode::ACCEPTED.into_response(); // notification or response
        };
        let result = match method {
            "initialize" => json!({"protocolVersion": "2024-11-05",
                "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "0.0.1"}}),
            "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
            "tools/call" => json!({"content": [{"type": "text",
                "text": format!("Echo: {}", request["params"]["arguments"]["message"])}]}),
            _ => json!({}),
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let event = Event::default().event("message").data(reply.to_string());
        fake.session().send(event).await.unwrap();
        StatusCode::ACCEPTED.into_response()
    }

    async fn serve(fake: Fake) -> Url {
        let app = Router::new()
            .route("/sse", get(sse_handler))
            .route("/message", post(message_handler))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Url::parse(&format!("http://{addr}/sse")).unwrap()
    }

    fn options(url: Url) -> SseOptions {
        let mut options = SseOptions::new(url);
        options
            .headers
            .insert("x-api-key", HeaderValue::from_static("secret"));
        options.connect_timeout = Duration::from_secs(5);
        options
    }

    fn ping() -> ClientJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).unwrap()
    }

    #[tokio::test]
    async fn rmcp_round_trip_and_close() {
        let fake = Fake::new(vec![
            Event::default().comment("hello"),
            Fake::endpoint("/message?sessionId=abc"),
        ]);
        let url = serve(fake.clone()).await;
        let transport = LegacySseTransport::connect(reqwest::Client::new(), options(url.clone()))
            .await
            .unwrap();
        assert_eq!(
            transport.endpoint().as_str(),
            url.join("/message?sessionId=abc").unwrap().as_str()
        );

        let client = ().serve(transport).await.unwrap();
        assert_eq!(
            client
                .peer_info()
                .unwrap()
                .server_info
                .as_ref()
                .unwrap()
                .name,
            "fake"
        );
        let tools = client.list_tools(None).await.unwrap();
        assert_eq!(tools.tools[0].name, "echo");
        let pong = client
            .send_request(ClientRequest::PingRequest(PingRequest::default()))
            .await
            .unwrap();
        assert!(matches!(pong, ServerResult::EmptyResult(_)));
        let args = json!({"message": "hi"}).as_object().unwrap().clone();
        let echoed = client
            .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
            .await
            .unwrap();
        assert_eq!(echoed.content[0].as_text().unwrap().text, "Echo: \"hi\"");

        let session = fake.session();
        client.cancel().await.unwrap();
        // Closing drops the GET stream, which the server sees as its receiver going away.
        tokio::time::timeout(Duration::from_secs(2), session.closed())
            .await
            .unwrap();
        let keys = fake.api_keys.lock().unwrap().clone();
        assert!(
            keys.len() >= 5 && keys.iter().all(|k| k == "secret"),
            "{keys:?}"
        );
    }

    #[tokio::test]
    async fn close_is_idempotent_and_fails_sends() {
        let fake = Fake::new(vec![Fake::endpoint("message?sessionId=x")]);
        let url = serve(fake.clone()).await;
        let mut t = LegacySseTransport::connect(reqwest::Client::new(), options(url))
            .await
            .unwrap();
        assert_eq!(t.endpoint().path(), "/message");
        t.close().await.unwrap();
        t.close().await.unwrap();
        assert!(t.receive().await.is_none());
        assert!(matches!(t.send(ping()).await, Err(SseError::Closed)));
        tokio::time::timeout(Duration::from_secs(2), fake.session().closed())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn drop_cancels_the_reader() {
        let fake = Fake::new(vec![Fake::endpoint("/message")]);
        let url = serve(fake.clone()).await;
        let t = LegacySseTransport::connect(reqwest::Client::new(), options(url))
            .await
            .unwrap();
        drop(t);
        tokio::time::timeout(Duration::from_secs(2), fake.session().closed())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn endpoint_timeout_is_no_endpoint() {
        let url = serve(Fake::new(vec![Event::default().event("other").data("x")])).await;
        let mut opts = options(url);
        opts.connect_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = LegacySseTransport::connect(reqwest::Client::new(), opts)
            .await
            .unwrap_err();
        assert!(matches!(err, SseError::NoEndpoint), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn cross_origin_endpoint_is_rejected() {
        for endpoint in [
            "http://evil.example/message",
            "//evil.example/m",
            "http://127.0.0.1:1/m",
        ] {
            let url = serve(Fake::new(vec![Fake::endpoint(endpoint)])).await;
            let err = LegacySseTransport::connect(reqwest::Client::new(), options(url))
                .await
                .unwrap_err();
            assert!(
                matches!(err, SseError::BadEndpoint(_)),
                "{endpoint}: {err:?}"
            );
            assert!(!err.to_string().contains("secret"));
        }
    }

    #[tokio::test]
    async fn oversized_events_end_the_stream() {
        let big = "x".repeat(4096);
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let url = serve(Fake::new(vec![
            Fake::endpoint("/message"),
            Event::default().event("ping").data("unknown event name"),
            Event::default().comment("keep-alive"),
            Event::default().data("not json"),
            Event::default().data(notification.to_string()),
            Event::default().event("message").data(big.clone()),
            Event::default().data(notification.to_string()),
        ]))
        .await;
        let mut opts = options(url.clone());
        opts.max_event_bytes = 1024;
        let mut t = LegacySseTransport::connect(reqwest::Client::new(), opts)
            .await
            .unwrap();
        assert!(matches!(
            t.receive().await,
            Some(ServerJsonRpcMessage::Notification(_))
        ));
        let next = tokio::time::timeout(Duration::from_secs(2), t.receive())
            .await
            .unwrap();
        assert!(next.is_none(), "the oversized event must end the stream");
        assert!(matches!(t.send(ping()).await, Err(SseError::Closed)));

        // During connect, an oversized event is reported directly.
        let url = serve(Fake::new(vec![Event::default().data(big)])).await;
        let mut opts = options(url);
        opts.max_event_bytes = 1024;
        let err = LegacySseTransport::connect(reqwest::Client::new(), opts)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SseError::EventTooLarge { limit: 1024 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn post_failure_is_http_status() {
        let mut fake = Fake::new(vec![Fake::endpoint("/message")]);
        fake.post_status = StatusCode::INTERNAL_SERVER_ERROR;
        let url = serve(fake).await;
        let mut t = LegacySseTransport::connect(reqwest::Client::new(), options(url))
            .await
            .unwrap();
        let err = t.send(ping()).await.unwrap_err();
        assert!(
            matches!(&err, SseError::HttpStatus { status: 500, retry_after: Some(r) } if r == "7"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn get_failure_is_http_status() {
        let url = serve(Fake::new(vec![])).await.join("/missing").unwrap();
        let err = LegacySseTransport::connect(reqwest::Client::new(), options(url))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SseError::HttpStatus { status: 404, .. }),
            "{err:?}"
        );
    }
}
