//! The facts rmcp gives only as text, each read in one function here, with a
//! test that pins the text of the rmcp version in use (3.9): an rmcp upgrade
//! that rewords one fails that test instead of silently changing a kind.

/// rmcp's error for an SSE event over the size limit (its type is private):
/// "SSE event exceeded the maximum size of N bytes".
pub(crate) fn is_sse_event_too_large(error: &dyn std::error::Error) -> bool {
    error.to_string().contains("exceeded the maximum size")
}

/// The status in rmcp's "HTTP 400: body" messages (a non-JSON error answer).
pub(crate) fn http_status_in(text: &str) -> Option<u16> {
    let rest = text.strip_prefix("HTTP ")?;
    rest.get(..3)?.parse().ok()
}

/// True when an id-less JSON-RPC error sent for a session says the session is
/// unknown (server-everything: "Bad Request: No valid session ID provided").
/// The spec answers that with HTTP 404, which rmcp reports itself; this is the
/// text of servers that answer 400 instead.
pub(crate) fn names_the_session(message: &str) -> bool {
    message.to_ascii_lowercase().contains("session")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use rmcp::model::{
        ClientJsonRpcMessage, ClientRequest, JsonRpcRequest, PingRequest, RequestId,
    };
    use rmcp::transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpPostResponse,
    };

    use super::*;

    /// An HTTP server answering every POST with `answer`.
    async fn serve(answer: fn() -> axum::response::Response) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let app =
            axum::Router::new().route("/mcp", axum::routing::post(move || async move { answer() }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn ping() -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::Request(JsonRpcRequest::new(
            RequestId::Number(1),
            ClientRequest::PingRequest(PingRequest::default()),
        ))
    }

    #[tokio::test]
    async fn pins_rmcp_http_status_text() {
        let url = serve(|| (http::StatusCode::BAD_REQUEST, "plain text").into_response()).await;
        let client = reqwest::Client::new();
        let error = client
            .post_message(Arc::from(url), ping(), None, None, Default::default())
            .await
            .expect_err("an error");
        let rmcp::transport::streamable_http_client::StreamableHttpError::UnexpectedServerResponse(
            text,
        ) = &error
        else {
            panic!("rmcp reports a non-JSON 400 otherwise now: {error:?}");
        };
        assert_eq!(http_status_in(text), Some(400), "{text}");
        assert_eq!(http_status_in("nope"), None);
    }

    #[tokio::test]
    async fn pins_rmcp_sse_event_too_large_text() {
        let url = serve(|| {
            let event = format!("event: message\ndata: {}\n\n", "x".repeat(4096));
            ([(http::header::CONTENT_TYPE, "text/event-stream")], event).into_response()
        })
        .await;
        let client = reqwest::Client::new();
        let reply = client
            .post_message_with_max_sse_event_size(
                Arc::from(url),
                ping(),
                None,
                None,
                Default::default(),
                1024,
            )
            .await
            .expect("an SSE answer");
        let StreamableHttpPostResponse::Sse(mut stream, _) = reply else {
            panic!("expected SSE");
        };
        let error = futures::StreamExt::next(&mut stream)
            .await
            .expect("an item")
            .expect_err("the event is over the limit");
        assert!(is_sse_event_too_large(&error), "{error}");
    }

    #[test]
    fn reads_session_complaints() {
        assert!(names_the_session(
            "Bad Request: No valid session ID provided"
        ));
        assert!(!names_the_session("Bad Request: missing field"));
    }
}
